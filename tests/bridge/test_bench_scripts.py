"""The ingest and settlement benchmarks run end to end in a tiny configuration (seconds) and write
their JSON with every key the README quotes, so the scripts do not rot. No timing is asserted; the
gas benchmark runs in full (gas does not depend on the machine) and its targets are asserted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from scripts import bench_gas, bench_ingest, bench_settle

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
    assert gas["before_gas_per_usage_at_target"] == 5_603
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
