"""Compile the project's Solidity sources into build artifacts.

All project sources (``contracts/**/*.sol``) and everything they import, OpenZeppelin included,
go into one standard-JSON input with the sources embedded. The same file feeds solc (through
py-solc-x), slither and anyone who wants to reproduce the build, and it is written next to the
artifacts as ``standard-input.json``.

The compiler is, in order: the binary named by ``TWIN_BRIDGE_SOLC``; a native ``solc`` on PATH
whose version equals the one pinned in ``package.json``; else ``scripts/solc``, a shim that runs
the pinned npm (wasm) compiler.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal, cast

import solcx
from eth_typing import ABI, HexStr
from solcx.exceptions import SolcError

REPO_ROOT: Final = Path(__file__).resolve().parents[2]

OPTIMIZER_RUNS: Final = 200
EVM_VERSION: Final = "cancun"
VIA_IR: Final = True
"""The IR pipeline keeps TwinLedger under the 24,576-byte code-size limit and its hot loop lean."""
OUTPUT_SELECTION: Final = (
    "abi",
    "evm.bytecode.object",
    "evm.bytecode.linkReferences",
    "evm.deployedBytecode.object",
    "evm.methodIdentifiers",
    "storageLayout",
    "devdoc",
    # Not in the artifacts, but slither reads them from its compile of standard-input.json.
    "evm.bytecode.sourceMap",
    "evm.deployedBytecode.sourceMap",
)

SOLC_ENV_VAR: Final = "TWIN_BRIDGE_SOLC"
SOURCE_PREFIX: Final = "contracts/"
"""Source unit names of project files start with this, whatever the contracts directory."""

STANDARD_INPUT_FILE: Final = "standard-input.json"
COMPILER_FILE: Final = "compiler.json"
STAMP_FILE: Final = ".stamp.json"
ARTIFACT_FORMAT: Final = "twin-bridge-artifact-3"
EXTENSION_TAG: Final = "custom:extension"
"""NatSpec tag (``@custom:extension Name``) of a contract whose fallback delegates to contract
``Name``: its artifact's ABI is its own and the extension's; deploying it needs the extension."""

SolcOrigin = Literal["env", "native", "shim"]


class ToolchainError(Exception):
    """The Solidity toolchain could not produce or find artifacts."""


class CompileError(ToolchainError):
    """solc rejected the sources; ``errors`` holds its formatted messages."""

    def __init__(self, errors: tuple[str, ...]) -> None:
        self.errors = errors
        count = f"{len(errors)} error" + ("" if len(errors) == 1 else "s")
        super().__init__(f"solc reported {count}:\n\n" + "\n".join(errors))


class ArtifactNotFoundError(ToolchainError):
    """No artifact of that name: the contract does not exist or was not compiled."""

    def __init__(self, name: str, artifacts_dir: Path) -> None:
        self.name = name
        self.artifacts_dir = artifacts_dir
        super().__init__(
            f"no artifact {name!r} in {artifacts_dir} (run `make compile` or `twin-bridge compile`)"
        )


@dataclass(frozen=True)
class Solc:
    """A solc executable and the full version it reports (e.g. ``0.8.30+commit.73712a01...``)."""

    path: Path
    version: str
    origin: SolcOrigin


@dataclass(frozen=True)
class Artifact:
    """One compiled contract as written to ``build/artifacts/<contractName>.json``."""

    contract_name: str
    source_name: str
    abi: ABI
    bytecode: HexStr
    deployed_bytecode: HexStr
    method_identifiers: Mapping[str, str]
    storage_layout: Mapping[str, Any]
    compiler_version: str
    settings: Mapping[str, Any]
    link_references: Mapping[str, Mapping[str, Sequence[Mapping[str, int]]]]
    """solc's ``linkReferences``: source -> library -> placeholder positions in ``bytecode``."""
    extension: str | None = None
    """The contract its fallback delegates to (``@custom:extension``); ``abi`` includes its ABI."""

    @property
    def libraries(self) -> tuple[str, ...]:
        """Names of the libraries this contract must be linked against, sorted."""
        return tuple(sorted({lib for libs in self.link_references.values() for lib in libs}))

    def linked_bytecode(self, addresses: Mapping[str, str]) -> HexStr:
        """The creation bytecode with each library placeholder replaced by its deployed address.

        Raises:
            ToolchainError: a library this contract needs has no address in ``addresses``.
        """
        code = self.bytecode[2:]
        for libs in self.link_references.values():
            for lib, positions in libs.items():
                if lib not in addresses:
                    raise ToolchainError(
                        f"{self.contract_name} needs library {lib}: no address given"
                    )
                address = addresses[lib].lower().removeprefix("0x")
                for position in positions:
                    start = position["start"] * 2
                    code = code[:start] + address + code[start + position["length"] * 2 :]
        return HexStr("0x" + code)

    @property
    def deployable(self) -> bool:
        """False for interfaces and abstract contracts, which have no bytecode."""
        return self.bytecode != "0x"


