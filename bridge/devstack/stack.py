"""``twin-bridge dev``: the whole system on this machine, in one command.

It starts anvil (the npm binary) with its state in the data directory, deploys the ledger when the
chain has no matching deployment, seeds the demo world the first time, then runs the brand API, the
settlement worker and the indexer as child processes until Ctrl-C (or SIGTERM). Stopping saves the
chain's state; the next start resumes the same contracts, balances and history.

One stack per data directory: a second start finds the directory's lock held and says so.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import httpx
from rich.console import Console
from web3 import Web3

from bridge.chain.deploy import contract_at
from bridge.chain.toolchain import REPO_ROOT
from bridge.deploy.deployment import (
    LEDGER,
    STABLECOIN,
    Manifest,
    NetworkConfig,
    RolesConfig,
    deploy,
    load_manifest,
    load_networks,
    manifest_problems,
)
from bridge.devstack.demo import (
    ATTESTER,
    DEPLOYER,
    DEV_ACCOUNTS,
    DEV_MNEMONIC,
    PAUSER,
    REGISTRAR,
    RELAYER,
    Demo,
    dev_account,
    seed,
)
from bridge.domain.usage import UsageType
from bridge.errors import BridgeError
from bridge.intake.api_keys import hash_api_key, new_api_key
from bridge.settings import Settings
from bridge.store import migrate
from bridge.store.repository import Store, create_brand, list_brands

ANVIL: Final = REPO_ROOT / "node_modules" / ".bin" / "anvil"
DEV_CHAIN_ID: Final = 31337
HARDFORK: Final = "prague"
NOTICE_PERIOD: Final = 24 * 3600
STATE_INTERVAL_S: Final = 10
"""Anvil also saves its state this often, so a crash loses at most this much chain history."""
START_TIMEOUT_S: Final = 60.0
STOP_TIMEOUT_S: Final = 30.0
WEEK: Final = 7 * 24 * 3600


class DevError(BridgeError):
    """The dev stack could not start (the message says why, in plain words)."""


class AlreadyRunningError(DevError):
    """Another dev stack holds this data directory."""


@dataclass(frozen=True)
class DevOptions:
    data_dir: Path
    host: str = "127.0.0.1"
    rpc_port: int = 8545
    api_port: int = 8000
    block_time: float = 1.0
    """Seconds between blocks (transactions wait for the next block)."""

    @property
    def rpc_url(self) -> str:
        return f"http://{self.host}:{self.rpc_port}"

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.api_port}"

    @property
    def dev_json(self) -> Path:
        return self.data_dir / "dev.json"

    @property
    def state_file(self) -> Path:
        return self.data_dir / "chain" / "state.json"

    @property
    def deployment_file(self) -> Path:
        return self.data_dir / "deployment.json"

    @property
    def seed_file(self) -> Path:
        return self.data_dir / "seed.json"

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"


# ---------------------------------------------------------------- the lock


@contextlib.contextmanager
def data_dir_lock(options: DevOptions) -> Iterator[None]:
    """Holds ``<data_dir>/dev.lock`` (released by the kernel if this process dies).

    Raises:
        AlreadyRunningError: another process holds it; the message names it and its API.
    """
    options.data_dir.mkdir(parents=True, exist_ok=True)
    path = options.data_dir / "dev.lock"
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            running = read_dev_json(options.dev_json) or {}
            api = running.get("api_url", "its API")
            raise AlreadyRunningError(
                f"a Twin Bridge dev stack is already running from {options.data_dir} "
                f"({holder}, API at {api}). Use that one, stop it with Ctrl-C in its terminal, "
                "or start a second one with another TWIN_BRIDGE_DATA_DIR and other ports "
                "(--rpc-port, --api-port)."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def read_dev_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(path)


# ---------------------------------------------------------------- child processes


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the child gets SIGTERM if the dev process dies, so nothing is left running."""
    os.setsid()
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.proc.poll() is None:
            # its own process group: npm's anvil is a node wrapper around the native binary
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def _spawn(name: str, argv: list[str], log_dir: Path, env: Mapping[str, str]) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}.log"
    log = log_path.open("ab")
    log.write(f"\n--- {datetime.now(UTC).isoformat()} {shlex.join(argv)}\n".encode())
    log.flush()
    proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
        argv,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(env),
        preexec_fn=_die_with_parent,
    )
    return Child(name, proc, log_path, log)


