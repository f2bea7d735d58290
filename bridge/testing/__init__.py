"""The test world as a library, used by the tests, the benchmarks, the fault suite and the soak:
one anvil launcher (``bridge.testing.anvil``), the world set up on it (``bridge.testing.world``),
the processes they start (``bridge.testing.processes``) and a TCP proxy that can go down
(``bridge.testing.proxy``)."""

from bridge.testing.anvil import (
    Anvil,
    AnvilError,
    AnvilOptions,
    latest_timestamp,
    local_anvil,
    rpc,
    started_anvil,
)
from bridge.testing.processes import NotReadyError, free_port, spawn, stop_process, tail, wait_ready
from bridge.testing.proxy import Proxy
from bridge.testing.world import (
    WORLD_CONFIG,
    Accepted,
    AnvilChain,
    LicensePlan,
    Offer,
    World,
    WorldError,
    anvil_chain,
    group,
    offer_and_accept,
    random_usages,
    settle,
    setup,
    sign_batch,
    start_world,
    warm_up_usages,
)

__all__ = [
    "WORLD_CONFIG",
    "Accepted",
    "Anvil",
    "AnvilChain",
    "AnvilError",
    "AnvilOptions",
    "LicensePlan",
    "NotReadyError",
    "Offer",
    "Proxy",
    "World",
    "WorldError",
    "anvil_chain",
    "free_port",
    "group",
    "latest_timestamp",
    "local_anvil",
    "offer_and_accept",
    "random_usages",
    "rpc",
    "settle",
    "setup",
    "sign_batch",
    "spawn",
    "start_world",
    "started_anvil",
    "stop_process",
    "tail",
    "wait_ready",
    "warm_up_usages",
]