@dataclass(frozen=True)
class CompileResult:
    """What :func:`compile_contracts` did; ``compiled`` is False when the stamp matched."""

    compiled: bool
    artifacts_dir: Path
    contracts: tuple[str, ...]
    solc: Solc
    input_hash: str
    warnings: tuple[str, ...]


def pinned_solc_version(root: Path = REPO_ROOT) -> str:
    """The exact solc version that ``package.json`` pins (e.g. ``0.8.30``)."""
    package_json = root / "package.json"
    try:
        pin = json.loads(package_json.read_text(encoding="utf-8"))["dependencies"]["solc"]
    except (OSError, ValueError, KeyError) as exc:
        raise ToolchainError(f"cannot read the solc pin from {package_json}: {exc}") from exc
    if not isinstance(pin, str) or not re.fullmatch(r"\d+\.\d+\.\d+", pin):
        raise ToolchainError(f"{package_json} must pin solc to an exact version, found {pin!r}")
    return pin


def solc_version(binary: Path) -> str:
    """Run ``binary --version`` and return the full version it reports."""
    try:
        proc = subprocess.run(  # noqa: S603 - the binary is chosen by find_solc
            [str(binary), "--version"], capture_output=True, text=True, timeout=120, check=False
        )
    except OSError as exc:
        raise ToolchainError(f"cannot run {binary}: {exc}") from exc
    match = re.search(r"Version:\s*(\d+\.\d+\.\d+\S*)", proc.stdout)
    if proc.returncode != 0 or match is None:
        detail = (proc.stderr or proc.stdout).strip()
        raise ToolchainError(f"`{binary} --version` failed (exit {proc.returncode}): {detail}")
    return match.group(1)


def find_solc(*, root: Path = REPO_ROOT, environ: Mapping[str, str] | None = None) -> Solc:
    """Choose the compiler: ``$TWIN_BRIDGE_SOLC``, a native solc of the pinned version, the shim.

    Raises:
        ToolchainError: the chosen compiler does not run, or the shim's version is not the pin.
    """
    env = os.environ if environ is None else environ
    override = env.get(SOLC_ENV_VAR)
    if override:
        path = Path(shutil.which(override, path=env.get("PATH")) or override)
        return Solc(path=path.resolve(), version=solc_version(path), origin="env")

    pinned = pinned_solc_version(root)
    native = shutil.which("solc", path=env.get("PATH"))
    if native is not None:
        try:
            version = solc_version(Path(native))
        except ToolchainError:
            version = ""
        if _base_version(version) == pinned:
            return Solc(path=Path(native).resolve(), version=version, origin="native")

    shim = root / "scripts" / "solc"
    try:
        version = solc_version(shim)
    except ToolchainError as exc:
        raise ToolchainError(
            f"{exc}\n(is node installed, and did `make node_modules` run?)"
        ) from exc
    if _base_version(version) != pinned:
        raise ToolchainError(
            f"{shim} runs solc {version} but package.json pins {pinned}: run `make node_modules`"
        )
    return Solc(path=shim, version=version, origin="shim")


def compiler_settings() -> dict[str, Any]:
    """The settings that decide the bytecode (everything but ``outputSelection``)."""
    return {
        "optimizer": {"enabled": True, "runs": OPTIMIZER_RUNS},
        "evmVersion": EVM_VERSION,
        "viaIR": VIA_IR,
    }


