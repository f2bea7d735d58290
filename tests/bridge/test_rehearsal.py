"""``make rehearse-testnet`` shortened to 1 s blocks: anvil with Sepolia's chain id, keystores,
``deploy``, ``doctor``, API and worker as subprocesses, usages reported over HTTP and settled with
3 confirmations."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bridge.chain.toolchain import REPO_ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_the_testnet_rehearsal_passes_with_one_second_blocks() -> None:
    argv = [sys.executable, "-m", "scripts.rehearse_testnet", "--block-time", "1", "--port", "0",
            "--usages", "3", "--timeout", "180"]  # fmt: skip
    proc = subprocess.run(
        argv,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = proc.stdout.split("rehearsal report\n", 1)[1]
    lines = [line.strip() for line in report.splitlines()]
    assert lines[0].startswith("✓ anvil as Sepolia: chain 11155111, 1 s blocks, ")
    assert "✓ deploying again changed nothing" in lines
    assert "✓ doctor: network rehearsal is ready" in lines
    assert any(
        line.startswith("✓ all 3 usages settled with 3 confirmations in ")
        and line.endswith("12.00 mUSD paid, twins accrued 12.00, brand escrow 988.00")
        for line in lines
    ), report
    assert lines[-1].startswith("✓ rehearsal passed in ")
