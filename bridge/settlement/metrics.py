"""What one worker process did, in Prometheus counters of its own registry (served by
``twin-bridge worker --metrics-port``), and the chain client wrapper that counts its errors."""

from __future__ import annotations

import re
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from bridge.chain.client import ChainClient
from bridge.errors import ChainUnavailableError, RpcError

BATCH_EVENTS: Final = ("sent", "resent", "replaced", "confirmed", "failed", "settled_elsewhere")


class WorkerMetrics:
    """What one worker process did, in a Prometheus registry of its own (served by
    ``twin-bridge worker --metrics-port``)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batches = Counter(
            "twin_bridge_worker_batches",
            "Settlement batches by event: sent (first time), resent (the stored bytes again), "
            "replaced (fee bump), confirmed, failed (usages handed back), settled_elsewhere "
            "(another transaction settled its signed usages).",
            ["event"],
            registry=self.registry,
        )
        for event in BATCH_EVENTS:
            self.batches.labels(event)
        self.usages = Counter(
            "twin_bridge_worker_usages",
            "Usages of the batches this process confirmed, by outcome (settled, rejected).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("settled", "rejected"):
            self.usages.labels(outcome)
        self.gas_used = Counter(
            "twin_bridge_worker_gas_used",
            "Gas used by the batches this process confirmed.",
            registry=self.registry,
        )
        self.reorged = Counter(
            "twin_bridge_worker_reorged_batches",
            "Batches whose block a reorg replaced, by what they were then: mined (before the "
            "confirmation depth) or confirmed (a reorg deeper than the depth).",
            ["stage"],
            registry=self.registry,
        )
        for stage in ("mined", "confirmed"):
            self.reorged.labels(stage)
        self.rpc_errors = Counter(
            "twin_bridge_worker_rpc_errors",
            "Errors of the chain client by kind: unreachable endpoints (chain_unavailable) and "
            "node refusals, answered by the worker or not.",
            ["error"],
            registry=self.registry,
        )
        self.lease_held = Gauge(
            "twin_bridge_worker_lease_held",
            "1 while this process holds its relayer's lease.",
            registry=self.registry,
        )


def _error_kind(exc: Exception) -> str:
    """``NonceTooLowError`` -> ``nonce_too_low``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__.removesuffix("Error")).lower()


class CountedChain:
    """The chain client, counting each error it raises in ``errors``."""

    def __init__(self, chain: ChainClient, errors: Counter) -> None:
        self._chain = chain
        self._errors = errors

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._chain, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except (ChainUnavailableError, RpcError) as exc:
                self._errors.labels(_error_kind(exc)).inc()
                raise

        return counted
