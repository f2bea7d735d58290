"""``make soak``: a bounded mixed load on loopback with one fault injected each minute, then the
audit.

The whole bridge runs as it would in production, each part its own process: anvil (1 s blocks,
``--state``), the API (``twin-bridge serve``), the settlement worker (RPC list: a proxy in front of
anvil, then anvil itself; 2 confirmations) and the indexer. Three brands report usage over HTTP
(single events and batches; a few refused at the door on purpose, a few sent twice), models sign
owner actions (pausing and unpausing their twins) that the API relays, auditors read event
statuses and the read API. Each minute one fault from ``FAULTS`` strikes, in turn: the worker
killed with SIGKILL and restarted, anvil restarted from its state, the first RPC URL down for 20 s,
a base fee spike, a reorg deeper than the confirmation depth, the API killed with SIGKILL and
restarted. Then the load stops, every usage is awaited to be settled or rejected, and
``twin-bridge audit --against-db`` must pass.

The report (``build/bench/soak.json`` and a table) gives events accepted, settled, rejected and
refused, the latencies (p50/p99) of each kind of request and of acceptance to settlement, and the
peak memory (RSS) of each process. Exit 0 when the audit passed and the counts add up.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import httpx
from eth_account import Account
from eth_utils.crypto import keccak
from sqlalchemy import func, select

from bridge.devstack.demo import dev_account
from bridge.domain.codec import Outcome
from bridge.intake.api_keys import hash_api_key, new_api_key
from bridge.store import migrate
from bridge.store.models import (
    ActionStatus,
    BatchStatus,
    OwnerAction,
    SettlementBatch,
    UsageEvent,
    UsageStatus,
)
from bridge.store.repository import Store, create_brand
from bridge.testing import Anvil, AnvilOptions, Proxy, World, free_port, rpc, setup
from bridge.testing.world import BRANDS
from scripts.bench_common import OUT_DIR, REPO_ROOT

FAULTS: Final = (
    "kill_worker",
    "restart_anvil",
    "rpc_down",
    "base_fee_spike",
    "reorg",
    "kill_api",
)
FAULT_AT_S: Final = 20
"""Seconds into each minute at which its fault strikes."""
RELAYER_KEY: Final = "0x" + keccak(text="twin-bridge soak relayer").hex()
CONFIRMATIONS: Final = 2
REORG_DEPTH: Final = 3
GWEI: Final = 10**9
FEE_CAP: Final = 200 * GWEI
MODEL_TWINS: Final = 3
"""Twins whose models pause and unpause them through the relay."""
DRAIN_TIMEOUT_S: Final = 240
OPEN_BATCHES: Final = (BatchStatus.SIGNED, BatchStatus.SENT, BatchStatus.MINED)
REQUEST_TIMEOUT_S: Final = 10
RETRY_FOR_S: Final = 60
"""A brand retries a request this long (its event id makes a retry harmless)."""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and its descendants, in kB (0 once it is gone)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except (OSError, ValueError):
        return total
    return total + sum(_rss_kb(int(child)) for child in children)


# ---------------------------------------------------------------- the bridge's processes


@dataclass
class Service:
    """A bridge command as a child process, restartable."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: IO[bytes]
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0
    unexpected_exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [sys.executable, "-m", "bridge", *self.argv],
            env=self.env,
            cwd=REPO_ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.starts += 1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def watch(self) -> None:
        """Restarts the process if it died on its own (counted: it should not)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.unexpected_exits.append(self.proc.returncode)
            self.start()

    def tail(self, lines: int = 30) -> str:
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])


# ---------------------------------------------------------------- measurements


@dataclass
class Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    answers: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    accepted_ids: set[str] = field(default_factory=set)
    actions: Counter[str] = field(default_factory=Counter)
    faults: list[dict[str, Any]] = field(default_factory=list)
    rss_peak_kb: Counter[str] = field(default_factory=Counter)

    def latency(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies[kind].append(seconds * 1000)

    def count(self, counter: str, key: str, n: int = 1) -> None:
        with self.lock:
            getattr(self, counter)[key] += n


class Soak:
    def __init__(self, *, minutes: float, rate: float, database_url: str | None, workdir: Path):
        self.minutes = minutes
        self.rate = rate
        self.workdir = workdir
        self.database_url = database_url or f"sqlite:///{workdir / 'bridge.db'}"
        self.stats = Stats()
        self.stop_load = threading.Event()
        self.rng = random.Random(20_261_128)  # noqa: S311 - a reproducible workload
        self.anvil = Anvil(AnvilOptions(state=workdir / "anvil-state.json", block_time=1))
        self.proxy: Proxy | None = None
        self.world: World | None = None
        self.services: dict[str, Service] = {}
        self.api_url = ""
        self.api_keys: list[str] = []
        self.offset = 0
        self.event_seq = itertools.count(1)
        self.paused: dict[int, bool] = defaultdict(bool)
        """Twins the models paused through the relay."""

    # ------------------------------------------------------------ setting up

    def start(self) -> None:
        self.anvil.start()
        w3 = self.anvil.w3
        self.world = setup(w3)
        relayer = Account.from_key(RELAYER_KEY).address
        rpc(w3, "anvil_setBalance", relayer, hex(10**22))
        self.offset = int(w3.eth.get_block("latest")["timestamp"]) - int(time.time())
        self.proxy = Proxy(self.anvil.port)
        self.proxy.up()
        migrate.upgrade(self.database_url)
        store = Store.from_url(self.database_url)
        with store.session() as session:
            for i, address in enumerate(self.world.brands):
                key = new_api_key()
                create_brand(
                    session, name=f"soak brand {i}", address=address, api_key_hash=hash_api_key(key)
                )
                self.api_keys.append(key)
        store.close()

        port = free_port()
        self.api_url = f"http://127.0.0.1:{port}"
        base = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
        base.update(
            {
                "TWIN_BRIDGE_DATA_DIR": str(self.workdir / "data"),
                "TWIN_BRIDGE_DATABASE_URL": self.database_url,
                "TWIN_BRIDGE_LEDGER_ADDRESS": self.world.ledger.address,
                "TWIN_BRIDGE_CONFIRMATIONS": str(CONFIRMATIONS),
                "PYTHONPATH": str(REPO_ROOT),
            }
        )
        api_env = {
            **base,
            "TWIN_BRIDGE_RPC_URL": self.anvil.url,
            "TWIN_BRIDGE_RATE_LIMIT_PER_S": "10000",
            "TWIN_BRIDGE_RATE_LIMIT_BURST": "10000",
            "TWIN_BRIDGE_ACTION_RATE_LIMIT_PER_S": "1000",
            # The benchmark's world runs an hour ahead of the wall clock.
            "TWIN_BRIDGE_USAGE_MAX_AHEAD": "PT2H",
            "TWIN_BRIDGE_LICENSE_CACHE_TTL_S": "2",
        }
        worker_env = {
            **base,
            "TWIN_BRIDGE_RPC_URL": self.proxy.url,
            "TWIN_BRIDGE_RPC_FALLBACK_URLS": json.dumps([self.anvil.url]),
            "TWIN_BRIDGE_ATTESTER_PRIVATE_KEY": "0x" + bytes(self.world.attester.key).hex(),
            "TWIN_BRIDGE_RELAYER_PRIVATE_KEY": RELAYER_KEY,
            "TWIN_BRIDGE_BATCH_SIZE": "200",
            "TWIN_BRIDGE_BATCH_MAX_AGE": "PT1S",
            "TWIN_BRIDGE_WORKER_POLL_S": "0.1",
            "TWIN_BRIDGE_WORKER_LEASE_TTL": "PT5S",
            "TWIN_BRIDGE_REPLACE_AFTER": "PT15S",
            "TWIN_BRIDGE_MAX_FEE_PER_GAS_WEI": str(FEE_CAP),
        }
        indexer_env = {
            **base,
            "TWIN_BRIDGE_RPC_URL": self.anvil.url,
            "TWIN_BRIDGE_INDEXER_POLL_S": "1",
        }
        for name, argv, env in (
            ("api", ["serve", "--port", str(port)], api_env),
            ("worker", ["worker"], worker_env),
            ("indexer", ["indexer"], indexer_env),
        ):
            log = tempfile.TemporaryFile(dir=self.workdir)  # noqa: SIM115 - closed in close()
            self.services[name] = Service(name, argv, env, log)
            self.services[name].start()
        self._wait_for_api()

    def _wait_for_api(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.api_url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the API did not start:\n{self.services['api'].tail()}")

    def close(self) -> None:
        for service in self.services.values():
            service.stop()
            service.log.close()
        if self.proxy is not None:
            self.proxy.down()
        self.anvil.close()

    # ------------------------------------------------------------ the load

    def chain_now(self) -> int:
        return int(time.time()) + self.offset

    def _request(self, kind: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        """A request retried (same body) on transport errors and 5xx/429 for ``RETRY_FOR_S``."""
        deadline = time.monotonic() + RETRY_FOR_S
        wait = 0.1
        while not self.stop_load.is_set() or kind.startswith("usage"):
            started = time.monotonic()
            try:
                response = httpx.request(
                    method, f"{self.api_url}{path}", timeout=REQUEST_TIMEOUT_S, **kwargs
                )
            except httpx.TransportError as exc:
                self.stats.count("errors", f"{kind}: {type(exc).__name__}")
            else:
                if response.status_code < 500 and response.status_code != 429:
                    self.stats.latency(kind, time.monotonic() - started)
                    return response
                self.stats.count("errors", f"{kind}: HTTP {response.status_code}")
            if time.monotonic() > deadline:
                return None
            time.sleep(wait)
            wait = min(wait * 2, 2.0)
        return None

    def _usage(self, brand: int) -> dict[str, Any]:
        assert self.world is not None  # noqa: S101 - set in start()
        twin = self.rng.choice(self.world.twin_ids)
        plan = self.world.licenses[twin, brand]
        roll = self.rng.random()
        if roll < 0.04:  # refused at the door: a usage type the license does not cover
            usage_type = next(t for t in range(6) if t not in plan.prices)
        else:
            usage_type = self.rng.choice(sorted(plan.prices))
        used_at = self.chain_now() - self.rng.randint(5, 120)
        if twin in self.world.twin_ids[:MODEL_TWINS] and roll > 0.7:
            # reported ahead of time: a pause by the model before then rejects it on chain
            used_at = self.chain_now() + self.rng.randint(10, 40)
        return {
            "event_id": f"soak-{brand}-{next(self.event_seq)}",
            "twin_id": twin,
            "usage_type": usage_type,
            "quantity": self.rng.randint(1, 3),
            "used_at": datetime.fromtimestamp(used_at, UTC).isoformat(),
        }

    def _record(self, event: dict[str, Any], answer: dict[str, Any]) -> None:
        status = answer.get("status")
        if not isinstance(status, str):  # a problem+json refusal: its HTTP status
            status = "refused" if "code" in answer else f"HTTP {status}"
        elif answer.get("replayed"):  # stored before: the event as it stands
            status = "replayed"
        self.stats.count("answers", str(status))
        if "usage_id" in answer:
            with self.stats.lock:
                self.stats.accepted_ids.add(event["event_id"])
        elif status == "refused" or "code" in answer:
            self.stats.count("refusals", str(answer.get("code")))

    def brand_loop(self, brand: int) -> None:
        auth = {"Authorization": f"Bearer {self.api_keys[brand]}"}
        sent: list[dict[str, Any]] = []
        while not self.stop_load.is_set():
            if self.rng.random() < 0.1:  # a batch of 20
                events = [self._usage(brand) for _ in range(20)]
                response = self._request(
                    "usage_batch", "POST", "/v1/usage-events", json={"events": events}, headers=auth
                )
                if response is not None and response.status_code == 200:
                    for event, answer in zip(events, response.json()["results"], strict=True):
                        self._record(event, answer)
                sent.extend(events)
            else:
                repeat = sent and self.rng.random() < 0.03  # the same event again
                event = self.rng.choice(sent) if repeat else self._usage(brand)
                response = self._request(
                    "usage_single", "POST", "/v1/usage-events", json=event, headers=auth
                )
                if response is not None:
                    self._record(event, response.json())
                sent.append(event)
            del sent[:-200]
            self.stop_load.wait(self.rng.expovariate(self.rate))

    def model_loop(self) -> None:
        assert self.world is not None  # noqa: S101 - set in start()
        ledger = self.world.ledger.functions
        accounts = [dev_account(i) for i in range(30)]
        owners = {account.address: account for account in accounts}
        twins = self.world.twin_ids[:MODEL_TWINS]
        owner_of = {twin: owners[ledger.ownerOf(twin).call()] for twin in twins}
        paused = self.paused
        types = httpx.get(f"{self.api_url}/v1/owner-actions/types", timeout=10).json()
        spec = types["actions"]["SetTwinPaused"]
        while not self.stop_load.is_set():
            twin = self.rng.choice(twins)
            account = owner_of[twin]
            nonce = self._request("read_nonce", "GET", f"/v1/accounts/{account.address}/nonce")
            if nonce is None:
                continue
            state = nonce.json()
            message = {
                "owner": account.address,
                "twinId": twin,
                "paused": not paused[twin],
                "nonce": state["next_nonce"],
                "deadline": int(state["chain_time_unix"]) + 600,
            }
            data = {
                "types": spec["types"],
                "primaryType": "SetTwinPaused",
                "domain": types["domain"],
                "message": message,
            }
            signature = Account.sign_typed_data(account.key, full_message=data).signature
            body = {
                "type": "SetTwinPaused",
                "signer": account.address,
                "message": message,
                "signature": "0x" + bytes(signature).hex(),
            }
            response = self._request("owner_action", "POST", "/v1/owner-actions", json=body)
            if response is None:
                continue
            if response.status_code not in (200, 201, 202):
                self.stats.count("actions", f"refused {response.status_code}")
                continue
            action = response.json()
            self.stats.count("actions", "accepted")
            deadline = time.monotonic() + 120
            while (
                action["status"] not in ("confirmed", "failed")
                and time.monotonic() < deadline
                and not self.stop_load.is_set()
            ):
                time.sleep(1)
                got = self._request("read_action", "GET", f"/v1/owner-actions/{action['id']}")
                if got is not None and got.status_code == 200:
                    action = got.json()
            self.stats.count("actions", str(action["status"]))
            if action["status"] == "confirmed":
                paused[twin] = not paused[twin]
            self.stop_load.wait(self.rng.uniform(5, 10))

    def auditor_loop(self) -> None:
        assert self.world is not None  # noqa: S101 - set in start()
        auth = {"Authorization": f"Bearer {self.api_keys[0]}"}
        while not self.stop_load.is_set():
            with self.stats.lock:
                ids = [i for i in self.stats.accepted_ids if i.startswith("soak-0-")]
            if ids:
                event_id = self.rng.choice(ids)
                self._request("read_status", "GET", f"/v1/usage-events/{event_id}", headers=auth)
            twin = self.rng.choice(self.world.twin_ids)
            self._request("read_api", "GET", f"/v1/twins/{twin}")
            brand = self.rng.choice(self.world.brands)
            self._request("read_api", "GET", f"/v1/brands/{brand}/account")
            self.stop_load.wait(0.5)

    def _guarded(self, name: str, loop: Callable[..., None], args: tuple[Any, ...]) -> None:
        """Runs a load loop until the load stops; one that raises (a fault it did not expect)
        is counted and started again."""
        while not self.stop_load.is_set():
            try:
                loop(*args)
            except Exception as exc:  # counted in the report, then started again
                self.stats.count("errors", f"{name} loop: {type(exc).__name__}")
                self.stop_load.wait(1)

    # ------------------------------------------------------------ faults

    def inject(self, name: str) -> None:
        started = time.monotonic()
        w3 = self.anvil.w3
        detail = ""
        match name:
            case "kill_worker":
                self.services["worker"].kill()
                time.sleep(1)
                self.services["worker"].start()
            case "kill_api":
                self.services["api"].kill()
                time.sleep(1)
                self.services["api"].start()
                self._wait_for_api()
            case "restart_anvil":
                self.anvil.stop()
                time.sleep(2)
                self.anvil.start()
            case "rpc_down":
                assert self.proxy is not None  # noqa: S101 - set in start()
                self.proxy.down()
                time.sleep(20)
                self.proxy.up()
            case "base_fee_spike":
                rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(100 * GWEI))
                time.sleep(10)
                rpc(w3, "anvil_setNextBlockBaseFeePerGas", hex(GWEI))
            case "reorg":
                before = w3.eth.get_block("latest")
                rpc(w3, "anvil_reorg", REORG_DEPTH, [])
                after = w3.eth.get_block(before["number"])
                detail = f"block {before['number']} replaced: {before['hash'] != after['hash']}"
        self.stats.faults.append(
            {
                "fault": name,
                "at_s": round(time.monotonic() - self.t0, 1),
                "took_s": round(time.monotonic() - started, 1),
                "detail": detail,
            }
        )
        print(f"[{time.monotonic() - self.t0:6.1f} s] fault: {name} {detail}", flush=True)

    # ------------------------------------------------------------ the run

    def run(self) -> dict[str, Any]:
        self.t0 = time.monotonic()
        loops: list[tuple[str, Callable[..., None], tuple[Any, ...]]] = [
            *((f"brand {b}", self.brand_loop, (b,)) for b in range(BRANDS)),
            ("models", self.model_loop, ()),
            ("auditors", self.auditor_loop, ()),
        ]
        threads = [threading.Thread(target=self._guarded, args=loop) for loop in loops]
        for thread in threads:
            thread.start()
        end = self.t0 + self.minutes * 60
        minute = 0
        try:
            while time.monotonic() < end:
                if time.monotonic() >= self.t0 + minute * 60 + FAULT_AT_S:
                    self.inject(FAULTS[minute % len(FAULTS)])
                    minute += 1
                for service in self.services.values():
                    service.watch()
                self._sample_memory()
                time.sleep(1)
        finally:
            self.stop_load.set()
            for thread in threads:
                thread.join(timeout=RETRY_FOR_S + 30)
        load_s = time.monotonic() - self.t0
        drained = self._drain()
        for name in ("worker", "indexer", "api"):
            self.services[name].stop()
        audit = self._audit()
        return self._report(load_s=load_s, drained=drained, audit=audit)

    def _sample_memory(self) -> None:
        pids: dict[str, int | None] = {
            name: s.proc.pid if s.proc else None for name, s in self.services.items()
        }
        pids["anvil"] = self.anvil.proc.pid if self.anvil.proc else None
        for name, pid in pids.items():
            if pid is not None:
                rss = _rss_kb(pid)
                self.stats.rss_peak_kb[name] = max(self.stats.rss_peak_kb[name], rss)
        soak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        self.stats.rss_peak_kb["soak (load generator)"] = soak

    def _db_counts(self) -> tuple[Counter[str], Counter[str], Counter[str]]:
        """Usages by status, owner actions and batches still on their way, usages rejected."""
        store = Store.from_url(self.database_url)
        try:
            with store.session() as session:
                usages = Counter(
                    {
                        str(s.value): n
                        for s, n in session.execute(
                            select(UsageEvent.status, func.count()).group_by(UsageEvent.status)
                        )
                    }
                )
                actions = Counter(
                    {
                        "actions waiting": session.scalar(
                            select(func.count())
                            .select_from(OwnerAction)
                            .where(
                                OwnerAction.status == ActionStatus.ACCEPTED,
                                OwnerAction.batch_id.is_(None),
                            )
                        )
                        or 0,
                        "transactions open": session.scalar(
                            select(func.count())
                            .select_from(SettlementBatch)
                            .where(SettlementBatch.status.in_(OPEN_BATCHES))
                        )
                        or 0,
                    }
                )
                rows = session.execute(
                    select(UsageEvent.reason_code, func.count())
                    .where(UsageEvent.status == UsageStatus.REJECTED)
                    .group_by(UsageEvent.reason_code)
                )
                reasons = Counter({Outcome(code or 0).name.lower(): n for code, n in rows})
        finally:
            store.close()
        return usages, actions, reasons

    def _drain(self) -> bool:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while time.monotonic() < deadline:
            usages, actions, _ = self._db_counts()
            if not (usages["accepted"] + usages["submitted"] + actions.total()):
                return True
            for service in self.services.values():
                service.watch()
            self._sample_memory()
            time.sleep(1)
        return False

    def _audit(self) -> dict[str, Any]:
        assert self.world is not None  # noqa: S101 - set in start()
        out = self.workdir / "audit.json"
        started = time.monotonic()
        done = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [
                sys.executable,
                "-m",
                "bridge",
                "audit",
                "--rpc",
                self.anvil.url,
                "--ledger",
                self.world.ledger.address,
                "--against-db",
                self.database_url,
                "--json",
                str(out),
                "--quiet",
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=False,
            env=self.services["api"].env,
        )
        result: dict[str, Any] = {
            "exit_code": done.returncode,
            "seconds": round(time.monotonic() - started, 1),
        }
        if out.exists():
            data = json.loads(out.read_text())
            result.update(
                clean=data["clean"],
                summary=data["summary"],
                discrepancies=data["discrepancies"][:20],
            )
        else:
            result.update(clean=False, output=done.stdout[-2000:] + done.stderr[-2000:])
        return result

    def _settle_latencies(self) -> list[float]:
        store = Store.from_url(self.database_url)
        try:
            with store.session() as session:
                rows = session.execute(
                    select(UsageEvent.created_at, UsageEvent.updated_at).where(
                        UsageEvent.status == UsageStatus.SETTLED
                    )
                )
                return [(u - c).total_seconds() * 1000 for c, u in rows]
        finally:
            store.close()

    def _report(self, *, load_s: float, drained: bool, audit: dict[str, Any]) -> dict[str, Any]:
        usages, actions, rejected = self._db_counts()
        stats = self.stats
        total = sum(usages.values())
        summary = audit.get("summary", {})
        checks = {
            "audit passed": audit.get("exit_code") == 0 and bool(audit.get("clean")),
            "every usage settled or rejected": drained
            and total == usages["settled"] + usages["rejected"],
            "accepted events = stored usages": len(stats.accepted_ids) == total,
            "stored usages = usages on chain": summary.get("usages") == total,
            "settled = paid on chain": summary.get("usages_paid") == usages["settled"],
            "no process died on its own": not any(
                s.unexpected_exits for s in self.services.values()
            ),
        }
        latencies = {
            kind: {
                "count": len(values),
                "p50_ms": percentile(values, 0.5),
                "p99_ms": percentile(values, 0.99),
            }
            for kind, values in sorted(stats.latencies.items())
        }
        settle = self._settle_latencies()
        latencies["accepted_to_settled"] = {
            "count": len(settle),
            "p50_ms": percentile(settle, 0.5),
            "p99_ms": percentile(settle, 0.99),
        }
        return {
            "minutes": self.minutes,
            "load_seconds": round(load_s, 1),
            "rate_per_brand": self.rate,
            "database": self.database_url.split(":", 1)[0],
            "events": {
                "accepted": len(stats.accepted_ids),
                "settled": usages["settled"],
                "rejected_on_chain": rejected.total(),
                "rejected_by_reason": dict(rejected),
                "held": usages["held"],
                "open": usages["accepted"] + usages["submitted"],
                "refused_at_door": sum(stats.refusals.values()),
                "refused_by_reason": dict(stats.refusals),
                "answers": dict(stats.answers),
            },
            "owner_actions": {**dict(stats.actions), **dict(actions)},
            "request_errors_retried": dict(stats.errors),
            "latency": latencies,
            "peak_rss_mb": {k: round(v / 1024, 1) for k, v in stats.rss_peak_kb.items()},
            "faults": stats.faults,
            "restarts": {n: s.starts - 1 for n, s in self.services.items()},
            "unexpected_exits": {n: s.unexpected_exits for n, s in self.services.items()},
            "audit": audit,
            "checks": checks,
            "passed": all(checks.values()),
        }


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def print_report(report: dict[str, Any], write: Callable[[str], None] = print) -> None:
    events = report["events"]
    faults = ", ".join(f["fault"] for f in report["faults"])
    write(f"\nsoak: {report['minutes']} min on {report['database']}, faults: {faults}")
    write(
        f"  events accepted {events['accepted']:,}, settled {events['settled']:,}, rejected on "
        f"chain {events['rejected_on_chain']:,}, refused at the door "
        f"{events['refused_at_door']:,}, held {events['held']}, open {events['open']}"
    )
    write(f"  {'latency':<22} {'count':>8} {'p50 ms':>10} {'p99 ms':>10}")
    for kind, row in report["latency"].items():
        write(f"  {kind:<22} {row['count']:>8,} {_ms(row['p50_ms']):>10} {_ms(row['p99_ms']):>10}")
    write("  peak RSS: " + ", ".join(f"{k} {v} MB" for k, v in report["peak_rss_mb"].items()))
    audit = report["audit"]
    write(
        f"  audit --against-db: exit {audit.get('exit_code')}, clean {audit.get('clean')}, "
        f"{audit.get('summary', {}).get('usages', '?')} usages on chain"
    )
    for name, ok in report["checks"].items():
        write(f"  {'✓' if ok else '✗'} {name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=8.0, help="Requests/s of each brand.")
    parser.add_argument("--database-url", help="The bridge's database (default: SQLite).")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "soak.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="twin-bridge-soak-") as tmp:
        soak = Soak(
            minutes=args.minutes, rate=args.rate, database_url=args.database_url, workdir=Path(tmp)
        )
        try:
            soak.start()
            report = soak.run()
        finally:
            soak.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"  report: {args.out}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
