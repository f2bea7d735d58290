"""A dress rehearsal of a Sepolia deployment on anvil (``make rehearse-testnet``).

Starts anvil with Sepolia's chain id (11155111, so raw keys are refused and every operator key is an
encrypted keystore) and 12 s blocks, then does what an operator does on Sepolia, through the same
commands:

1. ``twin-bridge keystore new`` for the deployer, admin, attester and relayer (in a temporary
   directory), and funds them (anvil's ``anvil_setBalance`` stands in for the faucet);
2. ``twin-bridge deploy --network rehearsal`` (3 confirmations, the network's fee cap);
3. ``twin-bridge doctor --network rehearsal``;
4. as the registrar, models and a brand (keys held here, transactions signed locally): mints twins,
   grants licenses, deposits escrow; registers the brand with ``twin-bridge brand create``;
5. starts ``twin-bridge serve`` and ``twin-bridge worker`` (confirmations 3, keystores, fee cap,
   the ledger taken from the verified manifest), reports usages through the HTTP API and waits
   until each is settled with its transaction hash;
6. prints a report, and exits 0 only if every step passed.

``--block-time 1`` runs the same rehearsal in about a minute (the test suite does).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.contract import Contract
from web3.types import RPCEndpoint, TxReceipt

from bridge.chain.toolchain import load_artifact
from bridge.deploy.deployment import load_manifest, load_networks

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
ANVIL: Final = REPO_ROOT / "node_modules" / ".bin" / "anvil"
NETWORK: Final = "rehearsal"
CHAIN_ID: Final = 11155111
DEFAULT_PORT: Final = 8546
USD: Final = 10**6
PRICE: Final = 3 * USD
"""Price per campaign image in the rehearsal's licenses (mock USD, 6 decimals)."""
ESCROW: Final = 1_000 * USD
MODELS: Final = 2
WORLD_TX_GAS: Final = 600_000


class RehearsalError(RuntimeError):
    """A step of the rehearsal failed."""


