"""Scenarios 3 and 8: real worker processes (``python -m bridge worker``) killed with SIGKILL.

3. The worker kills itself at each crash point (after batching, after signing, after sending,
   before the receipt, before marking settled); a new process takes over after the dead one's
   lease ran out and neither burns nor reuses a nonce nor sends a batch twice.
8. Two workers on one relayer key: only the lease holder sends; killed, the other takes over.
"""

from __future__ import annotations

import signal

import pytest

from bridge.settlement.worker import CRASH_POINTS
from bridge.store.models import BatchStatus, UsageStatus
from bridge.store.settlement import lease_holder

from .rig import RELAYER, Rig, worker_process

pytestmark = pytest.mark.faults

# What the dead worker left: its batch's status (None: no batch) and whether its tx went out.
LEFT_BEHIND = {
    "after_batching": (None, False),
    "after_signing": (BatchStatus.SIGNED, False),
    "after_sending": (BatchStatus.SENT, True),
    "before_receipt": (BatchStatus.SENT, True),
    "before_marking_settled": (BatchStatus.MINED, True),
}


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_a_worker_killed_at_each_step_is_taken_over_without_burning_or_reusing_a_nonce(
    rig: Rig, point: str
) -> None:
    now = rig.now()
    ids = rig.accept(0, *[(t, u, 2, now - 30) for t, u in rig.licensed(0, 3)])
    ids += rig.accept(1, *[(t, u, 1, now - 20) for t, u in rig.licensed(1, 2)])
    escrow_before = [rig.escrow(b)[0] for b in (0, 1)]
    nonce_before = rig.nonce()

    with worker_process(rig.worker_env(), kill_at=point) as dead:
        assert dead.wait() == -signal.SIGKILL, dead.output()
    status, sent = LEFT_BEHIND[point]
    batches = rig.batches()
    assert [b.status for b in batches] == ([] if status is None else [status])
    assert rig.nonce() == nonce_before + (1 if sent else 0)  # anvil mines at once
    with rig.store.session() as session:
        assert lease_holder(session, RELAYER) is not None  # the dead process still holds it

    with worker_process(rig.worker_env()) as alive:
        rig.wait_until(lambda: not rig.open_usages(), "the new worker to settle")
        assert alive.stop() == 0, alive.output()

    [batch] = rig.batches()
    assert (batch.status, batch.nonce) == (BatchStatus.CONFIRMED, nonce_before)
    if status is not None:
        assert batch.tx_hash == batches[0].tx_hash  # the stored transaction, not a new one
    assert rig.nonce() == nonce_before + 1  # one transaction: no nonce burnt or reused
    usages = rig.usages()
    assert {usages[i].status for i in ids} == {UsageStatus.SETTLED}
    assert {usages[i].tx_hash for i in ids} == {batch.tx_hash}
    for b in (0, 1):
        paid = sum(u.amount or 0 for u in usages.values() if u.brand_id == rig.brands[b].id)
        assert escrow_before[b] - rig.escrow(b)[0] == paid > 0
    summary = rig.audit()
    assert (summary["usages"], summary["usages_paid"], summary["batches"]) == (5, 5, 1)


def test_two_workers_on_one_relayer_only_the_lease_holder_sends_and_the_other_takes_over(
    rig: Rig,
) -> None:
    now = rig.now()
    first = rig.accept(0, *[(t, u, 1, now - 30) for t, u in rig.licensed(0, 2)])
    nonce_before = rig.nonce()
    env = rig.worker_env()
    with worker_process(env) as one, worker_process(env) as two:
        rig.wait_until(lambda: not rig.open_usages(), "the first usages to settle")
        with rig.store.session() as session:
            holder = lease_holder(session, RELAYER)
        assert holder is not None
        pids = {int(holder.split(":")[1])}
        holding, waiting = (one, two) if one.proc.pid in pids else (two, one)
        assert holding.proc.pid in pids, (holder, one.proc.pid, two.proc.pid)
        holding.proc.send_signal(signal.SIGKILL)
        assert holding.wait() == -signal.SIGKILL

        second = rig.accept(1, *[(t, u, 1, now - 10) for t, u in rig.licensed(1, 3)])
        rig.wait_until(lambda: not rig.open_usages(), "the other worker to take over")
        with rig.store.session() as session:
            taker = lease_holder(session, RELAYER)
        assert taker is not None
        assert int(taker.split(":")[1]) == waiting.proc.pid
        assert waiting.stop() == 0, waiting.output()
        assert "settling for relayer" in holding.output()

    batches = rig.batches()
    assert [(b.status, b.nonce) for b in batches] == [
        (BatchStatus.CONFIRMED, nonce_before),
        (BatchStatus.CONFIRMED, nonce_before + 1),
    ]
    assert rig.nonce() == nonce_before + 2  # the waiting worker sent nothing while it waited
    usages = rig.usages()
    assert {usages[i].tx_hash for i in first} == {batches[0].tx_hash}
    assert {usages[i].tx_hash for i in second} == {batches[1].tx_hash}
    summary = rig.audit()
    assert (summary["usages"], summary["usages_paid"], summary["batches"]) == (5, 5, 2)
