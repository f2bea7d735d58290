"""Prometheus metrics of one app, in a registry of its own: what this process answered, and the
settlement's progress read from the store at scrape time (``StoreCollector``)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

from eth_utils.address import to_checksum_address
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.intake.ingest import ItemResult
from bridge.store.models import BatchStatus, UsageStatus
from bridge.store.repository import Store
from bridge.store.settlement import (
    OPEN_STATUSES,
    RelayerState,
    SettlementStats,
    settlement_stats,
)

log = logging.getLogger(__name__)

_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class StoreCollector(Collector):
    """The settlement's progress as the store holds it, read at each scrape.

    The worker runs in a process of its own and API processes can be many: every one of them
    reads the same numbers from the store, whichever process did the work. A few aggregate
    queries on indexes (``settlement_stats``); a store that does not answer shows as
    ``twin_bridge_store_up 0`` with nothing else.
    """

    def __init__(self, store: Store, *, clock: Callable[[], datetime] | None = None) -> None:
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))

    def describe(self) -> Iterable[Metric]:
        return _families()

    def collect(self) -> Iterable[Metric]:
        up = _gauge("twin_bridge_store_up", "Whether the store answered the metrics queries.")
        try:
            with self._store.session() as session:
                stats = settlement_stats(session)
        except SQLAlchemyError as exc:
            log.warning("metrics: the store did not answer: %s", exc)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        return [up, *_families(stats, self._clock())]


def _gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=list(labels))


_STORE_GAUGES: Final = (
    ("usages", "Usages in the store by status.", ("status",)),
    (
        "settlement_lag_seconds",
        "Age of the oldest usage accepted but not yet settled (accepted or submitted); 0 if none.",
        (),
    ),
    ("settlement_batches", "Settlement batches by status.", ("status",)),
    ("settlement_gas_used", "Gas used by the confirmed batches.", ()),
    (
        "settlement_gas_per_usage",
        "Gas used by the confirmed batches per usage they settled (paid or rejected on chain); "
        "NaN before the first.",
        (),
    ),
    (
        "relayer_lease_held",
        "1 while a worker holds the relayer's lease (not expired).",
        ("relayer",),
    ),
    (
        "relayer_lease_expiry_timestamp_seconds",
        "When the relayer's lease runs out unless its holder renews it.",
        ("relayer", "holder"),
    ),
    (
        "relayer_last_batch_block",
        "The block of the relayer's latest mined or confirmed batch.",
        ("relayer",),
    ),
    (
        "relayer_inflight_batch_id",
        "The relayer's open batch (signed, sent or mined, not yet confirmed; the oldest if "
        "several); 0 if none.",
        ("relayer",),
    ),
    (
        "relayer_inflight_batch_status",
        "1 for the status of the relayer's open batch, 0 for the others.",
        ("relayer", "status"),
    ),
    (
        "relayer_inflight_batch_usages",
        "Usages in the relayer's open batch; 0 if none.",
        ("relayer",),
    ),
    (
        "relayer_inflight_batch_age_seconds",
        "Since the relayer's open batch was signed; 0 if none.",
        ("relayer",),
    ),
)
"""The store's gauges (name after ``twin_bridge_``, help, labels), in the order they are exposed."""


def _families(stats: SettlementStats | None = None, now: datetime | None = None) -> list[Metric]:
    """The store's metric families, filled from ``stats`` (empty without: their description)."""
    gauges = {
        name: _gauge(f"twin_bridge_{name}", documentation, labels)
        for name, documentation, labels in _STORE_GAUGES
    }
    if stats is not None and now is not None:
        _add_settlement(gauges, stats, now)
        for state in stats.relayers:
            _add_relayer(gauges, state, now)
    return list(gauges.values())


def _add_settlement(
    gauges: Mapping[str, GaugeMetricFamily], stats: SettlementStats, now: datetime
) -> None:
    for usage_status in UsageStatus:
        gauges["usages"].add_metric([usage_status.value], stats.usages[usage_status])
    oldest = stats.oldest_unsettled
    lag = 0.0 if oldest is None else (now - oldest).total_seconds()
    gauges["settlement_lag_seconds"].add_metric([], lag)
    for batch_status in BatchStatus:
        gauges["settlement_batches"].add_metric([batch_status.value], stats.batches[batch_status])
    gas = stats.confirmed_gas_used
    gauges["settlement_gas_used"].add_metric([], gas)
    settled = stats.usages[UsageStatus.SETTLED] + stats.usages[UsageStatus.REJECTED]
    gauges["settlement_gas_per_usage"].add_metric([], gas / settled if settled else math.nan)


def _add_relayer(
    gauges: Mapping[str, GaugeMetricFamily], state: RelayerState, now: datetime
) -> None:
    relayer = to_checksum_address(state.relayer)
    expires = state.lease_expires_at
    held = expires is not None and expires > now
    gauges["relayer_lease_held"].add_metric([relayer], 1 if held else 0)
    if expires is not None:
        holder = state.lease_holder or ""
        gauges["relayer_lease_expiry_timestamp_seconds"].add_metric(
            [relayer, holder], expires.timestamp()
        )
    if state.last_block is not None:
        gauges["relayer_last_batch_block"].add_metric([relayer], state.last_block)
    inflight = state.inflight
    gauges["relayer_inflight_batch_id"].add_metric(
        [relayer], 0 if inflight is None else inflight.id
    )
    for open_status in OPEN_STATUSES:
        current = inflight is not None and inflight.status is open_status
        gauges["relayer_inflight_batch_status"].add_metric(
            [relayer, open_status.value], 1 if current else 0
        )
    usages = 0 if inflight is None else inflight.usages
    gauges["relayer_inflight_batch_usages"].add_metric([relayer], usages)
    age = 0.0 if inflight is None else (now - inflight.created_at).total_seconds()
    gauges["relayer_inflight_batch_age_seconds"].add_metric([relayer], age)


def multiprocess_mode() -> bool:
    """Whether prometheus_client keeps metric values in files shared by the worker processes of
    one server (``PROMETHEUS_MULTIPROC_DIR`` was set before it was first imported, as
    ``twin-bridge serve --workers N`` does for its workers)."""
    return prometheus_values.ValueClass is not prometheus_values.MutexValue


class Metrics:
    def __init__(
        self, store: Store | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        """This process's counters, and with a ``store`` the settlement's (``StoreCollector``).

        ``registry`` holds this process's metrics; ``exposed`` is what ``/metrics`` answers: the
        same registry, or under several workers (``multiprocess_mode``) the sum over all of them,
        whichever worker a scrape reaches.
        """
        self.registry = CollectorRegistry()
        self.exposed = self.registry
        if multiprocess_mode():
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed)  # type: ignore[no-untyped-call]
        if store is not None:
            self.exposed.register(StoreCollector(store, clock=clock))
        self.events = Counter(
            "twin_bridge_usage_events",
            "Usage events answered by the API, by status (accepted, replayed, refused) and "
            "refusal code.",
            ["status", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "twin_bridge_http_request_duration_seconds",
            "HTTP request latency by route template, method and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )

        self.group_requests = Histogram(
            "twin_bridge_ingest_group_requests",
            "Usage-report requests written in one transaction (group commit).",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )

    def count(self, results: list[ItemResult]) -> None:
        for result in results:
            code = result.code.value if result.code else ""
            self.events.labels(result.status.value, code).inc()


class LatencyMiddleware:
    """Observes every HTTP request's latency under its route template (not the raw path)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", "unmatched")
            self._metrics.latency.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - start
            )