def collect_sources(contracts_dir: Path, node_modules: Path) -> dict[str, str]:
    """Every project source under ``contracts_dir`` and, transitively, everything it imports.

    Returns:
        Source unit name -> content, sorted by name. Project files are named
        ``contracts/<path relative to contracts_dir>``; imports such as
        ``@openzeppelin/contracts/...`` are read from ``node_modules``.

    Raises:
        ToolchainError: no project sources, or an import that resolves to no file.
    """
    pending = [
        SOURCE_PREFIX + path.relative_to(contracts_dir).as_posix()
        for path in sorted(contracts_dir.rglob("*.sol"))
    ]
    if not pending:
        raise ToolchainError(f"no Solidity sources (*.sol) under {contracts_dir}")
    importers: dict[str, str] = {}
    sources: dict[str, str] = {}
    while pending:
        name = pending.pop()
        if name in sources:
            continue
        path = _source_path(name, contracts_dir, node_modules)
        try:
            content = path.read_text(encoding="utf-8")
        except OSError as exc:
            where = f"imported by {importers[name]}" if name in importers else "project source"
            raise ToolchainError(f"cannot read {name} ({where}) at {path}: {exc}") from exc
        sources[name] = content
        for imported in _imports(content):
            unit = _resolve_import(name, imported)
            if unit not in sources:
                importers.setdefault(unit, name)
                pending.append(unit)
    return dict(sorted(sources.items()))


def standard_input(sources: Mapping[str, str]) -> dict[str, Any]:
    """The standard-JSON input that embeds ``sources``.

    Compiler outputs are selected for project sources only; the AST of every source is selected
    too, since slither analyses this same input and needs all of them.
    """
    project = [name for name in sources if name.startswith(SOURCE_PREFIX)]
    selection: dict[str, dict[str, list[str]]] = {"*": {"": ["ast"]}}
    selection.update({name: {"*": list(OUTPUT_SELECTION)} for name in project})
    return {
        "language": "Solidity",
        "sources": {name: {"content": content} for name, content in sources.items()},
        "settings": {**compiler_settings(), "outputSelection": selection},
    }


def compile_contracts(
    *,
    root: Path = REPO_ROOT,
    contracts_dir: Path | None = None,
    artifacts_dir: Path | None = None,
    node_modules: Path | None = None,
    solc: Solc | None = None,
    force: bool = False,
) -> CompileResult:
    """Compile every ``*.sol`` under ``contracts_dir`` into one JSON artifact per contract.

    Skips solc when the stamp in ``artifacts_dir`` records the same input hash (sources, settings
    and compiler version) and every artifact it lists is present, unless ``force``. The new
    artifacts directory replaces the old one whole, so no stale artifact survives a rename.

    Args:
        root: the repository (``package.json``, ``scripts/solc``).
        contracts_dir: defaults to ``root/contracts``.
        artifacts_dir: defaults to ``root/build/artifacts``.
        node_modules: where imports outside the project resolve; defaults to ``root/node_modules``.
        solc: defaults to :func:`find_solc`.
        force: compile even if the stamp matches.

    Raises:
        CompileError: solc reported errors (warnings are returned, not raised).
        ToolchainError: no sources, an unresolvable import, or no usable compiler.
    """
    contracts_dir = contracts_dir or root / "contracts"
    artifacts_dir = artifacts_dir or root / "build" / "artifacts"
    node_modules = node_modules or root / "node_modules"
    solc = solc or find_solc(root=root)

    solc_input = standard_input(collect_sources(contracts_dir, node_modules))
    input_hash = _input_hash(solc_input, solc)

    artifacts_dir.parent.mkdir(parents=True, exist_ok=True)
    with _lock(artifacts_dir.parent / f".{artifacts_dir.name}.lock"):
        stamped = _read_stamp(artifacts_dir, input_hash)
        if stamped is not None and not force:
            return CompileResult(
                compiled=False,
                artifacts_dir=artifacts_dir,
                contracts=stamped,
                solc=solc,
                input_hash=input_hash,
                warnings=(),
            )
        output = _run_solc(solc, solc_input)
        artifacts = _artifacts(output, solc)
        _write_artifacts(artifacts_dir, solc_input, solc, root, input_hash, artifacts)

    warnings = tuple(
        _message(error) for error in output.get("errors", []) if error.get("severity") != "error"
    )
    return CompileResult(
        compiled=True,
        artifacts_dir=artifacts_dir,
        contracts=tuple(artifacts),
        solc=solc,
        input_hash=input_hash,
        warnings=warnings,
    )


