"""The fault-injection rig: a bridge (store, ingest, worker, audit) over the test world of
``bridge.testing`` (20 twins licensed to 3 brands), with worker processes that can be killed; the
stoppable anvil and the proxy are ``bridge.testing``'s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from eth_account import Account
from eth_utils.crypto import keccak
from typer.testing import CliRunner
from web3 import Web3

from bridge.chain.client import Web3ChainClient
from bridge.chain.views import Web3LicenseView
from bridge.cli.app import app
from bridge.domain.usage import UsageType
from bridge.intake.api_keys import hash_api_key, new_api_key
from bridge.intake.ingest import Ingestor, ItemStatus, UsageReport
from bridge.settings import Settings
from bridge.settlement.worker import SettlementWorker, WorkerConfig
from bridge.store.models import SettlementBatch, UsageStatus
from bridge.store.repository import BrandRecord, Store, StoredUsage, create_brand
from bridge.testing import World, rpc
from bridge.testing.settling import settlement_batches, stored_usages, worker_signers

REPO_ROOT = Path(__file__).resolve().parents[3]
RELAYER_KEY = "0x" + keccak(text="twin-bridge fault suite relayer").hex()
RELAYER = Account.from_key(RELAYER_KEY).address
TERMINAL = (UsageStatus.SETTLED, UsageStatus.REJECTED)


# ---------------------------------------------------------------- the bridge


@dataclass
class Rig:
    """A bridge store and its parts on one chain."""

    w3: Web3
    url: str
    world: World
    db_url: str
    store: Store
    tmp: Path
    brands: list[BrandRecord] = field(default_factory=list)
    api_keys: list[str] = field(default_factory=list)
    ingestor: Ingestor | None = None
    _event_seq: int = 0

    @classmethod
    def build(cls, *, w3: Web3, url: str, world: World, db_url: str, tmp: Path) -> Rig:
        store = Store.from_url(db_url)
        rig = cls(w3=w3, url=url, world=world, db_url=db_url, store=store, tmp=tmp)
        with store.session() as session:
            for i, address in enumerate(world.brands):
                key = new_api_key()
                rig.brands.append(
                    create_brand(
                        session, name=f"brand {i}", address=address, api_key_hash=hash_api_key(key)
                    )
                )
                rig.api_keys.append(key)
        licenses = Web3LicenseView(w3, world.ledger, ttl=0, rpc_url=url)
        rig.ingestor = Ingestor(settings=rig.settings(), licenses=licenses, clock=rig.chain_clock)
        return rig

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": self.tmp / "data",
            "database_url": self.db_url,
            "rpc_url": self.url,
            "ledger_address": self.world.ledger.address,
            "rate_limit_per_s": 10_000,
            "rate_limit_burst": 10_000,
            "license_cache_ttl_s": 0,
        }
        values.update(overrides)
        return Settings(**values)

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def chain_clock(self) -> datetime:
        return datetime.fromtimestamp(self.now(), UTC)

    def licensed(self, brand: int, count: int, *, skip: int = 0) -> list[tuple[int, int]]:
        """``count`` (twin, usage type) pairs brand ``brand`` holds a license for."""
        pairs = [
            (twin, min(plan.prices))
            for (twin, b), plan in sorted(self.world.licenses.items())
            if b == brand
        ]
        return pairs[skip : skip + count]

    def reports(self, *usages: tuple[int, int, int, int]) -> list[UsageReport]:
        reports = []
        for twin, usage_type, quantity, used_at in usages:
            self._event_seq += 1
            reports.append(
                UsageReport(
                    event_id=f"evt-{self._event_seq}-{twin}-{used_at}",
                    twin_id=twin,
                    usage_type=UsageType(usage_type),
                    quantity=quantity,
                    used_at=datetime.fromtimestamp(used_at, UTC),
                )
            )
        return reports

    def accept(self, brand: int, *usages: tuple[int, int, int, int]) -> list[int]:
        """Ingests ``(twin, usage type, quantity, used_at)`` usages of brand ``brand``: ids."""
        assert self.ingestor is not None
        with self.store.session() as session:
            results = self.ingestor.ingest(
                session, brand=self.brands[brand], reports=self.reports(*usages)
            )
        assert [r.status for r in results] == [ItemStatus.ACCEPTED] * len(usages), results
        return [r.usage_id for r in results if r.usage_id is not None]

    def usages(self) -> dict[int, StoredUsage]:
        return stored_usages(self.store)

    def batches(self) -> list[SettlementBatch]:
        return settlement_batches(self.store)

    def escrow(self, brand: int) -> tuple[int, int]:
        """(escrow, debt) of brand ``brand`` on chain."""
        account = self.world.ledger.functions.brandAccount(self.world.brands[brand]).call()
        return int(account[0]), int(account[1])

    def nonce(self) -> int:
        return int(self.w3.eth.get_transaction_count(RELAYER))

    def worker(
        self,
        *,
        urls: list[str] | None = None,
        client: Web3ChainClient | None = None,
        attester_key: bytes | None = None,
        **config: Any,
    ) -> SettlementWorker:
        hooks = {k: config.pop(k) for k in ("clock", "crash_point", "holder") if k in config}
        client = client or Web3ChainClient(urls or [self.url], timeout=5, backoff=0, attempts=2)
        chain_id = client.chain_id()
        attester, relayer = worker_signers(
            self.world, chain_id=chain_id, relayer_key=RELAYER_KEY, attester_key=attester_key
        )
        options: dict[str, Any] = {
            "batch_size": 50,
            "confirmations": 1,
            "max_age": timedelta(0),
            "poll_s": 0.05,
        }
        options.update(config)
        return SettlementWorker(
            store=self.store,
            chain=client,
            attester=attester,
            relayer=relayer,
            config=WorkerConfig(ledger=self.world.ledger.address, **options),
            **hooks,
        )

    def worker_env(self, *, urls: list[str] | None = None, **extra: str) -> dict[str, str]:
        """The environment of a ``python -m bridge worker`` process on this rig."""
        urls = urls or [self.url]
        env = {k: v for k, v in os.environ.items() if not k.startswith("TWIN_BRIDGE_")}
        env.update(
            {
                "TWIN_BRIDGE_DATA_DIR": str(self.tmp / "worker-state"),
                "TWIN_BRIDGE_DATABASE_URL": self.db_url,
                "TWIN_BRIDGE_RPC_URL": urls[0],
                "TWIN_BRIDGE_RPC_FALLBACK_URLS": json.dumps(urls[1:]),
                "TWIN_BRIDGE_LEDGER_ADDRESS": self.world.ledger.address,
                "TWIN_BRIDGE_ATTESTER_PRIVATE_KEY": "0x" + bytes(self.world.attester.key).hex(),
                "TWIN_BRIDGE_RELAYER_PRIVATE_KEY": RELAYER_KEY,
                "TWIN_BRIDGE_BATCH_MAX_AGE": "PT0S",
                "TWIN_BRIDGE_BATCH_SIZE": "50",
                "TWIN_BRIDGE_WORKER_POLL_S": "0.05",
                "TWIN_BRIDGE_WORKER_LEASE_TTL": "PT2S",
                "TWIN_BRIDGE_CONFIRMATIONS": "1",
                "PYTHONPATH": str(REPO_ROOT),
            }
        )
        env.update(extra)
        return env

    def settle(self, worker: SettlementWorker, *, mine: bool = False, timeout: float = 30) -> None:
        """Steps ``worker`` (mining a block between steps when ``mine``) until every usage is
        settled or rejected."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            worker.run_until_idle()
            if all(u.status in TERMINAL for u in self.usages().values()):
                return
            if mine:
                rpc(self.w3, "evm_mine")
            time.sleep(0.02)
        raise AssertionError(f"not settled: {self.open_usages()}")

    def open_usages(self) -> dict[int, tuple[UsageStatus, str | None]]:
        return {
            i: (u.status, u.last_error)
            for i, u in self.usages().items()
            if u.status not in TERMINAL
        }

    def wait_until(self, done: Callable[[], bool], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if done():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; open usages: {self.open_usages()}")

    def audit(self, *, url: str | None = None) -> dict[str, Any]:
        """``twin-bridge audit --against-db``: exit 0 (clean), every usage of the database settled
        or rejected, each paid usage id paid exactly once on chain. The audit's summary."""
        assert not self.open_usages(), self.open_usages()
        report = self.tmp / f"audit-{time.monotonic_ns()}.json"
        result = CliRunner().invoke(
            app,
            [
                "audit",
                "--rpc", url or self.url,
                "--ledger", self.world.ledger.address,
                "--against-db", self.db_url,
                "--json", str(report),
                "--quiet",
            ],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        audit = json.loads(report.read_text())
        assert audit["clean"] is True, audit["discrepancies"]
        usages = self.usages()
        on_chain = [u[0] for u in audit["state"]["usages"]]
        brand_of = {u[0]: u[1] for u in audit["state"]["usages"]}
        assert len(on_chain) == len(set(on_chain))  # no usage id twice
        assert set(on_chain) >= set(usages)
        processed = self.world.ledger.functions.isUsageProcessed
        for usage_id, usage in usages.items():
            assert processed(brand_of[usage_id], usage_id).call(), usage_id  # per brand
            assert (usage.amount is not None) == (usage.status is UsageStatus.SETTLED)
        return dict(audit["summary"])


# ---------------------------------------------------------------- worker processes


@dataclass
class WorkerProcess:
    proc: subprocess.Popen[bytes]
    log: IO[bytes]

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def wait(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@contextmanager
def worker_process(env: dict[str, str], *, kill_at: str | None = None) -> Iterator[WorkerProcess]:
    """``python -m bridge worker``; with ``kill_at``, the same command that kills itself with
    SIGKILL at that crash point (``tests.bridge.faults.killed_worker``)."""
    module = "bridge" if kill_at is None else "tests.bridge.faults.killed_worker"
    command = [sys.executable, "-m", module, "worker"]
    if kill_at is not None:
        env = {**env, "FAULTS_KILL_AT": kill_at}
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            command, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        handle = WorkerProcess(proc, log)
        try:
            yield handle
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