def _wait_until(child: Child, ready: Any, what: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise DevError(
                f"{child.name} exited with {child.proc.returncode} before {what}:\n{child.tail()}"
            )
        with contextlib.suppress(Exception):
            if ready():
                return
        time.sleep(0.2)
    raise DevError(
        f"{child.name} did not become ready ({what}) in {timeout:.0f} s:\n{child.tail()}"
    )


# ---------------------------------------------------------------- the deployment


@dataclass(frozen=True)
class DevDeployment:
    manifest: Manifest
    fresh: bool
    """Deployed by this start: the demo must be seeded on it."""

    @property
    def ledger(self) -> str:
        return self.manifest.ledger_address

    @property
    def token(self) -> str:
        return self.manifest.token_address

    @property
    def contracts(self) -> dict[str, str]:
        return {name: record.address for name, record in self.manifest.contracts.items()}


def dev_network(options: DevOptions) -> NetworkConfig:
    """The ``local`` network of ``deploy/networks.toml`` on this stack's port, with the demo's
    role holders (one well-known dev account per role)."""
    local = load_networks()["local"]
    return local.model_copy(
        update={
            "rpc_urls": (options.rpc_url,),
            "notice_period": NOTICE_PERIOD,
            "block_time_s": options.block_time,
            "roles": RolesConfig(
                admin=dev_account(DEPLOYER).address,
                registrar=(dev_account(REGISTRAR).address,),
                attester=(dev_account(ATTESTER).address,),
                pauser=(dev_account(PAUSER).address,),
            ),
        }
    )


def _seeded_ledger(options: DevOptions) -> str | None:
    marker = read_dev_json(options.seed_file) or {}
    ledger = marker.get("ledger")
    return ledger if isinstance(ledger, str) else None


def mark_seeded(options: DevOptions, ledger: str) -> None:
    """Records that the demo on ``ledger`` is complete (its brands' keys are saved)."""
    _write_json(options.seed_file, {"ledger": ledger, "at": datetime.now(UTC).isoformat()})


def ensure_deployment(w3: Web3, options: DevOptions, console: Console) -> DevDeployment:
    """The deployment of ``<data_dir>/deployment.json`` when this chain runs its code, it was
    compiled from the current sources and its demo was seeded; else a new one (the manifest of the
    old one is kept beside it)."""
    network = dev_network(options)
    deployer = dev_account(DEPLOYER)
    path = options.deployment_file
    if path.exists():
        manifest = load_manifest(path)
        problems = (
            ["the demo was not seeded completely"]
            if _seeded_ledger(options) != manifest.ledger_address
            else manifest_problems(w3, manifest)
        )
        if not problems:
            outcome = deploy(w3, network, deployer, manifest_path=path, console=console)
            if outcome.action == "unchanged" and outcome.manifest is not None:
                return DevDeployment(outcome.manifest, fresh=False)
        else:
            console.print(f"deploying anew: {'; '.join(problems)}", markup=False, highlight=False)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        path.replace(path.with_name(f"{path.name}.{stamp}.old"))
    outcome = deploy(w3, network, deployer, manifest_path=path, console=console)
    if outcome.manifest is None:
        raise DevError(f"deploying to the dev chain gave no manifest ({outcome.action})")
    return DevDeployment(outcome.manifest, fresh=True)


# ---------------------------------------------------------------- the stack


class DevStack:
    """Runs the dev stack in the foreground; ``run`` returns when ``stop`` is set."""

    def __init__(self, options: DevOptions, console: Console | None = None) -> None:
        self.options = options
        self.console = console or Console(highlight=False)
        self.children: list[Child] = []

    # -- helpers

    def _say(self, text: str, style: str | None = None) -> None:
        self.console.print(text, style=style, markup=False, soft_wrap=True)

    def _child_env(self, deployment: DevDeployment) -> dict[str, str]:
        # Settings the user chose (a PostgreSQL URL, batch sizes...) carry over; the chain,
        # contract and keys are the dev stack's own.
        env = dict(os.environ)
        env.update(
            {
                "TWIN_BRIDGE_DATA_DIR": str(self.options.data_dir),
                "TWIN_BRIDGE_RPC_URL": self.options.rpc_url,
                "TWIN_BRIDGE_LEDGER_ADDRESS": deployment.ledger,
                # each part checks the chain's code against the manifest before using it
                "TWIN_BRIDGE_DEPLOYMENT": str(self.options.deployment_file),
                # anvil's well-known dev keys (bridge.devstack.demo): public, chain 31337 only
                "TWIN_BRIDGE_ATTESTER_PRIVATE_KEY": dev_account(ATTESTER).key.hex(),
                "TWIN_BRIDGE_RELAYER_PRIVATE_KEY": dev_account(RELAYER).key.hex(),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.setdefault("TWIN_BRIDGE_CONFIRMATIONS", "1")
        env.setdefault("TWIN_BRIDGE_BATCH_MAX_AGE", "PT1S")
        return env

    def _start_anvil(self) -> Child:
        options = self.options
        if not os.access(ANVIL, os.X_OK):
            raise DevError(f"{ANVIL} is missing: run `make node_modules` (or `make run`)")
        for port, what in ((options.rpc_port, "--rpc-port"), (options.api_port, "--api-port")):
            if not _port_free(options.host, port):
                raise DevError(
                    f"port {port} on {options.host} is taken by another program; stop it or "
                    f"choose another port with {what}"
                )
        options.state_file.parent.mkdir(parents=True, exist_ok=True)
        argv = [
            str(ANVIL),
            "--host", options.host,
            "--port", str(options.rpc_port),
            "--chain-id", str(DEV_CHAIN_ID),
            "--hardfork", HARDFORK,
            "--mnemonic", DEV_MNEMONIC,
            "--accounts", str(DEV_ACCOUNTS),
            "--state", str(options.state_file),
            "--state-interval", str(STATE_INTERVAL_S),
        ]  # fmt: skip
        argv += ["--block-time", str(options.block_time)]
        resumed = options.state_file.exists()
        child = _spawn("anvil", argv, options.log_dir, os.environ)
        self.children.append(child)
        w3 = Web3(Web3.HTTPProvider(options.rpc_url, request_kwargs={"timeout": 30}))
        _wait_until(child, w3.is_connected, "answering JSON-RPC")
        self._say(
            f"anvil on {options.rpc_url} (chain {DEV_CHAIN_ID}), "
            + (f"resumed at block {w3.eth.block_number}" if resumed else "new chain")
            + f", state in {options.state_file}"
        )
        return child

    def _brand_keys(self, settings: Settings, demo: Demo | None) -> list[dict[str, Any]]:
        """Registers the demo brands (new API keys) after a seed; otherwise the saved ones."""
        previous = read_dev_json(self.options.dev_json) or {}
        if demo is None:
            brands = previous.get("brands")
            if not isinstance(brands, list):
                raise DevError(
                    f"{self.options.dev_json} lost its brands; delete {self.options.data_dir} "
                    "to start over"
                )
            return brands
        url = settings.resolved_database_url
        migrate.upgrade(url)
        store = Store.from_url(url)
        try:
            with store.session() as session:
                known = {brand.address for brand in list_brands(session)}
                out = []
                for name, account in demo.brands:
                    key = new_api_key()
                    if account.address in known:
                        raise DevError(
                            f"the bridge database {url} already has brand {account.address}: "
                            f"it belongs to an earlier chain; delete {self.options.data_dir} "
                            "to start over"
                        )
                    create_brand(
                        session, name=name, address=account.address, api_key_hash=hash_api_key(key)
                    )
                    out.append(
                        {
                            "name": name,
                            "address": account.address,
                            "api_key": key,
                            "private_key": account.key.hex(),
                        }
                    )
        finally:
            store.close()
        return out

    def _retire_database(self, settings: Settings) -> None:
        """A new chain makes the old bridge database meaningless: move SQLite aside."""
        if settings.database_url is not None:
            return
        db = settings.data_dir / "bridge.db"
        if db.exists():
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
            for suffix in ("", "-wal", "-shm"):
                path = db.with_name(db.name + suffix)
                if path.exists():
                    path.rename(path.with_name(f"{path.name}.{stamp}.old"))
            self._say(f"new chain: the previous bridge database was kept as bridge.db.{stamp}.old")

    def _dev_json(
        self, deployment: DevDeployment, brands: list[dict[str, Any]], demo: Demo | None
    ) -> dict[str, Any]:
        previous = read_dev_json(self.options.dev_json) or {}
        if demo is not None:
            models = [
                {
                    "name": model.name,
                    "address": model.account.address,
                    "private_key": model.account.key.hex(),
                    "twin_ids": [model.twin_id],
                    "licenses": [
                        {
                            "brand": lic.brand,
                            "valid_from": lic.valid_from,
                            "valid_until": lic.valid_until,
                            "max_uses": lic.max_uses,
                            "prices": {UsageType(t).api_name: p for t, p in lic.prices.items()},
                        }
                        for lic in model.licenses
                    ],
                    "payees": [{"account": a, "bps": b} for a, b in model.payees],
                }
                for model in demo.models
            ]
        else:
            models = previous.get("models", [])
        roles = {
            "admin": dev_account(DEPLOYER).address,
            "registrar": dev_account(REGISTRAR).address,
            "attester": dev_account(ATTESTER).address,
            "relayer": dev_account(RELAYER).address,
            "pauser": dev_account(PAUSER).address,
        }
        return {
            "note": "local dev stack; every key here is a well-known anvil dev key, public by "
            "design: never send real value to these addresses",
            "pid": os.getpid(),
            "started_at": datetime.now(UTC).isoformat(),
            "api_url": self.options.api_url,
            "docs_url": f"{self.options.api_url}/docs",
            "dashboard_url": f"{self.options.api_url}/",
            "rpc_url": self.options.rpc_url,
            "chain_id": DEV_CHAIN_ID,
            "data_dir": str(self.options.data_dir),
            "contracts": deployment.contracts,
            "deployment": str(self.options.deployment_file),
            "roles": roles,
            "brands": brands,
            "models": models,
            "payees": previous.get("payees", {})
            if demo is None
            else {"agency": demo.agency.address, "photographer": demo.photographer.address},
            "try_it": try_it(self.options.api_url, brands, models),
        }

    # -- run

    def run(self, stop: threading.Event) -> None:
        """Starts everything, prints how to use it, and waits for ``stop`` or a child's death.

        Raises:
            AlreadyRunningError: the data directory is in use.
            DevError: a part did not start or died (the message has its log's tail).
        """
        options = self.options
        with data_dir_lock(options):
            settings = Settings(data_dir=options.data_dir)
            try:
                self._run_locked(settings, stop)
            finally:
                self._stop_all()

    def _run_locked(self, settings: Settings, stop: threading.Event) -> None:
        options = self.options
        self._start_anvil()
        w3 = Web3(Web3.HTTPProvider(options.rpc_url, request_kwargs={"timeout": 60}))
        deployment = ensure_deployment(w3, options, self.console)
        demo: Demo | None = None
        if deployment.fresh:
            self._say("seeding the demo...")
            self._retire_database(settings)
            demo = seed(
                w3,
                contract_at(w3, LEDGER, deployment.ledger),
                contract_at(w3, STABLECOIN, deployment.token),
            )
            self._say(
                f"seeded {len(demo.models)} models with one twin each, {len(demo.brands)} brands "
                f"and {sum(len(m.licenses) for m in demo.models)} licenses "
                f"({demo.tx_count} transactions)"
            )
        else:
            self._say(f"TwinLedger at {deployment.ledger} matches the compiled code: reusing it")
        brands = self._brand_keys(settings, demo)
        info = self._dev_json(deployment, brands, demo)
        _write_json(options.dev_json, {**info, "ready": False})
        if demo is not None:  # the demo is complete only once its brands' keys are saved
            mark_seeded(options, deployment.ledger)
        env = self._child_env(deployment)
        python = [sys.executable, "-m", "bridge"]
        api = _spawn(
            "api",
            [*python, "serve", "--host", options.host, "--port", str(options.api_port)],
            options.log_dir,
            env,
        )
        self.children.append(api)
        self.children.append(_spawn("worker", [*python, "worker"], options.log_dir, env))
        self.children.append(_spawn("indexer", [*python, "indexer"], options.log_dir, env))
        _wait_until(
            api,
            lambda: httpx.get(f"{options.api_url}/readyz", timeout=2).status_code == 200,
            "ready at /readyz",
        )
        _write_json(options.dev_json, {**info, "ready": True})
        self._print_ready(info)
        while not stop.wait(0.5):
            for child in self.children:
                code = child.proc.poll()
                if code is not None:
                    raise DevError(f"{child.name} stopped with exit code {code}:\n{child.tail()}")

    def _stop_all(self) -> None:
        # The API first (no new usages), then the worker (hands back its batch), then the chain.
        for child in sorted(self.children, key=lambda c: c.name == "anvil"):
            child.stop()
        self.children.clear()

    def _print_ready(self, info: Mapping[str, Any]) -> None:
        self._say("")
        self._say(f"Twin Bridge dev stack is up. Details: {self.options.dev_json}", style="bold")
        self._say(f"  API       {info['api_url']}  (OpenAPI at {info['docs_url']})")
        self._say(f"  dashboard {info['dashboard_url']}  (models, brands, auditors)")
        self._say(f"  chain     {info['rpc_url']}  (chain id {info['chain_id']})")
        self._say(f"  ledger    {info['contracts'][LEDGER]}")
        self._say(f"  logs      {self.options.log_dir}")
        self._say("")
        self._say("Try it: report a usage as a brand, then read its settlement:", style="bold")
        self._say(info["try_it"]["shell"])
        self._say("")
        self._say("Ctrl-C stops everything; the next start resumes the same chain and data.")


def _licensed_now(
    brands: list[dict[str, Any]], models: list[dict[str, Any]], now: int
) -> tuple[dict[str, Any], int, str]:
    """A (brand, twin id, usage type) the demo licenses now and for at least another week."""
    by_address = {brand["address"]: brand for brand in brands}
    for model in models:
        for lic in model.get("licenses", []):
            if lic["brand"] in by_address and lic["valid_from"] <= now < lic["valid_until"] - WEEK:
                return by_address[lic["brand"]], model["twin_ids"][0], sorted(lic["prices"])[0]
    raise DevError("the demo has no license valid now: delete the data directory to reseed")


def try_it(
    api_url: str, brands: list[dict[str, Any]], models: list[dict[str, Any]]
) -> dict[str, Any]:
    """The two ``curl`` commands that report a licensed usage as a demo brand and read its
    settlement, and what they send (for programs that do the same without a shell)."""
    brand, twin_id, usage_type = _licensed_now(brands, models, int(time.time()))
    fields = f'"twin_id":{twin_id},"usage_type":"{usage_type}","quantity":1'
    # single-quoted JSON, with the shell's $EVENT and the current time spliced in
    body = (
        '\'{"event_id":"\'"$EVENT"\'",'
        + fields
        + ',"used_at":"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'"}\''
    )
    shell = "\n".join(
        [
            f"  KEY={brand['api_key']}   # {brand['name']}",
            "  EVENT=try-$(date +%s)",
            f"  curl -s -w '\\n' -X POST {api_url}/v1/usage-events \\",
            '       -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\',
            f"       -d {body}",
            "  sleep 3",
            f"  curl -s -w '\\n' {api_url}/v1/usage-events/$EVENT"
            ' -H "Authorization: Bearer $KEY"',
        ]
    )
    return {
        "brand": brand["name"],
        "api_key": brand["api_key"],
        "report": {
            "method": "POST",
            "url": f"{api_url}/v1/usage-events",
            "json": {"twin_id": twin_id, "usage_type": usage_type, "quantity": 1},
            "note": "plus event_id and used_at (now, RFC 3339)",
        },
        "status": {"method": "GET", "url": f"{api_url}/v1/usage-events/{{event_id}}"},
        "shell": shell,
    }