def load_artifact(name: str, *, artifacts_dir: Path | None = None) -> Artifact:
    """Read ``<artifacts_dir>/<name>.json`` (default ``build/artifacts``)."""
    artifacts_dir = artifacts_dir or REPO_ROOT / "build" / "artifacts"
    path = artifacts_dir / f"{name}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ArtifactNotFoundError(name, artifacts_dir) from exc
    if data.get("_format") != ARTIFACT_FORMAT:
        raise ToolchainError(f"{path} is not a {ARTIFACT_FORMAT} artifact: recompile")
    return Artifact(
        contract_name=data["contractName"],
        source_name=data["sourceName"],
        abi=cast(ABI, data["abi"]),
        bytecode=HexStr(data["bytecode"]),
        deployed_bytecode=HexStr(data["deployedBytecode"]),
        method_identifiers=data["methodIdentifiers"],
        storage_layout=data["storageLayout"],
        compiler_version=data["compilerVersion"],
        settings=data["settings"],
        link_references=data["linkReferences"],
        extension=data["extension"],
    )


def _base_version(version: str) -> str:
    match = re.match(r"\d+\.\d+\.\d+", version)
    return match.group(0) if match else ""


# One left-to-right scan: comments and string literals are consumed whole, so an `import` inside
# them is never seen. An import's path is its first string literal: `import "p";`,
# `import "p" as X;`, `import * as X from "p";`, `import {A, B as C} from "p";`.
_IMPORT_SCAN = re.compile(
    r"""\bimport\b[^;"']*(?P<quote>["'])(?P<path>[^"'\n]*)(?P=quote)"""
    r"""|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'|//[^\n]*|/\*.*?\*/""",
    re.DOTALL,
)


def _imports(content: str) -> list[str]:
    return [m["path"] for m in _IMPORT_SCAN.finditer(content) if m["path"] is not None]


def _resolve_import(importer: str, path: str) -> str:
    """Solidity's rule: ``./`` and ``../`` are relative to the importer's unit name."""
    if not path.startswith(("./", "../")):
        return path
    parts = list(PurePosixPath(importer).parent.parts)
    for part in PurePosixPath(path).parts:
        if part == "..":
            if not parts:
                raise ToolchainError(f"{importer}: import {path!r} leaves the source tree")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)


def _source_path(name: str, contracts_dir: Path, node_modules: Path) -> Path:
    if name.startswith(SOURCE_PREFIX):
        return contracts_dir / name.removeprefix(SOURCE_PREFIX)
    return node_modules / name


