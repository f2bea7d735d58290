"""The Solidity toolchain: compiler choice, embedded standard input, artifacts and the stamp."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.chain import toolchain
from bridge.chain.toolchain import REPO_ROOT, CompileResult, Solc

TWIN_SOL = """\
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {Names} from "./lib/Names.sol";
// import {Gone} from "./Gone.sol";

contract ThrowawayTwin is ERC721 {
    string private constant _NOT_AN_IMPORT = "; import 'nothing.sol';";

    constructor() ERC721(Names.NAME, "TWIN") {}

    function mint(address to, uint256 tokenId) external {
        _mint(to, tokenId);
    }
}
"""

NAMES_SOL = """\
// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

library Names {
    string internal constant NAME = "Twin";
}
"""


def _write_contracts(root: Path) -> Path:
    contracts = root / "contracts"
    (contracts / "lib").mkdir(parents=True)
    (contracts / "ThrowawayTwin.sol").write_text(TWIN_SOL)
    (contracts / "lib" / "Names.sol").write_text(NAMES_SOL)
    return contracts


@pytest.fixture(scope="module")
def solc() -> Solc:
    return toolchain.find_solc()


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory: pytest.TempPathFactory, solc: Solc) -> CompileResult:
    """A project of its own, outside contracts/, compiled once for the module."""
    root = tmp_path_factory.mktemp("project")
    return toolchain.compile_contracts(
        contracts_dir=_write_contracts(root), artifacts_dir=root / "artifacts", solc=solc
    )


def test_shim_reports_the_solc_version_pinned_in_package_json() -> None:
    package = json.loads((REPO_ROOT / "package.json").read_text())
    pinned = package["dependencies"]["solc"]

    version = toolchain.solc_version(REPO_ROOT / "scripts" / "solc")

    assert toolchain.pinned_solc_version() == pinned
    assert version.startswith(pinned + "+commit.")


def test_collect_sources_embeds_imports_transitively_and_skips_commented_ones(
    tmp_path: Path,
) -> None:
    sources = toolchain.collect_sources(_write_contracts(tmp_path), REPO_ROOT / "node_modules")

    assert "contracts/ThrowawayTwin.sol" in sources
    assert "contracts/lib/Names.sol" in sources
    assert "@openzeppelin/contracts/token/ERC721/ERC721.sol" in sources
    # ERC721 imports "../../utils/Context.sol": relative imports resolve to their unit name.
    assert "@openzeppelin/contracts/utils/Context.sol" in sources
    assert not any("Gone" in name or "nothing" in name for name in sources)


def test_compile_writes_one_artifact_per_contract_with_the_pinned_compiler(
    throwaway: CompileResult,
) -> None:
    pinned = toolchain.pinned_solc_version()

    assert throwaway.compiled
    assert sorted(throwaway.contracts) == ["Names", "ThrowawayTwin"]
    twin = toolchain.load_artifact("ThrowawayTwin", artifacts_dir=throwaway.artifacts_dir)
    assert twin.source_name == "contracts/ThrowawayTwin.sol"
    assert twin.abi
    assert twin.deployable
    assert len(twin.deployed_bytecode) > 2
    assert "mint(address,uint256)" in twin.method_identifiers
    assert twin.compiler_version.startswith(pinned + "+")
    assert twin.settings == toolchain.compiler_settings()


def test_standard_input_is_self_contained_and_matches_the_settings(
    throwaway: CompileResult,
) -> None:
    solc_input = json.loads((throwaway.artifacts_dir / toolchain.STANDARD_INPUT_FILE).read_text())

    settings = solc_input["settings"]
    assert settings["optimizer"] == {"enabled": True, "runs": toolchain.OPTIMIZER_RUNS}
    assert settings["evmVersion"] == toolchain.EVM_VERSION
    assert settings["viaIR"] is toolchain.VIA_IR
    assert all("content" in source for source in solc_input["sources"].values())
    assert "@openzeppelin/contracts/token/ERC721/ERC721.sol" in solc_input["sources"]


def test_stamp_skips_solc_when_inputs_are_unchanged(
    throwaway: CompileResult, solc: Solc, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_solc(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("solc ran although the stamp matched")

    monkeypatch.setattr(toolchain.solcx, "compile_standard", no_solc)
    contracts_dir = throwaway.artifacts_dir.parent / "contracts"

    again = toolchain.compile_contracts(
        contracts_dir=contracts_dir, artifacts_dir=throwaway.artifacts_dir, solc=solc
    )

    assert not again.compiled
    assert again.input_hash == throwaway.input_hash
    assert sorted(again.contracts) == sorted(throwaway.contracts)


def test_changed_source_is_recompiled_and_stale_artifacts_go(tmp_path: Path, solc: Solc) -> None:
    contracts = _write_contracts(tmp_path)
    artifacts = tmp_path / "artifacts"
    first = toolchain.compile_contracts(contracts_dir=contracts, artifacts_dir=artifacts, solc=solc)
    (contracts / "lib" / "Names.sol").write_text(NAMES_SOL.replace("library Names", "library Nm"))
    twin = TWIN_SOL.replace("{Names}", "{Nm}").replace("Names.NAME", "Nm.NAME")
    (contracts / "ThrowawayTwin.sol").write_text(twin)

    second = toolchain.compile_contracts(
        contracts_dir=contracts, artifacts_dir=artifacts, solc=solc
    )

    assert second.compiled
    assert second.input_hash != first.input_hash
    assert not (artifacts / "Names.json").exists()
    assert toolchain.load_artifact("Nm", artifacts_dir=artifacts).source_name.endswith("Names.sol")


def test_compile_error_lists_solc_errors(tmp_path: Path, solc: Solc) -> None:
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "Broken.sol").write_text(
        "// SPDX-License-Identifier: MIT\npragma solidity ^0.8.24;\n"
        'contract Broken { function f() external pure returns (uint256) { return "x"; } }\n'
    )

    with pytest.raises(toolchain.CompileError) as caught:
        toolchain.compile_contracts(
            contracts_dir=contracts, artifacts_dir=tmp_path / "artifacts", solc=solc
        )

    assert len(caught.value.errors) == 1
    assert "contracts/Broken.sol:3" in str(caught.value)
    assert not (tmp_path / "artifacts").exists()


def test_load_artifact_names_the_missing_contract(tmp_path: Path) -> None:
    with pytest.raises(toolchain.ArtifactNotFoundError, match="'Nowhere'"):
        toolchain.load_artifact("Nowhere", artifacts_dir=tmp_path)


@pytest.mark.skipif(
    not any((REPO_ROOT / "contracts").rglob("*.sol")), reason="contracts/ has no sources yet"
)
def test_project_contracts_compile_with_the_pinned_compiler() -> None:
    pinned = toolchain.pinned_solc_version()

    result = toolchain.compile_contracts()

    artifacts = [
        toolchain.load_artifact(name, artifacts_dir=result.artifacts_dir)
        for name in result.contracts
    ]
    assert any(artifact.deployable and artifact.abi for artifact in artifacts)
    for artifact in artifacts:
        assert artifact.abi or artifact.deployable, artifact.contract_name
        assert artifact.compiler_version.startswith(pinned + "+"), artifact.contract_name


def _fake_solc(directory: Path, version_line: str) -> Path:
    directory.mkdir()
    path = directory / "solc"
    path.write_text(
        f"#!/bin/sh\necho 'solc, the solidity compiler commandline interface'\n"
        f"echo '{version_line}'\n"
    )
    path.chmod(0o755)
    return path


def test_find_solc_prefers_env_then_native_of_the_pinned_version_then_the_shim(
    tmp_path: Path,
) -> None:
    pinned = toolchain.pinned_solc_version()
    native = _fake_solc(tmp_path / "native", f"Version: {pinned}+commit.00000000.Linux.g++")
    _fake_solc(tmp_path / "other", "Version: 0.8.19+commit.7dd6d404.Linux.g++")

    from_env = toolchain.find_solc(environ={"TWIN_BRIDGE_SOLC": str(native), "PATH": ""})
    matching = toolchain.find_solc(environ={"PATH": str(native.parent)})
    mismatched = toolchain.find_solc(environ={"PATH": str(tmp_path / "other")})

    assert (from_env.origin, from_env.path) == ("env", native)
    assert (matching.origin, matching.path) == ("native", native)
    assert matching.version == f"{pinned}+commit.00000000.Linux.g++"
    assert (mismatched.origin, mismatched.path) == ("shim", REPO_ROOT / "scripts" / "solc")
