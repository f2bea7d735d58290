"""The ingest and settlement benchmarks run end to end in a tiny configuration (seconds) and write
their JSON with every key the README quotes, so the scripts do not rot. No timing is asserted; the
gas benchmark runs in full (gas does not depend on the machine), with the baseline commit's own
benchmark in the same run, and its targets are asserted."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pytest

from scripts import bench_gas, bench_ingest, bench_settle
from scripts.bench_common import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_ingest_writes_its_numbers(tmp_path: Path) -> None:
    argv = ["--rounds", "1", "--seconds", "0.3", "--warm-up", "0.1", "--no-postgres"]
    assert bench_ingest.main([*argv, "--out-dir", str(tmp_path)]) == 0

    data = json.loads((tmp_path / "ingest.json").read_text(encoding="utf-8"))
    assert data["store"] == "sqlite"
    assert set(data["backends"]) == {"sqlite"}
    sqlite = data["backends"]["sqlite"]
    for key in ("batch_events_per_s", "single_requests_per_s", "single_p50_ms", "single_p99_ms"):
        assert data[key] == sqlite[key]
        assert data[key] > 0
    assert sqlite["single_p50_ms"] <= sqlite["single_p99_ms"]
    assert sqlite["batch"]["events_per_request"] == 1000
    assert sqlite["batch"]["events"] == 1000 * sqlite["batch"]["requests"] > 0
    assert sqlite["single"]["events"] == sqlite["single"]["requests"] > 0
    assert sqlite["baseline"]["healthz_requests_per_s"] > 0
    assert sqlite["baseline"]["raw_store_insert_events_per_s"] > 0
    assert sqlite["accepted_and_stored"] >= sqlite["batch"]["events"] + sqlite["single"]["events"]
    assert set(data["target_met"]) == {
        "batch_events_per_s_ge_20000",
        "single_requests_per_s_ge_1500",
        "single_p99_ms_le_25",
    }
    assert data["targets"] == {
        "batch_events_per_s": 20_000,
        "single_requests_per_s": 1_500,
        "single_p99_ms": 25.0,
    }
    assert "same machine" in data["load_generator"]
    assert data["machine"]["cpus"] > 0


def test_bench_settle_writes_its_numbers(tmp_path: Path) -> None:
    argv = [
        "--feed-seconds", "2", "--rate", "20",
        "--rounds", "1", "--usages-per-round", "300", "--throughput-batch-size", "100",
    ]  # fmt: skip
    assert bench_settle.main([*argv, "--out-dir", str(tmp_path)]) == 0

    data = json.loads((tmp_path / "settle.json").read_text(encoding="utf-8"))
    latency, throughput = data["latency"], data["throughput"]
    assert data["accepted_to_settled_p50_s"] == latency["accepted_to_settled_p50_s"] > 0
    assert latency["accepted_to_settled_p50_s"] <= latency["accepted_to_settled_p99_s"]
    assert latency["usages"] == latency["accepted"] > 0  # every accepted usage settled
    assert latency["accepted"] % 2 == 0  # 20 usages/s in ticks of 0.1 s
    assert latency["worker"] == {
        "batch_size": 500,
        "max_age_s": 0.5,
        "confirmations": 1,
        "poll_s": 0.05,
    }
    assert "--block-time 1" in latency["chain"]
    assert data["usages_per_s"] == throughput["usages_per_s"] > 0
    [round_] = throughput["rounds"]
    assert round_["usages"] == 300
    assert throughput["batches"] == 3  # 300 usages in batches of 100
    assert throughput["usages_per_batch_median"] == 100
    assert throughput["gas_per_usage_median"] > 0
    assert set(data["target_met"]) == {"p50_le_3s_on_1s_blocks", "usages_per_s_ge_2000"}


@pytest.fixture(scope="module")
def gas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("gas")
    assert bench_gas.main(["--out-dir", str(out)]) == 0
    assert (out / "gas.md").read_text(encoding="utf-8").startswith("| usages per batch |")
    data: dict[str, Any] = json.loads((out / "gas.json").read_text(encoding="utf-8"))
    return data


def test_bench_gas_reports_batches_and_the_one_per_transaction_baseline(
    gas: dict[str, Any],
) -> None:
    assert [(d["size"], d["runs"]) for d in gas["batch_details"]] == [
        (1, 9), (10, 9), (100, 9), (500, 5),
    ]  # fmt: skip
    assert gas["single_tx"]["runs"] == len(gas["single_tx"]["samples_gas_used"]) == 50
    assert (gas["twins"], gas["brands"], gas["licenses"]) == (20, 3, 60)
    assert gas["warm_up_batch"]["size"] == 60
    assert gas["targets"] == {
        "batch_size": 100,
        "max_gas_per_usage": 6_000,
        "min_ratio_vs_single_tx": 10.0,
    }
    at_100 = next(d for d in gas["batch_details"] if d["size"] == 100)
    single = gas["single_tx_gas_per_usage"]
    assert gas["ratio_vs_single_tx_at_target"] == round(single / at_100["gas_per_usage_median"], 2)
    assert gas["target_met"] == {
        "gas_per_usage_le_6000_at_100": at_100["gas_per_usage_median"] <= 6_000,
        "ten_x_below_single_tx_at_100": gas["ratio_vs_single_tx_at_target"] >= 10,
    }
    # a batch's gas per usage falls as it grows; one usage alone costs a whole transaction
    per_usage = [d["gas_per_usage_median"] for d in gas["batch_details"]]
    assert per_usage == sorted(per_usage, reverse=True)
    assert 21_000 < single < 120_000


def test_settling_100_usages_costs_at_most_6000_gas_each_and_10x_less_than_one_per_tx(
    gas: dict[str, Any],
) -> None:
    at_100 = next(d for d in gas["batch_details"] if d["size"] == 100)
    assert gas["ratio_vs_single_tx_at_target"] >= 10
    assert at_100["gas_per_usage_median"] <= 6_000, at_100


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    return subprocess.run([git, "-C", str(cwd), *identity, *args], capture_output=True, check=False)


def test_bench_gas_measures_the_baseline_commit_in_the_same_run(gas: dict[str, Any]) -> None:
    baseline = gas["baseline"]
    in_history = _git(REPO_ROOT, "cat-file", "-e", f"{bench_gas.BASELINE_COMMIT}^{{commit}}")
    assert baseline["available"] is (in_history.returncode == 0), baseline
    if not baseline["available"]:
        assert baseline["reason"]
        assert gas["before_gas_per_usage_at_target"] is None
        assert all(d["before_gas_per_usage_median"] is None for d in gas["batch_details"])
        return
    assert baseline["commit"] == bench_gas.BASELINE_COMMIT
    before = {b["size"]: b["gas_per_usage_median"] for b in baseline["batches"]}
    assert list(before) == [1, 10, 100, 500]
    for d in gas["batch_details"]:
        assert d["before_gas_per_usage_median"] == before[d["size"]]
        assert d["after_vs_before"] == round(d["gas_per_usage_median"] / before[d["size"]], 4)
    assert gas["before_gas_per_usage_at_target"] == before[100]
    at_100 = next(d for d in gas["batch_details"] if d["size"] == 100)
    assert gas["after_vs_before_at_target"] == at_100["after_vs_before"]
    single = baseline["single_tx_gas_per_usage"]
    assert gas["single_tx"]["before_gas_per_usage"] == single
    assert list(before.values()) == sorted(before.values(), reverse=True)
    assert 21_000 < single < 120_000
    # another ledger, compiled from the commit's own sources by the same compiler
    assert baseline["ledger_runtime_sha256"] != gas["ledger_runtime_sha256"]
    assert baseline["compiler"]["version"] == gas["compiler"]["version"]


def test_bench_gas_table_shows_before_after_and_their_ratio(gas: dict[str, Any]) -> None:
    table = bench_gas.markdown(gas)
    header = table.splitlines()[0]
    assert "before (571c28f): gas per usage" in header
    assert "after ÷ before" in header
    at_100 = next(d for d in gas["batch_details"] if d["size"] == 100)
    if gas["baseline"]["available"]:
        row = (
            f"| 100 | {at_100['gas_per_batch_median']:,} | {at_100['gas_per_usage_median']:,} "
            f"| {gas['before_gas_per_usage_at_target']:,} | {at_100['after_vs_before']:.3f}x |"
        )
        assert row in table
        assert "measured in this run" in table

    unavailable = {
        **gas,
        "baseline": {"commit": bench_gas.BASELINE_COMMIT, "available": False, "reason": "why"},
        "batch_details": [
            {**d, "before_gas_per_usage_median": None, "after_vs_before": None}
            for d in gas["batch_details"]
        ],
        "single_tx": {**gas["single_tx"], "before_gas_per_usage": None, "after_vs_before": None},
    }
    table = bench_gas.markdown(unavailable)
    assert f"| {at_100['gas_per_usage_median']:,} | n/a | n/a |" in table
    assert "before (commit 571c28f): unavailable, why" in table


def _history(path: Path) -> Path:
    """A repository with two commits of its own (neither is the baseline commit)."""
    path.mkdir()
    _git(path, "init", "-q")
    for n in (1, 2):
        (path / "f.txt").write_text(str(n), encoding="utf-8")
        _git(path, "add", "f.txt")
        _git(path, "commit", "-q", "-m", str(n))
    return path


@pytest.mark.parametrize(
    ("clone", "reason"),
    [
        ("export", "is not a git clone, so commit 571c28f cannot be read"),
        ("shallow", "shallow clone: commit 571c28f is not in its history"),
        ("other", "commit 571c28f is not in this clone's history"),
    ],
)
def test_a_clone_without_the_baseline_commit_reports_the_baseline_unavailable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    clone: str,
    reason: str,
) -> None:
    root = tmp_path / clone
    if clone == "export":
        root.mkdir()
    elif clone == "shallow":
        source = _history(tmp_path / "source")
        cloned = _git(tmp_path, "clone", "-q", "--depth", "1", source.as_uri(), str(root))
        assert cloned.returncode == 0, cloned.stderr
    else:
        _history(root)
    monkeypatch.setattr(bench_gas, "REPO_ROOT", root)

    baseline = bench_gas.measure_baseline()

    assert baseline == {"commit": bench_gas.BASELINE_COMMIT, "available": False, "reason": ANY}
    assert reason in baseline["reason"]
    assert f"bench-gas: baseline unavailable: {baseline['reason']}" in capsys.readouterr().err
