"""A dress rehearsal of a Sepolia deployment on anvil (``make rehearse-testnet``).

Starts anvil with Sepolia's chain id (11155111, so raw keys are refused and every operator key is an
encrypted keystore) and 12 s blocks, then does what an operator does on Sepolia, through the same
commands:

1. ``twin-bridge keystore new`` for the deployer, admin, attester and relayer (in a temporary
   directory), and funds them (anvil's ``anvil_setBalance`` stands in for the faucet);
2. ``twin-bridge deploy --network rehearsal`` (3 confirmations, the network's fee cap);
3. ``twin-bridge doctor --network rehearsal``;
4. as the registrar, models and a brand (keys held here, transactions signed locally): mints twins,
   offers licenses that the brand accepts, deposits escrow; registers the brand with
   ``twin-bridge brand create``;
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
from web3.logs import DISCARD
from web3.types import TxReceipt

from bridge.chain.toolchain import load_artifact
from bridge.deploy.manifest import load_manifest
from bridge.deploy.networks import NetworkConfig, load_networks
from bridge.testing.anvil import Anvil, AnvilError, AnvilOptions, latest_timestamp, rpc
from bridge.testing.processes import free_port, spawn, stop_process, tail
from bridge.testing.world import USD

NETWORK: Final = "rehearsal"
CHAIN_ID: Final = 11155111
DEFAULT_PORT: Final = 8546
PRICE: Final = 3 * USD
"""Price per campaign image in the rehearsal's licenses (mock USD, 6 decimals)."""
ESCROW: Final = 1_000 * USD
MODELS: Final = 2
WORLD_TX_GAS: Final = 600_000


class RehearsalError(RuntimeError):
    """A step of the rehearsal failed."""


# ====================================================================== processes


@dataclass
class Service:
    """A ``twin-bridge`` command running in the background, its output in ``<logs>/<name>.log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def tail(self) -> str:
        return tail(self.log, 25)


@contextmanager
def _background(
    name: str, argv: Sequence[str], env: Mapping[str, str], logs: Path
) -> Iterator[Service]:
    log_path = logs / f"{name}.log"
    with log_path.open("wb") as log:
        proc = spawn(argv, log, env=env)
        try:
            yield Service(name, proc, log_path)
        finally:
            stop_process(proc, timeout=10)


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
        return rpc(self.w3, method, *params)


# ====================================================================== chain helpers


def _start_anvil(port: int, block_time: float, logs: Path, stack: ExitStack) -> Anvil:
    """Anvil as Sepolia: its chain id, ``block_time`` s blocks, anvil's own accounts and rules."""
    options = AnvilOptions(
        port=port,
        chain_id=CHAIN_ID,
        block_time=block_time,
        hardfork=None,
        gas_limit=None,
        accounts=None,
    )
    anvil = stack.enter_context(Anvil(options, log=logs / "anvil.log", rpc_timeout=30))
    return anvil


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
class Campaign:
    """What the rehearsal sets up on its fresh deployment: twins minted by the registrar (the
    deployer), offered by their models to one brand, which accepted and deposited escrow."""

    ledger: Contract
    brand: LocalAccount
    twins: list[int]
    licensed_at: int


def _contracts(r: Rehearsal, manifest_path: Path) -> tuple[Contract, Contract]:
    """The manifest's ledger and token."""
    manifest = load_manifest(manifest_path)
    ledger = r.w3.eth.contract(address=manifest.ledger_address, abi=load_artifact("TwinLedger").abi)
    token = r.w3.eth.contract(
        address=manifest.token_address, abi=load_artifact("MockStablecoin").abi
    )
    return ledger, token


