"""``make run`` itself: the dev stack starts in a temporary data directory with the demo's accepted
licenses and what it leaves waiting (an offer, a brand's own limits, a scheduled role grant), the
printed "try it" commands report a usage that settles on chain, a second start is refused with a
clear message, Ctrl-C stops everything, and a restart resumes the same chain, contracts, keys and
history."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from sqlalchemy import create_engine, text
from web3 import Web3

from bridge.chain.deploy import contract_at
from bridge.chain.toolchain import REPO_ROOT
from bridge.devstack.demo import (
    ESCROW_PER_BRAND,
    LIMIT_PER_PERIOD,
    LIMIT_PER_USAGE,
    STANDBY_ATTESTER,
    dev_account,
)
from bridge.domain.usage import UsageType

pytestmark = pytest.mark.integration

START_TIMEOUT_S = 180.0
STOP_TIMEOUT_S = 60.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    out: Path

    def output(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def interrupt(self) -> None:
        """Ctrl-C in the terminal: SIGINT to the whole foreground process group. make itself
        then ends by the signal, after the dev stack has stopped its parts."""
        os.killpg(self.proc.pid, signal.SIGINT)
        assert self.proc.wait(timeout=STOP_TIMEOUT_S) in (0, -signal.SIGINT)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while "dev stack stopped; chain state saved" not in self.output():
            assert time.monotonic() < deadline, self.output()
            time.sleep(0.2)


@dataclass
class Stack:
    data_dir: Path
    rpc_port: int
    api_port: int
    runs: list[Run]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
        env["TWIN_BRIDGE_DATA_DIR"] = str(self.data_dir)
        return env

    def make_run(self, name: str) -> Run:
        out = self.data_dir.parent / f"{name}.out"
        args = f"--rpc-port {self.rpc_port} --api-port {self.api_port} --block-time 0.5"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                ["make", "-s", "--no-print-directory", "run", f"DEV_ARGS={args}"],  # noqa: S607
                cwd=REPO_ROOT,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        run = Run(proc, out)
        self.runs.append(run)
        return run

    def wait_ready(self, run: Run) -> dict[str, Any]:
        """dev.json of this run once it says ready, and the API answers."""
        deadline = time.monotonic() + START_TIMEOUT_S
        dev_json = self.data_dir / "dev.json"
        while time.monotonic() < deadline:
            if run.proc.poll() is not None:
                pytest.fail(f"make run exited with {run.proc.returncode}:\n{run.output()}")
            try:
                info = json.loads(dev_json.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                info = {}
            if info.get("ready") is True and "Ctrl-C stops everything" in run.output():
                assert httpx.get(f"{info['api_url']}/readyz", timeout=5).status_code == 200
                return dict(info)
            time.sleep(0.5)
        pytest.fail(f"the dev stack was not ready in {START_TIMEOUT_S} s:\n{run.output()}")


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(tmp_path / "data", _free_port(), _free_port(), [])
    try:
        yield stack
    finally:
        for run in stack.runs:
            if run.proc.poll() is None:
                os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()


def _try_it_block(output: str) -> str:
    """The shell lines printed under "Try it", as a script."""
    lines = output.split("Try it:", 1)[1].splitlines()[1:]
    block = []
    for line in lines:
        if not line.startswith("  "):
            break
        block.append(line[2:])
    return "\n".join(block)


def _wait_settled(api_url: str, key: str, event_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = httpx.get(
            f"{api_url}/v1/usage-events/{event_id}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=5,
        ).json()
        if status["status"] in ("settled", "rejected"):
            return status
        time.sleep(0.5)
    pytest.fail(f"usage {event_id} did not settle: {status}")


def _a_day_over_the_brands_own_limits(info: dict[str, Any], ledger: Any) -> None:
    """The demo brand with limits of its own (2,000 USD per usage, 10,000 a day): a usage dearer
    than the first is refused at the door; usages reported past the second are rejected on chain
    with outcome 13 and say so."""
    brand = next(b for b in info["brands"] if b["name"] == "Atelier Kei")
    price, twin_id, usage_type = max(
        (price, model["twin_ids"][0], usage_type)
        for model in info["models"]
        for lic in model["licenses"]
        if lic["brand"] == brand["address"] and lic["max_uses"] == 0
        for usage_type, price in lic["prices"].items()
    )
    quantity = LIMIT_PER_USAGE // price
    limits = ledger.functions.brandLimits(brand["address"]).call()
    if limits[3] + 86_400 - time.time() < 120:  # too near the day's end: start in the next day
        time.sleep(limits[3] + 86_400 - time.time() + 2)
        limits = ledger.functions.brandLimits(brand["address"]).call()
    assert (limits[0], limits[1]) == (LIMIT_PER_USAGE, LIMIT_PER_PERIOD)
    count = (LIMIT_PER_PERIOD - limits[2]) // (price * quantity) + 1
    used_at = (datetime.now(UTC) - timedelta(seconds=2)).isoformat()
    headers = {"Authorization": f"Bearer {brand['api_key']}"}

    def event(event_id: str, amount: int) -> dict[str, Any]:
        body = {"twin_id": twin_id, "usage_type": usage_type, "used_at": used_at}
        return {"event_id": event_id, "quantity": amount, **body}

    url = f"{info['api_url']}/v1/usage-events"
    dear = httpx.post(url, json=event("limits-dear", quantity + 1), headers=headers, timeout=10)
    assert (dear.status_code, dear.json()["code"]) == (422, "over_usage_limit")
    events = [event(f"limits-{i}", quantity) for i in range(count)]
    posted = httpx.post(url, json={"events": events}, headers=headers, timeout=10)
    assert posted.status_code in (200, 202, 207), posted.text
    statuses = [_wait_settled(info["api_url"], brand["api_key"], e["event_id"]) for e in events]
    assert [s["status"] for s in statuses] == ["settled"] * (count - 1) + ["rejected"]
    assert {s["amount"] for s in statuses[:-1]} == {str(price * quantity)}
    assert (statuses[-1]["outcome_code"], statuses[-1]["code"], statuses[-1]["sentence"]) == (
        13,
        "over_period_limit",
        "the usage would pass the brand's spending limit for the period",
    )


def _wait_indexed(db: Path, usage_id: int) -> tuple[Any, ...]:
    """(twins, and the usage's brand, twin, outcome, amount, tx) once the indexer has them."""
    engine = create_engine(f"sqlite:///{db}")
    deadline = time.monotonic() + 60
    row: tuple[Any, ...] | None = None
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                twins = conn.execute(text("SELECT count(*) FROM twins")).scalar_one()
                row = conn.execute(
                    text(
                        "SELECT brand, twin_id, outcome, amount, tx_hash FROM settled_usages "
                        "WHERE usage_id = :id"
                    ),
                    {"id": usage_id},
                ).one_or_none()
            if row is not None:
                brand, twin, outcome, amount, tx = row
                return (twins, brand, twin, outcome, int(amount), tx)
            time.sleep(0.5)
    finally:
        engine.dispose()
    pytest.fail(f"the indexer did not index usage {usage_id}")


def check_waiting(w3: Web3, info: dict[str, Any]) -> None:
    """What the demo leaves waiting is on chain as ``dev.json`` says: the offer (not payable until
    the brand accepts it), Atelier Kei's own limits and the scheduled grant of ATTESTER_ROLE."""
    ledger = contract_at(w3, "TwinLedger", info["contracts"]["TwinLedger"])
    manager = contract_at(w3, "TwinAccessManager", info["contracts"]["TwinAccessManager"])
    offer, grant = info["waiting"]["offer"], info["waiting"]["role_grant"]
    _, version, terms_hash = ledger.functions.offerOf(offer["twin_id"], offer["brand"]).call()
    assert (version, "0x" + terms_hash.hex()) == (offer["version"], offer["terms_hash"])
    model = next(m for m in info["models"] if m["twin_ids"] == [offer["twin_id"]])
    assert offer["brand"] not in {lic["brand"] for lic in model["licenses"]}
    atelier = next(b for b in info["brands"] if b["name"] == "Atelier Kei")["address"]
    assert info["waiting"]["spending_limits"] == {
        atelier: {"per_usage": LIMIT_PER_USAGE, "per_period": LIMIT_PER_PERIOD}
    }
    assert ledger.functions.brandLimits(atelier).call()[:2] == (LIMIT_PER_USAGE, LIMIT_PER_PERIOD)
    standby = dev_account(STANDBY_ATTESTER).address
    assert (grant["role"], grant["account"]) == ("ATTESTER_ROLE", standby)
    assert manager.functions.getSchedule(grant["operation_id"]).call() == grant["executable_from"]
    assert manager.functions.hasRole(2, standby).call() == [False, 0]


def test_make_run_settles_the_printed_usage_and_resumes_after_a_restart(stack: Stack) -> None:
    first = stack.make_run("first")
    info = stack.wait_ready(first)

    # dev.json: connection details, contracts, brands with API keys, models with dev keys
    assert info["chain_id"] == 31337
    assert info["api_url"] == f"http://127.0.0.1:{stack.api_port}"
    assert info["rpc_url"] == f"http://127.0.0.1:{stack.rpc_port}"
    assert set(info["contracts"]) == {
        "TwinLedger", "TwinLedgerExtension", "TwinAccessManager", "MockStablecoin",
        "EscrowBook", "LicenseBook", "PayeeBook", "SpendingBook", "TwinBook",
    }  # fmt: skip
    assert [b["name"] for b in info["brands"]] == ["Maison Lumiere", "Nordic Thread", "Atelier Kei"]
    assert all(re.fullmatch(r"tb_live_[A-Za-z0-9_-]{43}", b["api_key"]) for b in info["brands"])
    assert len(info["models"]) == 30
    assert [m["twin_ids"] for m in info["models"]] == [[i] for i in range(1, 31)]
    for model in info["models"]:
        assert Account.from_key(model["private_key"]).address == model["address"]
    assert {p["bps"] for m in info["models"] for p in m["payees"]} == {1_500, 500}

    w3 = Web3(Web3.HTTPProvider(info["rpc_url"]))
    ledger = contract_at(w3, "TwinLedger", info["contracts"]["TwinLedger"])
    for model in info["models"]:
        assert ledger.functions.ownerOf(model["twin_ids"][0]).call() == model["address"]
    check_waiting(w3, info)
    offer = info["waiting"]["offer"]
    assert (
        f"  offer     {offer['model']} offers twin {offer['twin_id']} to "
        f"{next(b['name'] for b in info['brands'] if b['address'] == offer['brand'])} "
        f"(version {offer['version']}): not payable until the brand accepts it"
    ) in first.output()
    assert f"  role      ATTESTER_ROLE for {dev_account(STANDBY_ATTESTER).address}: " in (
        first.output()
    )

    # the printed "try it" commands, run as printed
    script = _try_it_block(first.output())
    assert "curl -s -w" in script
    assert "-X POST" in script
    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],  # noqa: S607
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    posted, status = (json.loads(line) for line in ran.stdout.strip().splitlines())
    assert posted["status"] == "accepted"
    assert posted["usage_id"] == 1
    assert status["event_id"] == posted["event_id"]
    assert status["status"] in ("accepted", "submitted", "settled")

    try_it = info["try_it"]
    brand = next(b for b in info["brands"] if b["name"] == try_it["brand"])
    twin_id = try_it["report"]["json"]["twin_id"]
    usage_type = try_it["report"]["json"]["usage_type"]
    model = next(m for m in info["models"] if m["twin_ids"] == [twin_id])
    price = next(lic for lic in model["licenses"] if lic["brand"] == brand["address"])["prices"][
        usage_type
    ]
    settled = _wait_settled(info["api_url"], brand["api_key"], posted["event_id"])
    assert settled["status"] == "settled"
    assert settled["amount"] == str(price)
    assert settled["usage_type"] == usage_type == UsageType[usage_type.upper()].api_name
    receipt = w3.eth.get_transaction_receipt(settled["tx_hash"])
    assert receipt["status"] == 1
    assert receipt["blockNumber"] == settled["block_number"]
    escrow = ledger.functions.brandAccount(brand["address"]).call()[0]
    assert escrow == ESCROW_PER_BRAND - price

    _a_day_over_the_brands_own_limits(info, ledger)

    # the indexer mirrors the chain into the store: the 30 twins and the settled usage
    indexed = _wait_indexed(stack.data_dir / "bridge.db", posted["usage_id"])
    assert indexed == (30, brand["address"], twin_id, 0, price, settled["tx_hash"])

    # a second `make run` on the same data dir says so
    second = subprocess.run(
        ["make", "-s", "--no-print-directory", "run"],  # noqa: S607
        cwd=REPO_ROOT,
        env=stack.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert second.returncode != 0
    assert "a Twin Bridge dev stack is already running from" in " ".join(second.stderr.split())

    # Ctrl-C stops everything and saves the chain
    block_before = w3.eth.block_number
    first.interrupt()
    assert not w3.is_connected()

    # restart: same contracts, keys, balances and history; nothing seeded again
    again = stack.make_run("again")
    info2 = stack.wait_ready(again)
    assert "reusing it" in again.output()
    assert "seeding" not in again.output()
    assert info2["contracts"] == info["contracts"]
    assert info2["brands"] == info["brands"]
    assert info2["models"] == info["models"]
    assert w3.eth.block_number >= block_before
    assert ledger.functions.brandAccount(brand["address"]).call()[0] == ESCROW_PER_BRAND - price
    after = httpx.get(
        f"{info2['api_url']}/v1/usage-events/{posted['event_id']}",
        headers={"Authorization": f"Bearer {brand['api_key']}"},
        timeout=5,
    ).json()
    assert after == settled
    assert (
        w3.eth.get_transaction_receipt(settled["tx_hash"])["blockNumber"] == settled["block_number"]
    )
    again.interrupt()


def _twin_bridge(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "twin-bridge"), *args],
        cwd=REPO_ROOT,
        env={**stack.env(), "COLUMNS": "250", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _check_lines(stdout: str) -> list[str]:
    """Each check's mark and name (the details hold block numbers and times)."""
    return [line.split(": ", 1)[0] for line in stdout.splitlines()]


def test_doctor_passes_on_a_running_dev_stack_and_fails_when_a_role_is_wrong(
    stack: Stack, tmp_path: Path
) -> None:
    info = stack.wait_ready(stack.make_run("doctor"))
    roles = info["roles"]
    rpc = info["rpc_url"]
    expected = [
        f"✓ rpc {rpc}",
        f"✓ chain id {rpc}",
        "✓ deployer key",
        "✓ attester key",
        "✓ relayer key",
        "✓ contracts",
        "✓ REGISTRAR_ROLE",
        "✓ ATTESTER_ROLE",
        "✓ PAUSER_ROLE",
        "✓ ADMIN_ROLE",
        "✓ grant delays",
        "✓ relayer balance",
        "network local is ready",
    ]
    for args, env in (
        (("doctor", "--dev"), {}),
        (("doctor",), {}),
        (("doctor", "--network", "local"), {"TWIN_BRIDGE_LOCAL_RPC_URL": rpc}),
    ):
        done = _twin_bridge(stack, *args, **env)
        assert (done.returncode, _check_lines(done.stdout)) == (0, expected), done.stderr
        assert f"using the dev stack of {stack.data_dir / 'dev.json'}" in done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines()[:-1])
    assert lines["✓ attester key"] == f"{roles['attester']} from raw key"
    assert lines["✓ relayer key"] == f"{roles['relayer']} from raw key"
    assert lines["✓ ATTESTER_ROLE"] == f"held by {roles['attester']}"
    assert lines["✓ REGISTRAR_ROLE"] == f"held by {roles['registrar']}"
    assert lines["✓ PAUSER_ROLE"] == f"held by {roles['pauser']}"
    assert lines["✓ ADMIN_ROLE"] == f"held by {roles['admin']}; its actions wait 300 s"

    wrong = (REPO_ROOT / "deploy" / "networks.toml").read_text(encoding="utf-8")
    wrong = wrong.replace(
        'attester = ["0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"]',
        'attester = ["0x90F79bf6EB2c4f870365E785982E1f101E93b906"]',
    )
    networks = tmp_path / "networks.toml"
    networks.write_text(wrong, encoding="utf-8")
    done = _twin_bridge(
        stack,
        "doctor",
        "--network",
        "local",
        "--networks",
        str(networks),
        TWIN_BRIDGE_LOCAL_RPC_URL=rpc,
    )
    assert done.returncode == 1, done.stdout
    assert (
        "✗ ATTESTER_ROLE: 0x90F79bf6EB2c4f870365E785982E1f101E93b906 lacks it"
        in done.stdout.splitlines()
    )
    assert done.stdout.splitlines()[-1] == "1 of 12 checks failed"

    audit = _twin_bridge(stack, "audit", "--dev", "--quiet")
    assert audit.returncode == 0, audit.stdout
    assert audit.stdout.splitlines()[-2:] == [
        "clean: the ledger's state is what its events say",
        "database: not checked",
    ]
    db = stack.data_dir / "bridge.db"
    audit = _twin_bridge(stack, "audit", "--quiet", "--against-db", str(db))
    assert audit.returncode == 0, audit.stdout
    assert re.fullmatch(
        rf"database {re.escape(str(db))}: \d+ usages and \d+ batches compared with the chain: "
        "all agree",
        audit.stdout.splitlines()[-1],
    )
