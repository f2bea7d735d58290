"""Hypothesis profiles for the whole suite, picked by TWIN_BRIDGE_HYPOTHESIS_PROFILE (default ci).

- ``ci`` (also registered as ``default``): short runs for ``make test``.
- ``fuzz``: long runs for ``make fuzz`` (``TWIN_BRIDGE_FUZZ_EXAMPLES`` overrides the example count).

The ``fuzz`` size is chosen so that ``make fuzz`` takes about 20-30 minutes on the project's 2-core
machine: the ledger's stateful model costs about 6-9 s per example of 40 steps (0.15-0.27 s a step,
more when the machine is busy), so 150 examples x 40 steps (12 times the steps of the ``ci`` run)
take 15-22 minutes, next to about 5 minutes of the API's schemathesis runs
(``tests/bridge/test_api_fuzz.py``, 1,000 cases per class and mode, which read
``TWIN_BRIDGE_FUZZ_EXAMPLES`` themselves).
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
FUZZ_EXAMPLES = 150
FUZZ_STEPS = 40

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("TWIN_BRIDGE_FUZZ_EXAMPLES", str(FUZZ_EXAMPLES))),
    stateful_step_count=FUZZ_STEPS,
    deadline=None,
    suppress_health_check=_SLOW_CHAIN,
    print_blob=True,
)
settings.load_profile(os.environ.get("TWIN_BRIDGE_HYPOTHESIS_PROFILE", "ci"))
