"""Ingest throughput and latency of the brand API (``make bench-ingest``).

Starts a throwaway anvil and deploys the ledger with twins, licenses and escrow (the gas benchmark's
``setup``), registers its brands with API keys in a fresh store, and serves the real API with
``twin-bridge serve --workers 2`` on a loopback port: the real ``Web3LicenseView`` (with its TTL
cache) checks every event against the ledger, and every accepted usage is committed to the store
before its 2xx answer (concurrent requests share the commit: group commit).
A load generator in this process (asyncio, raw HTTP/1.1 over keep-alive connections, on the same
machine as the server and anvil) then measures, in rounds:

- durable batch ingest: POSTs of 1,000 events, events accepted per second;
- single-event POSTs: requests per second and their latency (p50, p99);
- baselines in the same run: ``GET /healthz`` requests per second over the same connections (what
  the HTTP stack alone gives), single-event POSTs with group commit off (one transaction per
  request, ``TWIN_BRIDGE_GROUP_COMMIT_MAX_EVENTS=0``), and the raw store insert rate
  (``insert_usages`` of 1,000 rows in this process, no HTTP).

Each backend is measured in turn: SQLite (WAL, the embedded default), then PostgreSQL in a fresh
database when a server answers at ``TWIN_BRIDGE_BENCH_PG_URL``. Writes ``build/bench/ingest.json``
and prints a table. It is a measurement: it exits 0 whether or not the DESIGN.md targets are met,
and non-zero only when the benchmark itself could not run (a server that does not start, an event
that was not accepted, a count in the store that does not match).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import random
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

import orjson
import psycopg
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from bridge.intake.api_keys import hash_api_key, new_api_key
from bridge.settings import Settings
from bridge.store import migrate
from bridge.store.models import UsageEvent
from bridge.store.repository import NewUsage, Store, create_brand, insert_usages
from bridge.testing.anvil import latest_timestamp, local_anvil
from bridge.testing.postgres import create_database, database_url, drop_databases
from bridge.testing.processes import NotReadyError, free_port, spawn, stop_process, wait_ready
from bridge.testing.world import SETUP_ADVANCE, World, setup
from scripts.bench_common import OUT_DIR, REPO_ROOT, BenchError, machine, write_report

BATCH_EVENTS: Final = 1000
USED_WITHIN: Final = 60
"""Events are reported up to this many seconds after the use (``used_at``)."""
SEED: Final = 20_261_128
PG_URL: Final = os.environ.get(
    "TWIN_BRIDGE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SERVER_START_TIMEOUT: Final = 60.0

TARGET_BATCH_EVENTS_PER_S: Final = 20_000
TARGET_SINGLE_REQUESTS_PER_S: Final = 1_500
TARGET_SINGLE_P99_MS: Final = 25.0


@dataclass(frozen=True)
class Config:
    rounds: int = 5
    seconds: float = 4.0
    """Measured seconds per round."""
    warm_up: float = 1.0
    """Seconds run before each kind of load is measured (caches, connections, JIT-free warm-up)."""
    workers: int = 2
    """uvicorn worker processes."""
    batch_connections: int = 4
    single_connections: int = 8
    postgres: bool = True
    out_dir: Path = OUT_DIR


# ====================================================================== the server


@dataclass
class Server:
    url: str
    host: str
    port: int
    command: list[str]
    pgid: int
    """Process group of uvicorn and its workers."""

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server's live processes."""
        return _group_cpu_seconds(self.pgid)


def _group_cpu_seconds(pgid: int) -> float:
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def serve(env: dict[str, str], workers: int, log: IO[bytes]) -> Iterator[Server]:
    """``twin-bridge serve`` on a free loopback port, stopped when the block exits."""
    port = free_port()
    command = [
        sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--no-access-log",
    ]  # fmt: skip
    proc = spawn(command, log, env=env, cwd=REPO_ROOT)
    try:
        try:
            wait_ready(
                proc,
                lambda: asyncio.run(_get_once("127.0.0.1", port, "/readyz"))[0] == 200,
                what="the API",
                log=log,
                timeout=SERVER_START_TIMEOUT,
            )
        except NotReadyError as exc:
            raise BenchError(str(exc)) from None
        yield Server(f"http://127.0.0.1:{port}", "127.0.0.1", port, command[1:], proc.pid)
    finally:
        stop_process(proc)