def _campaign(r: Rehearsal, manifest_path: Path) -> Campaign:
    ledger, token = _contracts(r, manifest_path)
    registrar = _decrypt(r, "deployer")
    models: list[LocalAccount] = [Account.create() for _ in range(MODELS)]
    brand: LocalAccount = Account.create()
    for account in (*models, brand):
        r.rpc("anvil_setBalance", account.address, hex(10**18))
    mints: list[tuple[LocalAccount, str, bytes | str]] = [
        (
            registrar,
            ledger.address,
            ledger.encode_abi(
                "mint", [model.address, f"ipfs://rehearsal/twin-{i}", keccak(text=f"consent {i}")]
            ),
        )
        for i, model in enumerate(models)
    ]
    receipts = _send_all(
        r,
        [
            *mints,
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
    licensed_at = _license(r, ledger, models, twins, brand)
    return Campaign(ledger=ledger, brand=brand, twins=twins, licensed_at=licensed_at)


def _license(
    r: Rehearsal,
    ledger: Contract,
    models: Sequence[LocalAccount],
    twins: Sequence[int],
    brand: LocalAccount,
) -> int:
    """Each model offers the brand a license of its twin for campaign images, and the brand
    accepts each offer by its version and terms hash: the time of the last acceptance."""
    now = latest_timestamp(r.w3)
    terms = (brand.address, now, now + 30 * 86400, 0, keccak(text="rehearsal campaign"),
             keccak(text="rehearsal consent"), [(0, PRICE)])  # fmt: skip
    offered = _send_all(
        r,
        [
            (model, ledger.address, ledger.encode_abi("offerLicense", [twin, terms]))
            for model, twin in zip(models, twins, strict=True)
        ],
    )
    offers = [
        event["args"]
        for receipt in offered
        for event in ledger.events.LicenseOffered().process_receipt(receipt, errors=DISCARD)
    ]
    accepted = _send_all(
        r,
        [
            (brand, ledger.address,
             ledger.encode_abi("acceptLicense", [o["twinId"], o["version"], o["termsHash"]]))
            for o in offers
        ],
    )  # fmt: skip
    r.step(
        f"models offered their twins to the brand: campaign images at {PRICE / USD:.2f} mUSD; "
        f"the brand accepted {len(accepted)} offers (block {accepted[-1]['blockNumber']})"
    )
    return int(r.w3.eth.get_block(accepted[-1]["blockNumber"])["timestamp"])


def _wait_http(url: str, services: Sequence[Service], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _check_running(services)
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RehearsalError(f"{url} did not answer 200 within {timeout:.0f} s")


def _check_running(services: Sequence[Service]) -> None:
    for service in services:
        if service.proc.poll() is not None:
            raise RehearsalError(
                f"{service.name} exited with {service.proc.returncode}:\n{service.tail()}"
            )


def _deploy(r: Rehearsal, network: NetworkConfig, manifest_path: Path) -> None:
    """Operator keystores, funded; ``twin-bridge deploy`` (twice: the second changes nothing) and
    ``twin-bridge doctor``."""
    addresses = _keystores(r)
    r.step(
        "keystores (twin-bridge keystore new): "
        + ", ".join(f"{name} {address}" for name, address in addresses.items())
    )
    for name in ("deployer", "relayer", "admin"):
        r.rpc("anvil_setBalance", addresses[name], hex(10 * 10**18))
    r.step("funded the deployer, relayer and admin with 10 ETH each (the faucet's part)")

    t0 = time.monotonic()
    deploy = ("deploy", "--network", NETWORK, "--manifest", str(manifest_path))
    ledger_address = r.run(*deploy).strip()
    manifest = load_manifest(manifest_path)
    r.step(
        f"deployed ledger {ledger_address} with {network.confirmations} confirmations in "
        f"{time.monotonic() - t0:.0f} s (manifest {manifest_path.name}, admin "
        f"{addresses['admin']}, whose actions wait {manifest.role_delay:,} s)"
    )
    if (
        manifest.ledger_address != ledger_address
        or manifest.roles.get("ADMIN_ROLE") != [addresses["admin"]]
        or manifest.role_delay != network.role_delay
    ):
        raise RehearsalError(f"the manifest does not record the deployment:\n{manifest}")
    again = r.run(*deploy).strip()
    if again != ledger_address:
        raise RehearsalError(f"deploying again gave {again}, not {ledger_address}")
    r.step("deploying again changed nothing")

    doctor = r.run("doctor", "--network", NETWORK, "--manifest", str(manifest_path))
    r.say(doctor.rstrip())
    r.step(f"doctor: {doctor.strip().splitlines()[-1]}")


def _serve(
    r: Rehearsal,
    network: NetworkConfig,
    manifest_path: Path,
    stack: ExitStack,
) -> tuple[str, list[Service]]:
    """``twin-bridge serve`` and ``worker`` on the manifest's ledger: the API's URL, and both."""
    api_port = free_port()
    r.env.update(
        {
            "TWIN_BRIDGE_RPC_URL": r.env["TWIN_BRIDGE_REHEARSAL_RPC_URL"],
            "TWIN_BRIDGE_DEPLOYMENT": str(manifest_path),
            "TWIN_BRIDGE_CONFIRMATIONS": str(network.confirmations),
            "TWIN_BRIDGE_MAX_FEE_PER_GAS_WEI": str(network.max_fee_per_gas_wei),
            "TWIN_BRIDGE_BATCH_MAX_AGE": "PT1S",
        }
    )
    logs = r.work / "logs"
    serve = stack.enter_context(
        _background("serve", [*_cli(), "serve", "--port", str(api_port)], r.env, logs)
    )
    worker = stack.enter_context(_background("worker", [*_cli(), "worker"], r.env, logs))
    api = f"http://127.0.0.1:{api_port}"
    _wait_http(f"{api}/readyz", [serve, worker], timeout=60)
    r.step(f"twin-bridge serve ({api}) and worker running against the manifest's ledger")
    return api, [serve, worker]


def _report_usages(
    r: Rehearsal, api: str, headers: Mapping[str, str], campaign: Campaign, usages: int
) -> list[dict[str, Any]]:
    """Reports ``usages`` usages of the campaign's twins through the HTTP API: the events."""
    used_at = max(campaign.licensed_at, latest_timestamp(r.w3))
    events: list[dict[str, Any]] = [
        {
            "event_id": f"rehearsal-{i}",
            "twin_id": campaign.twins[i % len(campaign.twins)],
            "usage_type": "campaign_image",
            "quantity": 1 + i % 2,
            "used_at": datetime.fromtimestamp(used_at, UTC).isoformat(),
        }
        for i in range(usages)
    ]
    response = httpx.post(
        f"{api}/v1/usage-events", json={"events": events}, headers=headers, timeout=30
    )
    if response.status_code >= 300:
        raise RehearsalError(f"reporting usages: {response.status_code} {response.text}")
    statuses = [item.get("status") for item in response.json().get("results", [])]
    r.step(f"reported {usages} usages over HTTP: {response.status_code} {statuses}")
    return events


def _check_paid(
    r: Rehearsal,
    network: NetworkConfig,
    campaign: Campaign,
    events: Sequence[Mapping[str, Any]],
    settled: Sequence[Mapping[str, Any]],
    elapsed: float,
) -> None:
    """Every usage settled deep enough and paid its price; the twins and the escrow agree."""
    expected = sum(PRICE * e["quantity"] for e in events)
    paid = sum(int(s["amount"]) for s in settled)
    latest = r.w3.eth.block_number
    for s in settled:
        depth = latest - int(s["block_number"]) + 1
        if depth < network.confirmations:
            raise RehearsalError(f"{s['event_id']} settled at depth {depth}")
        r.say(
            f"  {s['event_id']}: twin {s['twin_id']}, x{s['quantity']}, settled in "
            f"{s['tx_hash']} (block {s['block_number']}, log {s['log_index']}), paid "
            f"{int(s['amount']) / USD:.2f} mUSD"
        )
    ledger = campaign.ledger.functions
    accrued = sum(int(ledger.twinState(t).call()[0]) for t in campaign.twins)
    escrow = int(ledger.brandAccount(campaign.brand.address).call()[0])
    if paid != expected or accrued != expected or escrow != ESCROW - expected:
        raise RehearsalError(
            f"paid {paid}, accrued {accrued}, escrow {escrow}: expected {expected} paid"
        )
    r.step(
        f"all {len(events)} usages settled with {network.confirmations} confirmations in "
        f"{elapsed:.0f} s: {paid / USD:.2f} mUSD paid, twins accrued {accrued / USD:.2f}, "
        f"brand escrow {escrow / USD:.2f}"
    )


def rehearse(*, block_time: float, port: int, usages: int, timeout: float, keep: bool) -> list[str]:
    """Runs the rehearsal; returns the report lines, raises RehearsalError on the first failure."""
    started = time.monotonic()
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="twin-rehearsal-")))
        if keep:
            stack.pop_all()
        logs = work / "logs"
        logs.mkdir()
        anvil = _start_anvil(port or free_port(), block_time, logs, stack)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
        env.update(
            {
                "TWIN_BRIDGE_REHEARSAL_RPC_URL": anvil.url,
                "TWIN_BRIDGE_DATA_DIR": str(work / "state"),
            }
        )
        r = Rehearsal(work, env, block_time, timeout, anvil.w3, [])
        r.step(
            f"anvil as Sepolia: chain {anvil.w3.eth.chain_id}, {block_time:g} s blocks, {anvil.url}"
        )

        network = load_networks(environ=env)[NETWORK]
        manifest_path = work / "deployments" / f"{NETWORK}.json"
        _deploy(r, network, manifest_path)
        campaign = _campaign(r, manifest_path)
        api_key = (
            r.run(
                "brand",
                "create",
                "--name",
                "Rehearsal Atelier",
                "--address",
                campaign.brand.address,
            )
            .strip()
            .splitlines()[-1]
        )
        r.step(f"brand registered with the bridge (API key {api_key[:12]}…)")

        api, services = _serve(r, network, manifest_path, stack)
        headers = {"Authorization": f"Bearer {api_key}"}
        t0 = time.monotonic()
        events = _report_usages(r, api, headers, campaign, usages)
        settled = _wait_settled(r, api, headers, events, services)
        _check_paid(r, network, campaign, events, settled, time.monotonic() - t0)
        r.step(f"rehearsal passed in {time.monotonic() - started:.0f} s")
        if keep:
            r.say(f"kept {work}")
        return r.report


def _wait_settled(
    r: Rehearsal,
    api: str,
    headers: Mapping[str, str],
    events: Sequence[Mapping[str, Any]],
    services: Sequence[Service],
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + r.timeout
    last: dict[str, str] = {}
    while time.monotonic() < deadline:
        _check_running(services)
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
        f"{services[1].tail()}"
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
    except (RehearsalError, AnvilError, subprocess.TimeoutExpired) as exc:
        print(f"✗ rehearsal failed: {exc}", file=sys.stderr, flush=True)
        return 1
    print("\nrehearsal report\n" + "\n".join(f"  ✓ {line}" for line in report), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
