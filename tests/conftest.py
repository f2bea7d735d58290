"""Hypothesis profiles for the whole suite, picked by TWIN_BRIDGE_HYPOTHESIS_PROFILE (default ci).

- ``ci`` (also registered as ``default``): short runs for ``make test``.
- ``fuzz``: long runs for ``make fuzz`` (``TWIN_BRIDGE_FUZZ_EXAMPLES`` overrides the example count).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SLOW_CHAIN = [HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=25,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=_SLOW_CHAIN,
    print_blob=True,
)
settings.register_profile("default", parent=settings.get_profile("ci"))
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("TWIN_BRIDGE_FUZZ_EXAMPLES", "1000")),
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=_SLOW_CHAIN,
    print_blob=True,
)
settings.load_profile(os.environ.get("TWIN_BRIDGE_HYPOTHESIS_PROFILE", "ci"))
