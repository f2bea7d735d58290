"""``python -m tests.bridge.faults.killed_worker worker``: the ``twin-bridge worker`` command
that kills its own process with SIGKILL when it reaches the crash point named by
``FAULTS_KILL_AT`` (one of ``bridge.settlement.worker.CRASH_POINTS``). Test-only: production code
knows nothing of the variable; this module swaps the worker's crash hook before the command runs."""

from __future__ import annotations

import os
import signal

from bridge.cli.app import app
from bridge.settlement import worker


def main() -> None:
    point = os.environ["FAULTS_KILL_AT"]
    if point not in worker.CRASH_POINTS:
        raise SystemExit(f"unknown crash point {point!r}; one of {worker.CRASH_POINTS}")

    def crash(self: worker.SettlementWorker, name: str) -> None:
        if name == point:
            os.kill(os.getpid(), signal.SIGKILL)

    worker.SettlementWorker._crash = crash  # type: ignore[method-assign]
    app(prog_name="twin-bridge")


if __name__ == "__main__":
    main()
