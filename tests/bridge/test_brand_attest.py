"""A brand that attests its own usages, end to end on anvil: ``twin-bridge brand attester set``
names the brand's attester with the brand's own transaction, and ``twin-bridge brand settle`` signs
the brand's usage events with that attester key and settles them, numbered by event id in the
brand's own id space, so that running the same file again settles nothing twice."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from eth_account import Account
from typer.testing import CliRunner
from web3 import Web3

from bridge.cli.app import app
from bridge.cli.brand_attest import OWN_ID_BASE, own_usage_id
from bridge.devstack.demo import dev_account
from bridge.domain.codec import Outcome
from bridge.domain.money import token_amount
from bridge.domain.usage import UsageType
from bridge.testing import World, local_anvil, setup

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with local_anvil() as w3:
        yield setup(w3)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    for name in ("TWIN_BRIDGE_RPC_URL", "TWIN_BRIDGE_LEDGER_ADDRESS", "TWIN_BRIDGE_API_URL"):
        monkeypatch.delenv(name, raising=False)
    return CliRunner()


def _dev_key(address: str) -> str:
    """The well-known dev key of one of anvil's accounts."""
    index = next(i for i in range(41) if dev_account(i).address == address)
    return "0x" + bytes(dev_account(index).key).hex()


def _iso(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat()


def test_own_usage_ids_lie_in_the_brands_id_space_and_follow_the_event_id() -> None:
    brand = "0x" + "12" * 20
    ids = [own_usage_id(brand, f"event-{i}") for i in range(1000)]
    assert all(OWN_ID_BASE <= i < 2 * OWN_ID_BASE for i in ids)
    assert len(set(ids)) == 1000
    assert own_usage_id(brand, "event-7") == ids[7]
    assert own_usage_id("0x" + "34" * 20, "event-7") != ids[7]


def test_a_brand_names_its_attester_and_settles_its_own_usages_once(
    world: World, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w3 = world.w3
    url = w3.provider.endpoint_uri  # type: ignore[attr-defined]
    ledger = world.ledger
    brand = world.brands[0]
    attester = Account.create()
    w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction(
            {"from": world.relayer, "to": attester.address, "value": Web3.to_wei(1, "ether")}
        )
    )
    monkeypatch.setenv("BRAND_KEY", _dev_key(brand))
    monkeypatch.setenv("ATTESTER_KEY", "0x" + bytes(attester.key).hex())
    chain = ("--rpc", url, "--ledger", ledger.address)

    named = runner.invoke(
        app,
        ["brand", "attester", "set", attester.address, *chain, "--private-key-env", "BRAND_KEY"],
    )
    assert named.exit_code == 0, named.output
    assert named.stdout.startswith(f"attester of {brand}: {attester.address} in block ")
    assert ledger.functions.brandLimits(brand).call()[7] == attester.address

    paid = [(twin, min(plan.prices), plan) for (twin, b), plan in world.licenses.items() if b == 0]
    (twin_a, type_a, plan_a), (twin_b, type_b, plan_b) = paid[:2]
    now = int(w3.eth.get_block("latest")["timestamp"])
    events = [
        {"event_id": "e1", "twin_id": twin_a, "usage_type": UsageType(type_a).value,
         "quantity": 2, "used_at": _iso(now - 60)},
        {"event_id": "e2", "twin_id": twin_b, "usage_type": type_b, "used_at": _iso(now - 30)},
        {"event_id": "e3", "twin_id": 999, "usage_type": "video", "used_at": _iso(now - 30)},
    ]  # fmt: skip
    path = tmp_path / "usages.json"
    path.write_text(json.dumps(events), encoding="utf-8")
    escrow_before = ledger.functions.brandAccount(brand).call()[0]
    settle = ["brand", "settle", str(path), "--brand", brand, *chain]

    first = runner.invoke(app, [*settle, "--private-key-env", "ATTESTER_KEY"])

    assert first.exit_code == 0, first.output
    amounts = [2 * plan_a.prices[type_a], plan_b.prices[type_b]]
    ids = [own_usage_id(brand, e) for e in ("e1", "e2", "e3")]
    lines = first.stdout.splitlines()
    tail = lines[0][lines[0].index(" in block ") :]
    assert lines == [
        f"e1: usage {ids[0]} paid {token_amount(amounts[0], 'mUSD', 6)}{tail}",
        f"e2: usage {ids[1]} paid {token_amount(amounts[1], 'mUSD', 6)}{tail}",
        f"e3: usage {ids[2]} rejected (unknown_twin): {Outcome.UNKNOWN_TWIN.description}{tail}",
        f"2 paid ({token_amount(sum(amounts), 'mUSD', 6)}), 1 rejected in 1 transaction; "
        "0 already settled",
    ]
    assert [ledger.functions.isUsageProcessed(brand, i).call() for i in ids] == [True] * 3
    assert ledger.functions.brandAccount(brand).call()[0] == escrow_before - sum(amounts)

    again = runner.invoke(app, [*settle, "--private-key-env", "ATTESTER_KEY"])

    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines() == [
        *(
            f"{e}: usage {i} already settled on chain"
            for e, i in zip(("e1", "e2", "e3"), ids, strict=True)
        ),
        "0 paid (0.00 mUSD), 0 rejected in 0 transactions; 3 already settled",
    ]
    assert ledger.functions.brandAccount(brand).call()[0] == escrow_before - sum(amounts)

    stranger = Account.create()
    monkeypatch.setenv("STRANGER_KEY", "0x" + bytes(stranger.key).hex())
    refused = runner.invoke(app, [*settle, "--private-key-env", "STRANGER_KEY"])
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"the key's address {stranger.address} is not brand {brand}'s attester {attester.address}\n"
    )


def test_brand_settle_refuses_a_brand_without_its_own_attester_and_bad_files(
    world: World, runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = world.w3.provider.endpoint_uri  # type: ignore[attr-defined]
    brand = world.brands[1]
    monkeypatch.setenv("ATTESTER_KEY", "0x" + bytes(Account.create().key).hex())
    path = tmp_path / "usages.json"

    def run(events: object) -> tuple[int, str]:
        path.write_text(json.dumps(events), encoding="utf-8")
        result = runner.invoke(
            app,
            [
                *("brand", "settle", str(path), "--brand", brand, "--rpc", url),
                *("--ledger", world.ledger.address, "--private-key-env", "ATTESTER_KEY"),
            ],
        )
        return result.exit_code, result.stderr

    good = {"event_id": "x", "twin_id": 1, "usage_type": "video", "used_at": _iso(1_772_366_400)}
    assert run([good]) == (
        1,
        f"brand {brand} has no attester of its own: the bridge's attesters settle its usages "
        "(name yours with `twin-bridge brand attester set`)\n",
    )
    assert run([good, good]) == (1, f"{path} item 1: event_id 'x' is repeated\n")
    assert run([{**good, "colour": "red"}]) == (1, f"{path} item 0: unknown field 'colour'\n")
    assert run([{**good, "quantity": 0}]) == (
        1,
        f"{path} item 0 (x): quantity must be a whole number of at least 1\n",
    )
    assert run([{**good, "used_at": "2026-03-01T11:00:00"}]) == (
        1,
        f"{path} item 0 (x): used_at '2026-03-01T11:00:00' has no zone offset\n",
    )
    assert run({"event_id": "x"}) == (
        1,
        f"{path}: expected a non-empty JSON list of usage events\n",
    )
