"""The one-minute soak (``make soak`` runs ten): the whole bridge as processes under a mixed load on
loopback, the worker killed with SIGKILL and restarted a third of the way in, then the audit
against the database; every accepted event is settled or rejected on chain, and the counts of the
report add up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .rig import REPO_ROOT

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def test_a_one_minute_soak_with_a_worker_kill_passes_the_audit_and_its_counts_add_up(
    tmp_path: Path,
) -> None:
    out = tmp_path / "soak.json"
    done = subprocess.run(
        [sys.executable, "-m", "scripts.soak", "--minutes", "1", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["checks"] == {
        "audit passed": True,
        "every usage settled or rejected": True,
        "accepted events = stored usages": True,
        "stored usages = usages on chain": True,
        "settled = paid on chain": True,
        "no process died on its own": True,
    }
    assert [f["fault"] for f in report["faults"]] == ["kill_worker"]
    assert report["restarts"] == {"api": 0, "worker": 1, "indexer": 0}
    events = report["events"]
    assert events["accepted"] > 100
    assert events["settled"] + events["rejected_on_chain"] == events["accepted"]
    assert (events["held"], events["open"]) == (0, 0)
    assert sum(events["rejected_by_reason"].values()) == events["rejected_on_chain"]
    assert events["refused_at_door"] == sum(events["refused_by_reason"].values()) > 0
    summary = report["audit"]["summary"]
    assert (summary["usages"], summary["usages_paid"]) == (events["accepted"], events["settled"])
    assert summary["usages_rejected"] == events["rejected_on_chain"]
    assert report["latency"]["usage_single"]["count"] > 0
    assert report["latency"]["accepted_to_settled"]["count"] == events["settled"]
    assert set(report["peak_rss_mb"]) >= {"api", "worker", "indexer", "anvil"}
    assert "audit --against-db: exit 0, clean True" in done.stdout
