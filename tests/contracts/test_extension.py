"""The ledger's extension (``TwinLedgerExtension``): reached through the ledger's fallback, it
runs in the ledger's storage under the ledger's address; called directly, it touches only its own
empty storage; the fallback takes no ether and refuses selectors neither contract has."""

from __future__ import annotations

import pytest
from eth_tester.exceptions import TransactionFailed

from bridge.chain.toolchain import load_artifact

from .helpers import Ledger


def test_an_action_through_the_ledger_runs_in_its_storage_and_emits_its_events(
    lg: Ledger,
) -> None:
    brand = lg.actors.brands[0]
    extension = lg.fn.extension().call()
    assert extension != lg.contract.address
    assert lg.w3.eth.get_code(extension) != b""

    receipt = lg.transact(lg.fn.setSpendingLimits(7_000_000, 9_000_000), brand)

    [log] = receipt["logs"]
    assert log["address"] == lg.contract.address  # the ledger's event, not the extension's
    assert lg.events(receipt, "SpendingLimitsSet") == [
        {
            "brand": brand.address,
            "perUsage": 7_000_000,
            "perPeriod": 9_000_000,
            "effectiveAt": lg.block_time(receipt),
        }
    ]
    limits = lg.fn.brandLimits(brand.address).call()
    assert (limits[0], limits[1]) == (7_000_000, 9_000_000)


def test_a_direct_call_to_the_extension_touches_only_its_own_storage(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    before = lg.fn.brandLimits(brand.address).call()
    artifact = load_artifact("TwinLedgerExtension")
    direct = lg.w3.eth.contract(address=lg.fn.extension().call(), abi=artifact.abi)

    receipt = lg.transact(direct.functions.setSpendingLimits(1, 2), brand)

    assert [log["address"] for log in receipt["logs"]] == [direct.address]
    assert lg.fn.brandLimits(brand.address).call() == before
    assert direct.functions.configHash().call() == lg.fn.configHash().call()
    twin = lg.mint(lg.actors.models[0])
    with lg.reverts("ERC721NonexistentToken", twin):  # the extension holds no twins
        direct.functions.setTwinPaused(twin, True).transact({"from": lg.actors.models[0].address})


def test_the_fallback_takes_no_ether_and_refuses_unknown_selectors(lg: Ledger) -> None:
    sender = lg.actors.brands[0].address
    balance = lg.w3.eth.get_balance(lg.contract.address)
    for data in ("0x", "0xdeadbeef"):
        with pytest.raises(TransactionFailed):
            lg.w3.eth.send_transaction(
                {"from": sender, "to": lg.contract.address, "value": 1, "data": data}
            )
    with pytest.raises(TransactionFailed):
        lg.w3.eth.send_transaction(
            {"from": sender, "to": lg.contract.address, "data": "0xdeadbeef"}
        )
    data = lg.fn.setSpendingLimits(1, 2)._encode_transaction_data()
    with pytest.raises(TransactionFailed):  # an extension function called with ether
        lg.w3.eth.send_transaction(
            {"from": sender, "to": lg.contract.address, "value": 1, "data": data}
        )
    assert lg.w3.eth.get_balance(lg.contract.address) == balance