# ====================================================================== the load generator


class Connection:
    """One keep-alive HTTP/1.1 connection: a request, then its whole response, in turn."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, *, key: str | None = None, body: bytes | None = None
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        if key is not None:
            head += f"Authorization: Bearer {key}\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + (body or b""))
        headers = await self._reader.readuntil(b"\r\n\r\n")
        status = int(headers[9:12])
        length = None
        for line in headers.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
                break
        if length is None:
            raise BenchError(f"response without content-length: {headers[:200]!r}")
        return status, await self._reader.readexactly(length)

    async def close(self) -> None:
        self._writer.close()
        with suppress(OSError):
            await self._writer.wait_closed()


async def _get_once(host: str, port: int, path: str) -> tuple[int, bytes]:
    conn = await Connection.open(host, port)
    try:
        return await conn.request("GET", path)
    finally:
        await conn.close()


def _group_totals(server: Server) -> tuple[float, float]:
    """Requests and transactions written so far by group commit, over all of the server's workers
    (``twin_bridge_ingest_group_requests`` sum and count, from ``/metrics``)."""
    status, body = asyncio.run(_get_once(server.host, server.port, "/metrics"))
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    totals = {}
    for line in body.decode().splitlines():
        name, _, value = line.partition(" ")
        if name in (
            "twin_bridge_ingest_group_requests_sum",
            "twin_bridge_ingest_group_requests_count",
        ):
            totals[name.rsplit("_", 1)[1]] = float(value)
    return totals.get("sum", 0.0), totals.get("count", 0.0)


Exchange = Callable[[Connection, int], Awaitable[int]]
"""Sends one request on the connection (the connection's number given); the events it carried."""


@dataclass
class Round:
    seconds: float
    requests: int
    events: int
    latencies_ms: list[float]
    server_cpu_s: float = 0.0
    load_generator_cpu_s: float = 0.0

    @property
    def requests_per_s(self) -> float:
        return self.requests / self.seconds

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds

    @property
    def server_cpu_ms_per_request(self) -> float:
        return 1000 * self.server_cpu_s / max(1, self.requests)

    def percentile_ms(self, p: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def _load(
    server: Server, connections: int, exchange: Exchange, warm_up: float, seconds: float
) -> Round:
    """Closed loop: every connection sends its next request as soon as the last one is answered.
    Requests finishing in the measured window (after ``warm_up``) count."""
    conns = [await Connection.open(server.host, server.port) for _ in range(connections)]
    start = time.perf_counter()
    measured_from = start + warm_up
    until = measured_from + seconds
    latencies: list[float] = []
    totals = [0, 0]

    async def loop(number: int) -> None:
        conn = conns[number]
        while True:
            sent = time.perf_counter()
            if sent >= until:
                return
            events = await exchange(conn, number)
            done = time.perf_counter()
            if measured_from <= sent and done <= until:
                latencies.append((done - sent) * 1000)
                totals[0] += 1
                totals[1] += events

    try:
        await asyncio.gather(*(loop(i) for i in range(connections)))
    finally:
        for conn in conns:
            await conn.close()
    return Round(seconds, totals[0], totals[1], latencies)


# ====================================================================== the workload


@dataclass
class Workload:
    """Usage events of the set-up world, each brand sending with its own API key."""

    world: World
    keys: list[str]
    licensed_from: int
    prefix: str
    rng: random.Random = field(default_factory=lambda: random.Random(SEED))  # noqa: S311
    sequence: int = 0
    accepted: int = 0

    def event(self, brand: int) -> dict[str, Any]:
        rng = self.rng
        twin = rng.choice(self.world.twin_ids)
        plan = self.world.licenses[twin, brand]
        now = int(time.time())
        used_at = max(self.licensed_from, now - rng.randint(0, USED_WITHIN))
        self.sequence += 1
        return {
            "event_id": f"{self.prefix}-{brand}-{self.sequence}",
            "twin_id": twin,
            "usage_type": rng.choice(sorted(plan.prices)),
            "quantity": rng.randint(1, 3),
            "used_at": datetime.fromtimestamp(used_at, UTC).isoformat().replace("+00:00", "Z"),
        }

    def brand_of(self, connection: int) -> int:
        return connection % len(self.keys)


def _check_accepted(status: int, body: bytes, expected: int) -> None:
    if status == 202 and expected == 1:
        return
    if status == 200 and expected > 1:
        results = orjson.loads(body)["results"]
        accepted = sum(1 for r in results if r["status"] == "accepted")
        if accepted == expected == len(results):
            return
        refused = [r for r in results if r["status"] != "accepted"][:3]
        raise BenchError(f"{expected - accepted} of {expected} events not accepted: {refused}")
    raise BenchError(f"answer {status}: {body[:300]!r}")


def batch_exchange(workload: Workload) -> Exchange:
    async def exchange(conn: Connection, number: int) -> int:
        brand = workload.brand_of(number)
        events = [workload.event(brand) for _ in range(BATCH_EVENTS)]
        body = orjson.dumps({"events": events})
        status, answer = await conn.request(
            "POST", "/v1/usage-events", key=workload.keys[brand], body=body
        )
        _check_accepted(status, answer, BATCH_EVENTS)
        workload.accepted += BATCH_EVENTS
        return BATCH_EVENTS

    return exchange


def single_exchange(workload: Workload) -> Exchange:
    async def exchange(conn: Connection, number: int) -> int:
        brand = workload.brand_of(number)
        body = orjson.dumps(workload.event(brand))
        status, answer = await conn.request(
            "POST", "/v1/usage-events", key=workload.keys[brand], body=body
        )
        _check_accepted(status, answer, 1)
        workload.accepted += 1
        return 1

    return exchange


async def health_exchange(conn: Connection, _number: int) -> int:
    status, answer = await conn.request("GET", "/healthz")
    if status != 200:
        raise BenchError(f"/healthz answered {status}: {answer[:200]!r}")
    return 1


# ====================================================================== one backend


@dataclass
class Backend:
    name: str
    url: str
    drop: Callable[[], None] | None = None


def _sqlite_backend(directory: Path) -> Backend:
    return Backend("sqlite", f"sqlite:///{(directory / 'bridge.db').as_posix()}")


def _postgres_backend() -> Backend | str:
    """A fresh database on the PostgreSQL server, or why there is none."""
    try:
        name = create_database(PG_URL, "tb_bench_", connect_timeout=3)
    except psycopg.Error as exc:
        return f"no PostgreSQL at {make_url(PG_URL).render_as_string()}: {exc}".strip()
    return Backend("postgresql", database_url(PG_URL, name), lambda: drop_databases(PG_URL, name))


def _register_brands(store: Store, world: World) -> list[str]:
    keys = []
    with store.session() as session:
        for i, address in enumerate(world.brands):
            key = new_api_key()
            create_brand(
                session, name=f"bench brand {i}", address=address, api_key_hash=hash_api_key(key)
            )
            keys.append(key)
    return keys


def _stored_count(store: Store) -> int:
    with store.session() as session:
        return int(session.scalar(select(func.count()).select_from(UsageEvent)) or 0)


def raw_insert_rounds(store: Store, workload: Workload, config: Config) -> list[float]:
    """Events/s of ``insert_usages`` with 1,000 fresh rows, in this process (no HTTP, no checks)."""
    with store.session() as session:
        brand_id = 1
        rates = []
        for _ in range(config.rounds):
            inserted = 0
            start = time.perf_counter()
            while time.perf_counter() - start < config.seconds / 2:
                usages = []
                for _ in range(BATCH_EVENTS):
                    event = workload.event(0)
                    usages.append(
                        NewUsage(
                            event_id=event["event_id"],
                            body_hash=secrets.token_hex(32),
                            twin_id=event["twin_id"],
                            usage_type=event["usage_type"],
                            quantity=event["quantity"],
                            used_at=datetime.fromisoformat(event["used_at"]),
                            campaign_ref=None,
                            asset_ref=None,
                        )
                    )
                insert_usages(session, brand_id=brand_id, usages=usages)
                inserted += BATCH_EVENTS
            rates.append(inserted / (time.perf_counter() - start))
    return rates


def _rounds(
    server: Server, connections: int, exchange: Exchange, config: Config, label: str
) -> list[Round]:
    asyncio.run(_load(server, connections, exchange, 0.0, config.warm_up))
    rounds = []
    for i in range(config.rounds):
        server_cpu, own_cpu = server.cpu_seconds(), time.process_time()
        r = asyncio.run(_load(server, connections, exchange, 0.0, config.seconds))
        r.server_cpu_s = server.cpu_seconds() - server_cpu
        r.load_generator_cpu_s = time.process_time() - own_cpu
        rounds.append(r)
        print(
            f"    {label} round {i + 1}: {r.requests_per_s:,.0f} requests/s, "
            f"{r.events_per_s:,.0f} events/s, p50 {r.percentile_ms(50):.1f} ms, "
            f"p99 {r.percentile_ms(99):.1f} ms, server CPU {r.server_cpu_ms_per_request:.2f} ms "
            f"per request"
        )
    return rounds


def _summary(rounds: Sequence[Round]) -> dict[str, Any]:
    return {
        "rounds": len(rounds),
        "seconds_per_round": rounds[0].seconds,
        "requests_per_s_median": round(statistics.median(r.requests_per_s for r in rounds), 1),
        "events_per_s_median": round(statistics.median(r.events_per_s for r in rounds), 1),
        "p50_ms_median": round(statistics.median(r.percentile_ms(50) for r in rounds), 2),
        "p99_ms_median": round(statistics.median(r.percentile_ms(99) for r in rounds), 2),
        "requests": sum(r.requests for r in rounds),
        "events": sum(r.events for r in rounds),
        "server_cpu_ms_per_request_median": round(
            statistics.median(r.server_cpu_ms_per_request for r in rounds), 3
        ),
        "load_generator_cpu_s_per_s_median": round(
            statistics.median(r.load_generator_cpu_s / r.seconds for r in rounds), 2
        ),
        "server_cpu_s_per_s_median": round(
            statistics.median(r.server_cpu_s / r.seconds for r in rounds), 2
        ),
        "requests_per_s_rounds": [round(r.requests_per_s, 1) for r in rounds],
        "p99_ms_rounds": [round(r.percentile_ms(99), 2) for r in rounds],
    }


def measure(backend: Backend, world: World, rpc_url: str, config: Config) -> dict[str, Any]:
    """Every measurement of one backend, against a fresh API over a fresh store."""
    print(f"  {backend.name}: {make_url(backend.url).render_as_string()}")
    with (
        tempfile.TemporaryDirectory(prefix="tb-bench-ingest-") as tmp,
        tempfile.TemporaryFile() as log,
    ):
        migrate.upgrade(backend.url)
        store = Store.from_url(backend.url)
        try:
            keys = _register_brands(store, world)
            workload = Workload(
                world=world,
                keys=keys,
                licensed_from=latest_timestamp(world.w3) - SETUP_ADVANCE + 1,
                prefix=f"{backend.name}-{secrets.token_hex(3)}",
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
            env.update(
                {
                    "TWIN_BRIDGE_DATA_DIR": tmp,
                    "TWIN_BRIDGE_DATABASE_URL": backend.url,
                    "TWIN_BRIDGE_RPC_URL": rpc_url,
                    "TWIN_BRIDGE_LEDGER_ADDRESS": world.ledger.address,
                    # The per-brand limit (200 requests/s by default) is a policy, not a capacity.
                    "TWIN_BRIDGE_RATE_LIMIT_PER_S": "1000000",
                    "TWIN_BRIDGE_RATE_LIMIT_BURST": "1000000",
                }
            )
            with serve(env, config.workers, log) as server:
                health = _rounds(
                    server, config.single_connections, health_exchange, config, "healthz"
                )
                batch = _rounds(
                    server, config.batch_connections, batch_exchange(workload), config, "batch"
                )
                groups_before = _group_totals(server)
                single = _rounds(
                    server, config.single_connections, single_exchange(workload), config, "single"
                )
                groups_after = _group_totals(server)
            ungrouped_env = {**env, "TWIN_BRIDGE_GROUP_COMMIT_MAX_EVENTS": "0"}
            with serve(ungrouped_env, config.workers, log) as server:
                ungrouped = _rounds(
                    server,
                    config.single_connections,
                    single_exchange(workload),
                    config,
                    "single, no group commit",
                )
            stored = _stored_count(store)
            if stored != workload.accepted:
                raise BenchError(f"{workload.accepted} events accepted but {stored} in the store")
            raw = raw_insert_rounds(store, workload, config)
            print(f"    raw store inserts: {statistics.median(raw):,.0f} events/s")
        finally:
            store.close()
            if backend.drop is not None:
                backend.drop()
    batch_s, single_s, health_s = _summary(batch), _summary(single), _summary(health)
    ungrouped_s = _summary(ungrouped)
    return {
        "store": backend.name,
        "batch_events_per_s": batch_s["events_per_s_median"],
        "single_requests_per_s": single_s["requests_per_s_median"],
        "single_p50_ms": single_s["p50_ms_median"],
        "single_p99_ms": single_s["p99_ms_median"],
        "batch": {
            "events_per_request": BATCH_EVENTS,
            "connections": config.batch_connections,
            **batch_s,
        },
        "single": {
            "connections": config.single_connections,
            **single_s,
            "requests_per_group_commit": round(
                (groups_after[0] - groups_before[0]) / max(1.0, groups_after[1] - groups_before[1]),
                2,
            ),
        },
        "baseline": {
            "healthz_requests_per_s": health_s["requests_per_s_median"],
            "healthz": {"connections": config.single_connections, **health_s},
            "single_without_group_commit_requests_per_s": ungrouped_s["requests_per_s_median"],
            "single_without_group_commit_p99_ms": ungrouped_s["p99_ms_median"],
            "single_without_group_commit": {
                "connections": config.single_connections,
                **ungrouped_s,
            },
            "raw_store_insert_events_per_s": round(statistics.median(raw), 1),
            "raw_store_insert_rounds": [round(r, 1) for r in raw],
        },
        "accepted_and_stored": stored,
        "server": " ".join(server.command),
    }


# ====================================================================== run and report


def _verdicts(data: dict[str, Any]) -> dict[str, bool]:
    return {
        "batch_events_per_s_ge_20000": data["batch_events_per_s"] >= TARGET_BATCH_EVENTS_PER_S,
        "single_requests_per_s_ge_1500": data["single_requests_per_s"]
        >= TARGET_SINGLE_REQUESTS_PER_S,
        "single_p99_ms_le_25": data["single_p99_ms"] <= TARGET_SINGLE_P99_MS,
    }


def run(config: Config) -> dict[str, Any]:
    started = time.monotonic()
    load_before = os.getloadavg()
    with local_anvil() as w3:
        rpc_url = str(w3.provider.endpoint_uri)  # type: ignore[attr-defined]
        client = str(w3.client_version)
        print(f"{client} on {rpc_url}")
        world = setup(w3)
        print(
            f"ledger at {world.ledger.address}: {len(world.twin_ids)} twins, "
            f"{len(world.brands)} brands"
        )
        backends: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="tb-bench-sqlite-") as tmp:
            backends["sqlite"] = measure(_sqlite_backend(Path(tmp)), world, rpc_url, config)
        if config.postgres:
            pg = _postgres_backend()
            if isinstance(pg, str):
                print(f"  postgresql: skipped ({pg})")
                backends["postgresql"] = {"skipped": pg}
            else:
                backends["postgresql"] = measure(pg, world, rpc_url, config)
    main = backends["sqlite"]
    for data in backends.values():
        if "skipped" not in data:
            data["target_met"] = _verdicts(data)
    return {
        "batch_events_per_s": main["batch_events_per_s"],
        "single_requests_per_s": main["single_requests_per_s"],
        "single_p50_ms": main["single_p50_ms"],
        "single_p99_ms": main["single_p99_ms"],
        "store": "sqlite",
        "targets": {
            "batch_events_per_s": TARGET_BATCH_EVENTS_PER_S,
            "single_requests_per_s": TARGET_SINGLE_REQUESTS_PER_S,
            "single_p99_ms": TARGET_SINGLE_P99_MS,
        },
        "target_met": main["target_met"],
        "backends": backends,
        "config": {
            "rounds": config.rounds,
            "seconds_per_round": config.seconds,
            "warm_up_seconds": config.warm_up,
            "uvicorn_workers": config.workers,
            "batch_events": BATCH_EVENTS,
            "used_within_s": USED_WITHIN,
            "license_cache_ttl_s": Settings().license_cache_ttl_s,
        },
        "uvicorn": {
            "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
            "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        },
        "license_view": "Web3LicenseView (priceAt + isPausedAt on the deployed ledger, TTL cache) "
        f"against {client} on loopback",
        "load_generator": (
            "same machine as the server and anvil (they share its cores): one asyncio process, "
            "raw HTTP/1.1 over keep-alive loopback connections, closed loop (each connection sends "
            "its next request when the last is answered); latency from the first byte sent to the "
            "last byte of the answer; each round's p50/p99 over its requests, medians over rounds"
        ),
        "durability": "an accepted event is committed to the store before its 2xx answer; "
        "SQLite in WAL mode with synchronous=FULL (the WAL fsynced at every commit), PostgreSQL "
        "with its defaults (fsync and synchronous_commit on)",
        "machine": machine(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "wall_seconds": round(time.monotonic() - started, 1),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def print_table(data: dict[str, Any]) -> None:
    print()
    print(f"{'store':<11}  {'metric':<32}  {'target':>10}  {'median':>10}  verdict")
    for name, b in data["backends"].items():
        if "skipped" in b:
            print(f"{name:<11}  skipped: {b['skipped']}")
            continue
        met = b["target_met"]
        rows = [
            (
                "batch events/s (1,000 per POST)",
                f"≥ {TARGET_BATCH_EVENTS_PER_S:,}",
                f"{b['batch_events_per_s']:,.0f}",
                met["batch_events_per_s_ge_20000"],
            ),
            (
                "single-event requests/s",
                f"≥ {TARGET_SINGLE_REQUESTS_PER_S:,}",
                f"{b['single_requests_per_s']:,.0f}",
                met["single_requests_per_s_ge_1500"],
            ),
            (
                "single-event p99 ms",
                f"≤ {TARGET_SINGLE_P99_MS:g}",
                f"{b['single_p99_ms']:.1f}",
                met["single_p99_ms_le_25"],
            ),
            ("single-event p50 ms", "", f"{b['single_p50_ms']:.1f}", None),
            (
                "single: requests per commit",
                "",
                f"{b['single']['requests_per_group_commit']:.2f}",
                None,
            ),
            (
                "baseline: GET /healthz req/s",
                "",
                f"{b['baseline']['healthz_requests_per_s']:,.0f}",
                None,
            ),
            (
                "baseline: single, no group commit",
                "",
                f"{b['baseline']['single_without_group_commit_requests_per_s']:,.0f}",
                None,
            ),
            (
                "baseline: raw store inserts/s",
                "",
                f"{b['baseline']['raw_store_insert_events_per_s']:,.0f}",
                None,
            ),
        ]
        for metric, target, value, ok in rows:
            verdict = "" if ok is None else _verdict(ok)
            print(f"{name:<11}  {metric:<32}  {target:>10}  {value:>10}  {verdict}")
    m = data["machine"]
    print(
        f"\n{m['cpus']} cores ({m['cpu']}); load generator on the same machine; "
        f"load average before {data['load_average_before']}, after {data['load_average_after']}"
    )


def parse_args(argv: Sequence[str] | None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench_ingest", description=__doc__.split("\n\n")[0]
    )
    defaults = Config()
    parser.add_argument("--rounds", type=int, default=defaults.rounds)
    parser.add_argument(
        "--seconds", type=float, default=defaults.seconds, help="measured seconds per round"
    )
    parser.add_argument("--warm-up", type=float, default=defaults.warm_up)
    parser.add_argument("--workers", type=int, default=defaults.workers, help="uvicorn workers")
    parser.add_argument("--single-connections", type=int, default=defaults.single_connections)
    parser.add_argument("--batch-connections", type=int, default=defaults.batch_connections)
    parser.add_argument("--no-postgres", action="store_true", help="measure SQLite only")
    parser.add_argument("--out-dir", type=Path, default=defaults.out_dir)
    args = parser.parse_args(argv)
    return Config(
        rounds=args.rounds,
        seconds=args.seconds,
        warm_up=args.warm_up,
        workers=args.workers,
        single_connections=args.single_connections,
        batch_connections=args.batch_connections,
        postgres=not args.no_postgres,
        out_dir=args.out_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    return write_report("ingest", lambda: run(config), print_table, config.out_dir)


if __name__ == "__main__":
    sys.exit(main())