def _input_hash(solc_input: Mapping[str, Any], solc: Solc) -> str:
    payload = {"format": ARTIFACT_FORMAT, "solc": solc.version, "input": solc_input}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_stamp(artifacts_dir: Path, input_hash: str) -> tuple[str, ...] | None:
    """The contracts of the stamped build if it matches ``input_hash`` and is complete."""
    try:
        stamp = json.loads((artifacts_dir / STAMP_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stamp.get("inputHash") != input_hash:
        return None
    contracts = tuple(str(name) for name in stamp.get("contracts", []))
    if not all((artifacts_dir / f"{name}.json").is_file() for name in contracts):
        return None
    return contracts


def _message(error: Mapping[str, Any]) -> str:
    return str(error.get("formattedMessage") or error.get("message") or error).rstrip()


def _run_solc(solc: Solc, solc_input: dict[str, Any]) -> dict[str, Any]:
    try:
        output: dict[str, Any] = solcx.compile_standard(solc_input, solc_binary=solc.path)
    except SolcError as exc:
        errors = tuple(
            _message(error)
            for error in (exc.error_dict or [])
            if isinstance(error, dict) and error.get("severity") == "error"
        )
        if errors:
            raise CompileError(errors) from exc
        raise ToolchainError(f"{solc.path} failed: {exc}") from exc
    unexpected = sorted(set(output.get("sources", {})) - set(solc_input["sources"]))
    if unexpected:
        # The compiler found files our import scan missed: the input would not be self-contained.
        raise ToolchainError(f"sources missing from the standard input: {', '.join(unexpected)}")
    return output


def _artifacts(output: Mapping[str, Any], solc: Solc) -> dict[str, dict[str, Any]]:
    """Artifact JSON per contract name, for project sources only."""
    artifacts: dict[str, dict[str, Any]] = {}
    for source_name, contracts in sorted(output.get("contracts", {}).items()):
        if not source_name.startswith(SOURCE_PREFIX):
            continue
        for contract_name, compiled in sorted(contracts.items()):
            if contract_name in artifacts:
                other = artifacts[contract_name]["sourceName"]
                raise ToolchainError(
                    f"contract name {contract_name!r} is defined in {other} and {source_name}: "
                    "artifacts are named by contract, so names must be unique"
                )
            evm = compiled.get("evm", {})
            artifacts[contract_name] = {
                "_format": ARTIFACT_FORMAT,
                "contractName": contract_name,
                "sourceName": source_name,
                "abi": compiled.get("abi", []),
                "bytecode": "0x" + evm.get("bytecode", {}).get("object", ""),
                "deployedBytecode": "0x" + evm.get("deployedBytecode", {}).get("object", ""),
                "methodIdentifiers": evm.get("methodIdentifiers", {}),
                "storageLayout": compiled.get("storageLayout", {}),
                "compilerVersion": solc.version,
                "settings": compiler_settings(),
                "linkReferences": evm.get("bytecode", {}).get("linkReferences", {}),
                "extension": compiled.get("devdoc", {}).get(EXTENSION_TAG),
            }
    for name, artifact in artifacts.items():
        extension = artifact["extension"]
        if extension is not None:
            if extension not in artifacts:
                raise ToolchainError(f"{name} names extension {extension!r}, which is not compiled")
            artifact["abi"] = _merged_abi(artifact["abi"], artifacts[extension]["abi"])
    return artifacts


def _merged_abi(own: list[dict[str, Any]], extension: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``own`` and the functions, events and errors of ``extension`` it does not have (not its
    constructor or fallback): what the contract's address answers."""

    def key(entry: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...]]:
        types = tuple(str(i["type"]) for i in entry.get("inputs", []))
        return str(entry["type"]), str(entry.get("name", "")), types

    known = {key(entry) for entry in own}
    added = [
        entry
        for entry in extension
        if entry["type"] in ("function", "event", "error") and key(entry) not in known
    ]
    return [*own, *added]


def _write_artifacts(
    artifacts_dir: Path,
    solc_input: Mapping[str, Any],
    solc: Solc,
    root: Path,
    input_hash: str,
    artifacts: Mapping[str, Mapping[str, Any]],
) -> None:
    """Write a complete new artifacts directory, then swap it in for the old one."""
    staging = Path(tempfile.mkdtemp(prefix=f".{artifacts_dir.name}-", dir=artifacts_dir.parent))
    try:
        staging.chmod(0o755)  # mkdtemp makes it private; artifacts are for everyone to read
        for name, artifact in artifacts.items():
            _write_json(staging / f"{name}.json", artifact)
        _write_json(staging / STANDARD_INPUT_FILE, solc_input)
        solc_path = solc.path.relative_to(root) if solc.path.is_relative_to(root) else solc.path
        _write_json(
            staging / COMPILER_FILE,
            {"version": solc.version, "origin": solc.origin, "path": str(solc_path)},
        )
        _write_json(staging / STAMP_FILE, {"inputHash": input_hash, "contracts": list(artifacts)})
        old = None
        if artifacts_dir.exists():
            old = artifacts_dir.with_name(staging.name + "-old")
            artifacts_dir.rename(old)
        staging.rename(artifacts_dir)
        if old is not None:
            shutil.rmtree(old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Serialise compiles sharing an artifacts directory (e.g. pytest-xdist workers)."""
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
