"""What the benchmarks share: where they write, the machine they ran on, and their ``main``."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import web3 as web3_package

from bridge.testing.anvil import AnvilError

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
OUT_DIR: Final = REPO_ROOT / "build" / "bench"


class BenchError(RuntimeError):
    """The benchmark could not run."""


def machine() -> dict[str, Any]:
    """The platform, CPU and versions a benchmark ran on (for its report)."""
    cpu = platform.processor()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "web3": web3_package.__version__,
    }


def write_report(
    name: str,
    measure: Callable[[], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
    out_dir: Path = OUT_DIR,
    table: Callable[[dict[str, Any]], str] | None = None,
) -> int:
    """A benchmark's ``main``: measures, shows the result, writes ``<out_dir>/<name>.json`` (and
    ``<name>.md`` from ``table``); exit code 1 with the reason when it cannot run (no anvil, a
    reverted transaction, a usage that was not paid)."""
    try:
        data = measure()
    except (BenchError, AnvilError) as exc:
        print(f"bench-{name}: {exc}", file=sys.stderr)
        return 1
    show(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{name}.json"]
    written[0].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if table is not None:
        written.append(out_dir / f"{name}.md")
        written[1].write_text(table(data), encoding="utf-8")
    print(f"\nwrote {' and '.join(map(str, written))} ({data['wall_seconds']} s)")
    return 0