# ====================================================================== processes


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stops a process we started, with its process group (SIGTERM, then SIGKILL)."""
    if proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@contextmanager
def _background(
    name: str, argv: Sequence[str], env: Mapping[str, str], logs: Path
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: S603 - argv built here, no shell
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            start_new_session=True,
        )
        try:
            yield proc, log_path
        finally:
            _stop(proc)


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("twin-bridge")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bridge"]


@dataclass
class Rehearsal:
    work: Path
    env: dict[str, str]
    block_time: float
    timeout: float
    w3: Web3
    report: list[str]

    def say(self, text: str) -> None:
        print(text, flush=True)

    def step(self, text: str) -> None:
        self.report.append(text)
        self.say(f"✓ {text}")

    def run(self, *args: str, timeout: float | None = None) -> str:
        """Runs ``twin-bridge args`` to completion: its stdout, or RehearsalError."""
        proc = subprocess.run(  # noqa: S603 - argv built here, no shell
            [*_cli(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout or self.timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RehearsalError(
                f"`twin-bridge {' '.join(args)}` exited {proc.returncode}:\n"
                f"{proc.stdout}\n{proc.stderr}"
            )
        return proc.stdout

    def rpc(self, method: str, *params: Any) -> Any:
        response = self.w3.provider.make_request(RPCEndpoint(method), list(params))
        if "error" in response:
            raise RehearsalError(f"{method} failed: {response['error']}")
        return response.get("result")


# ====================================================================== chain helpers


def _start_anvil(port: int, block_time: float, logs: Path, stack: ExitStack) -> tuple[Web3, str]:
    if not os.access(ANVIL, os.X_OK):
        raise RehearsalError(f"{ANVIL} not found: run `make node_modules`")
    url = f"http://127.0.0.1:{port}"
    proc, log = stack.enter_context(
        _background(
            "anvil",
            [
                str(ANVIL),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--chain-id",
                str(CHAIN_ID),
                "--block-time",
                f"{block_time:g}",
            ],
            os.environ,
            logs,
        )
    )
    w3 = Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": 30}))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RehearsalError(f"anvil exited with {proc.returncode}:\n{_tail(log)}")
        if w3.is_connected():
            return w3, url
        time.sleep(0.2)
    raise RehearsalError(f"anvil did not answer on {url}:\n{_tail(log)}")


def _send_all(
    r: Rehearsal, calls: Sequence[tuple[LocalAccount, str, bytes | str]]
) -> list[TxReceipt]:
    """Signs and sends ``(account, to, calldata)`` transactions (consecutive nonces per account),
    then waits for every receipt."""
    nonces: dict[str, int] = {}
    base_fee = int(r.w3.eth.get_block("latest")["baseFeePerGas"])  # type: ignore[typeddict-item]
    hashes = []
    for account, to, data in calls:
        if account.address not in nonces:
            nonces[account.address] = r.w3.eth.get_transaction_count(account.address, "pending")
        tx = {
            "type": 2,
            "chainId": CHAIN_ID,
            "nonce": nonces[account.address],
            "to": to,
            "data": data,
            "value": 0,
            "maxFeePerGas": 2 * base_fee + 10**9,
            "maxPriorityFeePerGas": 10**9,
            # A fixed limit: later transactions depend on earlier ones still pending, which an
            # estimate would not see. Each of these uses well under half of it.
            "gas": WORLD_TX_GAS,
        }
        nonces[account.address] += 1
        signed = account.sign_transaction(tx)  # type: ignore[arg-type]
        hashes.append(r.w3.eth.send_raw_transaction(signed.raw_transaction))
    receipts = []
    for tx_hash in hashes:
        receipt = r.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=r.timeout)
        if receipt["status"] != 1:
            raise RehearsalError(f"transaction {tx_hash.to_0x_hex()} reverted")
        receipts.append(receipt)
    return receipts


# ====================================================================== the rehearsal


def _keystores(r: Rehearsal) -> dict[str, str]:
    """Creates the operator keystores with ``twin-bridge keystore new``: name -> address."""
    password_file = r.work / "password"
    password_file.write_text(keccak(os.urandom(32)).hex() + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    addresses = {}
    for name in ("deployer", "admin", "attester", "relayer"):
        out = r.work / "keys" / f"{name}.json"
        addresses[name] = r.run(
            "keystore", "new", "--out", str(out), "--password-file", str(password_file)
        ).strip()
    r.env.update(
        {
            "TWIN_BRIDGE_DEPLOYER_KEYSTORE": str(r.work / "keys" / "deployer.json"),
            "TWIN_BRIDGE_DEPLOYER_PASSWORD_FILE": str(password_file),
            "TWIN_BRIDGE_REHEARSAL_ADMIN": addresses["admin"],
            "TWIN_BRIDGE_REHEARSAL_ATTESTER": addresses["attester"],
            "TWIN_BRIDGE_ATTESTER_KEYSTORE": str(r.work / "keys" / "attester.json"),
            "TWIN_BRIDGE_RELAYER_KEYSTORE": str(r.work / "keys" / "relayer.json"),
            "TWIN_BRIDGE_KEYSTORE_PASSWORD_FILE": str(password_file),
        }
    )
    return addresses


def _decrypt(r: Rehearsal, name: str) -> LocalAccount:
    password = (r.work / "password").read_text(encoding="utf-8").splitlines()[0]
    encrypted = json.loads((r.work / "keys" / f"{name}.json").read_text(encoding="utf-8"))
    account: LocalAccount = Account.from_key(Account.decrypt(encrypted, password))
    return account


@dataclass
class World:
    ledger: Contract
    brand: LocalAccount
    twins: list[int]
    licensed_at: int


def _world(r: Rehearsal, manifest_path: Path) -> World:
    """Twins minted by the registrar (the deployer), licensed by their models to one brand, which
    deposits escrow."""
    manifest = load_manifest(manifest_path)
    ledger = r.w3.eth.contract(address=manifest.ledger_address, abi=load_artifact("TwinLedger").abi)
    token = r.w3.eth.contract(
        address=manifest.token_address, abi=load_artifact("MockStablecoin").abi
    )
    registrar = _decrypt(r, "deployer")
    models: list[LocalAccount] = [Account.create() for _ in range(MODELS)]
    brand: LocalAccount = Account.create()
    for account in (*models, brand):
        r.rpc("anvil_setBalance", account.address, hex(10**18))
    receipts = _send_all(
        r,
        [
            *(
                (
                    registrar,
                    ledger.address,
                    ledger.encode_abi(
                        "mint",
                        [model.address, f"ipfs://rehearsal/twin-{i}", keccak(text=f"consent {i}")],
                    ),
                )
                for i, model in enumerate(models)
            ),
            (brand, token.address, token.encode_abi("mint", [brand.address, ESCROW])),
            (brand, token.address, token.encode_abi("approve", [ledger.address, ESCROW])),
            (brand, ledger.address, ledger.encode_abi("deposit", [brand.address, ESCROW])),
        ],
    )
    twins = list(range(1, MODELS + 1))  # a fresh ledger numbers its twins from 1
    owners = [ledger.functions.ownerOf(twin).call() for twin in twins]
    if owners != [model.address for model in models]:
        raise RehearsalError(f"twins {twins} are owned by {owners}, not by the models")
    r.step(
        f"registrar minted twins {twins} to {len(models)} models (block "
        f"{receipts[0]['blockNumber']}); brand {brand.address} deposited "
        f"{ESCROW // USD:,} mUSD escrow"
    )
    now = int(r.w3.eth.get_block("latest")["timestamp"])
    terms = (brand.address, now, now + 30 * 86400, 0, keccak(text="rehearsal campaign"),
             keccak(text="rehearsal consent"), [(0, PRICE)])  # fmt: skip
    receipts = _send_all(
        r,
        [
            (model, ledger.address, ledger.encode_abi("grantLicense", [twin, terms]))
            for model, twin in zip(models, twins, strict=True)
        ],
    )
    licensed_at = int(r.w3.eth.get_block(receipts[-1]["blockNumber"])["timestamp"])
    r.step(
        f"models licensed their twins to the brand: campaign images at {PRICE / USD:.2f} mUSD "
        f"(block {receipts[-1]['blockNumber']})"
    )
    return World(ledger=ledger, brand=brand, twins=twins, licensed_at=licensed_at)


def _wait_http(
    url: str, procs: Sequence[tuple[subprocess.Popen[bytes], Path]], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc, log in procs:
            if proc.poll() is not None:
                raise RehearsalError(f"{log.stem} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RehearsalError(f"{url} did not answer 200 within {timeout:.0f} s")


def rehearse(*, block_time: float, port: int, usages: int, timeout: float, keep: bool) -> list[str]:
    """Runs the rehearsal; returns the report lines, raises RehearsalError on the first failure."""
    started = time.monotonic()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="twin-rehearsal-")))
        if keep:
            stack.pop_all()
        logs = work / "logs"
        logs.mkdir()
        port = port or _free_port()
        w3, url = _start_anvil(port, block_time, logs, stack)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
        env.update(
            {
                "TWIN_BRIDGE_REHEARSAL_RPC_URL": url,
                "TWIN_BRIDGE_DATA_DIR": str(work / "state"),
            }
        )
        r = Rehearsal(work, env, block_time, timeout, w3, [])
        r.step(f"anvil as Sepolia: chain {w3.eth.chain_id}, {block_time:g} s blocks, {url}")

        network = load_networks(environ=env)[NETWORK]
        addresses = _keystores(r)
        r.step(
            "keystores (twin-bridge keystore new): "
            + ", ".join(f"{name} {address}" for name, address in addresses.items())
        )
        for name in ("deployer", "relayer", "admin"):
            r.rpc("anvil_setBalance", addresses[name], hex(10 * 10**18))
        r.step("funded the deployer, relayer and admin with 10 ETH each (the faucet's part)")

        manifest_path = work / "deployments" / f"{NETWORK}.json"
        t0 = time.monotonic()
        ledger_address = r.run(
            "deploy", "--network", NETWORK, "--manifest", str(manifest_path)
        ).strip()
        manifest = load_manifest(manifest_path)
        r.step(
            f"deployed ledger {ledger_address} with {network.confirmations} confirmations in "
            f"{time.monotonic() - t0:.0f} s (manifest {manifest_path.name}, admin transfer to "
            f"{addresses['admin']} pending)"
        )
        if manifest.ledger_address != ledger_address or manifest.pending_admin is None:
            raise RehearsalError(f"the manifest does not record the deployment:\n{manifest}")
        again = r.run("deploy", "--network", NETWORK, "--manifest", str(manifest_path)).strip()
        if again != ledger_address:
            raise RehearsalError(f"deploying again gave {again}, not {ledger_address}")
        r.step("deploying again changed nothing")

        doctor = r.run("doctor", "--network", NETWORK, "--manifest", str(manifest_path))
        r.say(doctor.rstrip())
        r.step(f"doctor: {doctor.strip().splitlines()[-1]}")

        world = _world(r, manifest_path)
        api_key = (
            r.run(
                "brand", "create", "--name", "Rehearsal Atelier", "--address", world.brand.address
            )
            .strip()
            .splitlines()[-1]
        )
        r.step(f"brand registered with the bridge (API key {api_key[:12]}…)")

        api_port = _free_port()
        env.update(
            {
                "TWIN_BRIDGE_RPC_URL": url,
                "TWIN_BRIDGE_DEPLOYMENT": str(manifest_path),
                "TWIN_BRIDGE_CONFIRMATIONS": str(network.confirmations),
                "TWIN_BRIDGE_MAX_FEE_PER_GAS_WEI": str(network.max_fee_per_gas_wei),
                "TWIN_BRIDGE_BATCH_MAX_AGE": "PT1S",
            }
        )
        serve = stack.enter_context(
            _background("serve", [*_cli(), "serve", "--port", str(api_port)], env, logs)
        )
        worker = stack.enter_context(_background("worker", [*_cli(), "worker"], env, logs))
        api = f"http://127.0.0.1:{api_port}"
        _wait_http(f"{api}/readyz", [serve, worker], timeout=60)
        r.step(f"twin-bridge serve ({api}) and worker running against the manifest's ledger")

        used_at = max(world.licensed_at, int(w3.eth.get_block("latest")["timestamp"]))
        events = [
            {
                "event_id": f"rehearsal-{i}",
                "twin_id": world.twins[i % len(world.twins)],
                "usage_type": "campaign_image",
                "quantity": 1 + i % 2,
                "used_at": datetime.fromtimestamp(used_at, UTC).isoformat(),
            }
            for i in range(usages)
        ]
        headers = {"Authorization": f"Bearer {api_key}"}
        t0 = time.monotonic()
        response = httpx.post(
            f"{api}/v1/usage-events", json={"events": events}, headers=headers, timeout=30
        )
        if response.status_code >= 300:
            raise RehearsalError(f"reporting usages: {response.status_code} {response.text}")
        statuses = [item.get("status") for item in response.json().get("results", [])]
        r.step(f"reported {usages} usages over HTTP: {response.status_code} {statuses}")

        settled = _wait_settled(r, api, headers, events, [serve, worker])
        elapsed = time.monotonic() - t0
        expected = sum(PRICE * e["quantity"] for e in events)  # type: ignore[operator]
        paid = sum(int(s["amount"]) for s in settled)
        latest = w3.eth.block_number
        for s in settled:
            depth = latest - int(s["block_number"]) + 1
            if depth < network.confirmations:
                raise RehearsalError(f"{s['event_id']} settled at depth {depth}")
            r.say(
                f"  {s['event_id']}: twin {s['twin_id']}, x{s['quantity']}, settled in "
                f"{s['tx_hash']} (block {s['block_number']}, log {s['log_index']}), paid "
                f"{int(s['amount']) / USD:.2f} mUSD"
            )
        accrued = sum(int(world.ledger.functions.twinState(t).call()[0]) for t in world.twins)
        escrow = int(world.ledger.functions.brandAccount(world.brand.address).call()[0])
        if paid != expected or accrued != expected or escrow != ESCROW - expected:
            raise RehearsalError(
                f"paid {paid}, accrued {accrued}, escrow {escrow}: expected {expected} paid"
            )
        r.step(
            f"all {usages} usages settled with {network.confirmations} confirmations in "
            f"{elapsed:.0f} s: {paid / USD:.2f} mUSD paid, twins accrued {accrued / USD:.2f}, "
            f"brand escrow {escrow / USD:.2f}"
        )
        r.step(f"rehearsal passed in {time.monotonic() - started:.0f} s")
        if keep:
            r.say(f"kept {work}")
        return r.report


def _wait_settled(
    r: Rehearsal,
    api: str,
    headers: Mapping[str, str],
    events: Sequence[Mapping[str, Any]],
    procs: Sequence[tuple[subprocess.Popen[bytes], Path]],
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + r.timeout
    last: dict[str, str] = {}
    while time.monotonic() < deadline:
        for proc, log in procs:
            if proc.poll() is not None:
                raise RehearsalError(f"{log.stem} exited with {proc.returncode}:\n{_tail(log)}")
        found = []
        for event in events:
            got = httpx.get(
                f"{api}/v1/usage-events/{event['event_id']}", headers=headers, timeout=10
            )
            if got.status_code != 200:
                raise RehearsalError(f"status of {event['event_id']}: {got.status_code} {got.text}")
            found.append(got.json())
        for item in found:
            if item["status"] in ("rejected", "held"):
                raise RehearsalError(f"{item['event_id']} was {item['status']}: {item}")
        now = {item["event_id"]: item["status"] for item in found}
        if now != last:
            r.say(f"  statuses: {now}")
            last = now
        if all(item["status"] == "settled" and item["tx_hash"] for item in found):
            return found
        time.sleep(min(2.0, r.block_time / 2))
    raise RehearsalError(
        f"not all usages settled within {r.timeout:.0f} s: {last}\nworker log:\n"
        f"{_tail(procs[1][1])}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--block-time", type=float, default=12.0, help="seconds per block (12)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="anvil's port (8546; 0 for a free one)"
    )
    parser.add_argument("--usages", type=int, default=4, help="usages to report (4)")
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds any one step may take (900)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    try:
        report = rehearse(
            block_time=args.block_time,
            port=args.port,
            usages=args.usages,
            timeout=args.timeout,
            keep=args.keep,
        )
    except (RehearsalError, subprocess.TimeoutExpired) as exc:
        print(f"✗ rehearsal failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print("\nrehearsal report\n" + "\n".join(f"  ✓ {line}" for line in report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
