"""End-to-end smoke test of the ledger: mint, license, deposit, settle, distribute, withdraw."""

from __future__ import annotations

from .helpers import Ledger, Outcome


def test_settled_usage_pays_the_model_from_brand_escrow(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: 2_500_000}), model)
    lg.deposit(brand, 10_000_000)
    lg.advance(10)

    receipt = lg.settle([(brand.address, [lg.usage(twin, quantity=3)])])

    [(usage, outcome)] = lg.outcomes(receipt)
    assert (usage.usage_id, usage.twin_id, usage.quantity, outcome) == (1, twin, 3, Outcome.PAID)
    [event] = lg.events(receipt, "UsagesSettled")
    assert event["paid"] == 7_500_000
    assert event["brand"] == brand.address
    assert event["attester"] == lg.actors.attester.address
    assert lg.brand_account(brand)["escrow"] == 2_500_000
    assert lg.fn.twinState(twin).call() == [7_500_000, 0, 0]

    before = lg.token_balance(model.address)
    lg.transact(lg.fn.payout(model.address, [twin]), lg.actors.outsider)
    assert lg.token_balance(model.address) - before == 7_500_000
    assert lg.fn.totalLiabilities().call() == 2_500_000 == lg.token_balance(lg.contract.address)
