"""Licenses: who may grant them, validation, inline and overflow prices, versioned replacement with
history lookup, revocation, and the outcomes of usages against them (expiry, start, type, cap)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from .helpers import DAY, Ledger, Outcome, terms_hash

ZERO = "0x0000000000000000000000000000000000000000"
MAX_PRICE = 2**96 - 1
INLINE_LIMIT = 2**44
DEPOSIT = 5 * 10**14


# ---------------------------------------------------------------------- helpers


def license_dict(raw: Sequence[Any]) -> dict[str, Any]:
    valid_from, valid_until, max_uses, uses, revoked, prices = raw
    return {
        "validFrom": valid_from,
        "validUntil": valid_until,
        "maxUses": max_uses,
        "uses": uses,
        "revoked": revoked,
        "prices": [tuple(p) for p in prices],
    }


def current(lg: Ledger, twin: int, brand: LocalAccount) -> tuple[dict[str, Any], int]:
    raw, version = lg.fn.licenseOf(twin, brand.address).call()
    return license_dict(raw), version


def version_of(lg: Ledger, twin: int, brand: LocalAccount, version: int) -> dict[str, Any]:
    return license_dict(lg.fn.licenseVersion(twin, brand.address, version).call())


def granted(lg: Ledger, receipt: Any) -> list[dict[str, Any]]:
    """What a version "granted" by ``offer_and_accept`` says on chain: each LicenseOffered event
    (prices as ``(usageType, price)`` tuples) with its start as LicenseAccepted set it."""
    accepted = {
        (e["twinId"], e["brand"], e["version"]): e["validFrom"]
        for e in lg.events(receipt, "LicenseAccepted")
    }
    events = []
    for e in lg.events(receipt, "LicenseOffered"):
        e["prices"] = [(p["usageType"], p["price"]) for p in e["prices"]]
        e["offeredFrom"] = e["validFrom"]
        e["validFrom"] = accepted[(e["twinId"], e["brand"], e["version"])]
        events.append(e)
    return events


def price_at(
    lg: Ledger, twin: int, brand: LocalAccount, usage_type: int, at: int
) -> tuple[Outcome, int]:
    outcome, price = lg.fn.priceAt(twin, brand.address, usage_type, at).call()
    return Outcome(outcome), price


def settle(lg: Ledger, brand: LocalAccount, twin: int, uses: Sequence[tuple[int, int, int]]) -> Any:
    """Settles ``(usedAt, quantity, usageType)`` usages of ``twin`` by ``brand`` in one group."""
    words = [lg.usage(twin, used_at=at, quantity=q, usage_type=t) for at, q, t in uses]
    return lg.settle([(brand.address, words)])


def outcomes(lg: Ledger, receipt: Any) -> list[Outcome]:
    return [o for _, o in lg.outcomes(receipt)]


def paid(lg: Ledger, receipt: Any) -> int:
    [event] = lg.events(receipt, "UsagesSettled")
    return int(event["paid"])


@pytest.fixture
def model(lg: Ledger) -> LocalAccount:
    return lg.actors.models[0]


@pytest.fixture
def brand(lg: Ledger) -> LocalAccount:
    return lg.actors.brands[0]


@pytest.fixture
def twin(lg: Ledger, model: LocalAccount, brand: LocalAccount) -> int:
    """A twin of ``model``; ``brand`` has escrow to pay for its uses."""
    twin_id = lg.mint(model)
    lg.deposit(brand, DEPOSIT)
    return twin_id


# ---------------------------------------------------------------------- granting


@pytest.mark.parametrize("requested_from", ["zero", "past"])
def test_grant_emits_license_granted_with_start_clamped_to_the_block(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int, requested_from: str
) -> None:
    until = lg.now() + 10 * DAY
    valid_from = 0 if requested_from == "zero" else lg.now() - 5 * DAY
    purpose, consent = keccak(text="purpose x"), keccak(text="consent x")
    terms = lg.terms(
        brand,
        {4: 70, 1: 30},
        valid_from=valid_from,
        valid_until=until,
        max_uses=9,
        purpose=purpose,
        consent=consent,
    )

    receipt = lg.offer_and_accept(twin, terms, model)

    start = lg.block_time(receipt)
    assert start == lg.block_time(receipt.offer) + 1
    assert granted(lg, receipt) == [
        {
            "twinId": twin,
            "brand": brand.address,
            "version": 0,
            "offeredFrom": valid_from,
            "validFrom": start,
            "validUntil": until,
            "maxUses": 9,
            "purposeHash": purpose,
            "consentHash": consent,
            "prices": [(4, 70), (1, 30)],
            "termsHash": terms_hash(terms),
        }
    ]
    assert lg.fn.hashLicenseTerms(terms).call() == terms_hash(terms)
    assert current(lg, twin, brand) == (
        {
            "validFrom": start,
            "validUntil": until,
            "maxUses": 9,
            "uses": 0,
            "revoked": False,
            "prices": [(4, 70), (1, 30)],
        },
        0,
    )
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 1


def test_grant_keeps_a_future_start(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    start, until = lg.now() + 3 * DAY, lg.now() + 9 * DAY

    receipt = lg.offer_and_accept(
        twin, lg.terms(brand, {0: 5}, valid_from=start, valid_until=until), model
    )

    [event] = granted(lg, receipt)
    assert (event["validFrom"], event["validUntil"]) == (start, until)
    assert current(lg, twin, brand)[0]["validFrom"] == start


@pytest.mark.parametrize("how", ["approve", "operator"])
def test_approved_account_or_operator_may_grant(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int, how: str
) -> None:
    agent = lg.actors.payees[0]
    if how == "approve":
        lg.transact(lg.fn.approve(agent.address, twin), model)
    else:
        lg.transact(lg.fn.setApprovalForAll(agent.address, True), model)

    receipt = lg.offer_and_accept(twin, lg.terms(brand, {0: 5}), agent)

    [event] = granted(lg, receipt)
    assert (event["twinId"], event["brand"], event["version"]) == (twin, brand.address, 0)
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 1


@pytest.mark.parametrize("name", ["outsider", "admin", "registrar", "other model", "brand"])
def test_grant_refused_for_accounts_without_approval(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int, name: str
) -> None:
    caller = {"other model": lg.actors.models[1], "brand": brand}.get(name) or getattr(
        lg.actors, name
    )
    # Approval by another model covers that model's twins only.
    lg.transact(lg.fn.setApprovalForAll(caller.address, True), lg.actors.models[2])

    with lg.reverts("ERC721InsufficientApproval", caller.address, twin):
        lg.offer_and_accept(twin, lg.terms(brand), caller)


def test_approval_does_not_survive_a_transfer(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    agent, new_owner = lg.actors.payees[0], lg.actors.models[1]
    lg.transact(lg.fn.approve(agent.address, twin), model)
    lg.transact(lg.fn.transferFrom(model.address, new_owner.address, twin), model)

    with lg.reverts("ERC721InsufficientApproval", agent.address, twin):
        lg.offer_and_accept(twin, lg.terms(brand), agent)
    with lg.reverts("ERC721InsufficientApproval", model.address, twin):
        lg.offer_and_accept(twin, lg.terms(brand), model)
    lg.offer_and_accept(twin, lg.terms(brand), new_owner)


def test_grant_for_a_nonexistent_twin_reverts(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    with lg.reverts("ERC721NonexistentToken", twin + 1):
        lg.offer_and_accept(twin + 1, lg.terms(brand), model)


def test_versions_are_numbered_from_zero_per_brand(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    other = lg.actors.brands[1]
    versions = []
    for price in (10, 20, 30):
        lg.advance(10)
        versions.append(
            granted(lg, lg.offer_and_accept(twin, lg.terms(brand, {0: price}), model))[0]["version"]
        )
    other_receipt = lg.offer_and_accept(twin, lg.terms(other, {0: 99}), model)

    assert versions == [0, 1, 2]
    assert granted(lg, other_receipt)[0]["version"] == 0
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 3
    assert lg.fn.licenseVersionCount(twin, other.address).call() == 1
    assert lg.fn.licenseVersionCount(twin, lg.actors.brands[2].address).call() == 0
    license, version = current(lg, twin, brand)
    assert (license["prices"], version) == ([(0, 30)], 2)
    assert [version_of(lg, twin, brand, v)["prices"] for v in range(3)] == [
        [(0, 10)],
        [(0, 20)],
        [(0, 30)],
    ]
    with lg.reverts("LicenseNotFound", twin, brand.address):
        lg.fn.licenseVersion(twin, brand.address, 3).call()
    with lg.reverts("LicenseNotFound", twin, lg.actors.brands[2].address):
        lg.fn.licenseOf(twin, lg.actors.brands[2].address).call()


# ---------------------------------------------------------------------- validation


def test_grant_rejects_the_zero_brand(lg: Ledger, model: LocalAccount, twin: int) -> None:
    with lg.reverts("LicenseInvalidBrand", ZERO):
        lg.offer_and_accept(twin, lg.terms(ZERO), model)


@pytest.mark.parametrize(
    "case", ["until-equals-future-from", "until-before-from", "until-in-past", "until-now"]
)
def test_grant_rejects_an_empty_window(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int, case: str
) -> None:
    now = lg.next_time()
    valid_from, until, expected_from = {
        "until-equals-future-from": (now + DAY, now + DAY, now + DAY),
        "until-before-from": (now + 2 * DAY, now + DAY, now + 2 * DAY),
        "until-in-past": (0, now - 10, 0),
        "until-now": (now - 50, now, now - 50),
    }[case]

    with lg.reverts("LicenseInvalidWindow", expected_from, until):
        lg.offer_and_accept(twin, lg.terms(brand, valid_from=valid_from, valid_until=until), model)


def test_grant_accepts_a_one_second_window(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    now = lg.next_time()

    # Accepted one block (second) after the offer, the window has one second left.
    receipt = lg.offer_and_accept(twin, lg.terms(brand, valid_until=now + 2), model)

    [event] = granted(lg, receipt)
    assert (event["offeredFrom"], event["validFrom"], event["validUntil"]) == (0, now + 1, now + 2)


def test_an_offer_whose_window_ended_cannot_be_accepted(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    now = lg.next_time()
    terms = lg.terms(brand, valid_until=now + 1)
    version, digest = lg.offered(lg.offer(twin, terms, model))

    with lg.reverts("LicenseOfferExpired", twin, brand.address, 0):
        lg.accept(twin, version, digest, brand)
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 0


def test_grant_rejects_empty_prices(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    with lg.reverts("LicenseNoPrices"):
        lg.offer_and_accept(twin, lg.terms(brand, {}), model)


def test_grant_accepts_sixteen_prices_and_rejects_seventeen(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    with lg.reverts("LicenseTooManyPrices", 17, 16):
        lg.offer_and_accept(twin, lg.terms(brand, {t: t + 1 for t in range(17)}), model)

    lg.offer_and_accept(twin, lg.terms(brand, {t: t + 1 for t in range(16)}), model)
    prices = current(lg, twin, brand)[0]["prices"]
    assert sorted(prices) == [(t, t + 1) for t in range(16)]


def test_grant_rejects_a_duplicate_usage_type(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    terms = list(lg.terms(brand))
    terms[6] = [(3, 10), (255, 20), (3, 30)]

    with lg.reverts("LicenseDuplicateUsageType", 3):
        lg.offer_and_accept(twin, tuple(terms), model)


def test_grant_rejects_a_price_above_uint96(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    with lg.reverts("LicensePriceTooHigh", 8, MAX_PRICE + 1):
        lg.offer_and_accept(twin, lg.terms(brand, {0: 1, 8: MAX_PRICE + 1}), model)

    lg.offer_and_accept(twin, lg.terms(brand, {0: 1, 8: MAX_PRICE}), model)
    assert price_at(lg, twin, brand, 8, lg.now()) == (Outcome.PAID, MAX_PRICE)


# ---------------------------------------------------------------------- inline and overflow prices

# Two inline slots take prices below 2**44 in grant order; everything else overflows.
MIXED_PRICES = {7: 11, 3: INLINE_LIMIT, 12: INLINE_LIMIT - 1, 9: MAX_PRICE, 200: 17, 0: 0}


def test_overflow_prices_are_stored_and_read_back_exactly(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    receipt = lg.offer_and_accept(twin, lg.terms(brand, MIXED_PRICES), model)

    assert granted(lg, receipt)[0]["prices"] == list(MIXED_PRICES.items())
    license, version = current(lg, twin, brand)
    assert version == 0
    assert len(license["prices"]) == len(MIXED_PRICES)
    assert dict(license["prices"]) == MIXED_PRICES
    assert version_of(lg, twin, brand, 0) == license
    at = lg.now()
    for usage_type, price in MIXED_PRICES.items():
        assert price_at(lg, twin, brand, usage_type, at) == (Outcome.PAID, price)
    assert price_at(lg, twin, brand, 1, at) == (Outcome.USAGE_TYPE_NOT_LICENSED, 0)


def test_inline_and_overflow_prices_settle_at_their_price(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, MIXED_PRICES), model)
    lg.advance(5)
    at = lg.now()

    receipt = settle(
        lg, brand, twin, [(at, 2, 7), (at, 3, 3), (at, 4, 12), (at, 5, 200), (at, 6, 0), (at, 1, 1)]
    )

    assert outcomes(lg, receipt) == [Outcome.PAID] * 5 + [Outcome.USAGE_TYPE_NOT_LICENSED]
    expected = 2 * 11 + 3 * INLINE_LIMIT + 4 * (INLINE_LIMIT - 1) + 5 * 17
    assert paid(lg, receipt) == expected
    assert lg.brand_account(brand)["escrow"] == DEPOSIT - expected
    assert lg.fn.twinState(twin).call()[0] == expected


def test_each_version_keeps_its_own_overflow_prices(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    v0 = {0: 1, 1: 2, 5: INLINE_LIMIT + 1}
    v1 = {5: INLINE_LIMIT + 7, 0: 3, 6: 4}
    lg.offer_and_accept(twin, lg.terms(brand, v0), model)
    lg.advance(100)
    start = lg.block_time(lg.offer_and_accept(twin, lg.terms(brand, v1), model))
    lg.advance(10)

    assert dict(version_of(lg, twin, brand, 0)["prices"]) == v0
    assert dict(version_of(lg, twin, brand, 1)["prices"]) == v1
    receipt = settle(
        lg, brand, twin, [(start - 1, 2, 5), (start, 2, 5), (start - 1, 1, 6), (start, 1, 1)]
    )

    assert outcomes(lg, receipt) == [
        Outcome.PAID,
        Outcome.PAID,
        Outcome.USAGE_TYPE_NOT_LICENSED,
        Outcome.USAGE_TYPE_NOT_LICENSED,
    ]
    assert paid(lg, receipt) == 2 * (INLINE_LIMIT + 1) + 2 * (INLINE_LIMIT + 7)


# ---------------------------------------------------------------------- replacement


def test_new_grant_replaces_the_old_one_from_its_start(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    until = lg.now() + 30 * DAY
    first = lg.block_time(
        lg.offer_and_accept(twin, lg.terms(brand, {0: 100}, valid_until=until), model)
    )
    lg.advance(100)

    receipt = lg.offer_and_accept(twin, lg.terms(brand, {0: 250}, valid_until=until + DAY), model)

    start = lg.block_time(receipt)
    [event] = granted(lg, receipt)
    assert (event["version"], event["validFrom"], event["validUntil"]) == (1, start, until + DAY)
    assert version_of(lg, twin, brand, 0) == {
        "validFrom": first,
        "validUntil": start,
        "maxUses": 0,
        "uses": 0,
        "revoked": False,
        "prices": [(0, 100)],
    }
    assert current(lg, twin, brand)[1] == 1
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 2
    assert price_at(lg, twin, brand, 0, start - 1) == (Outcome.PAID, 100)
    assert price_at(lg, twin, brand, 0, start) == (Outcome.PAID, 250)
    assert price_at(lg, twin, brand, 0, first - 1) == (Outcome.LICENSE_NOT_STARTED, 0)
    lg.advance(10)

    settled = settle(
        lg, brand, twin, [(first, 1, 0), (start - 1, 2, 0), (start, 3, 0), (first - 1, 1, 0)]
    )

    assert outcomes(lg, settled) == [
        Outcome.PAID,
        Outcome.PAID,
        Outcome.PAID,
        Outcome.LICENSE_NOT_STARTED,
    ]
    assert paid(lg, settled) == 100 + 2 * 100 + 3 * 250


def test_future_dated_grant_keeps_the_current_version_until_it_starts(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: 100}, valid_until=lg.now() + 30 * DAY), model)
    lg.advance(10)
    start = lg.now() + DAY

    receipt = lg.offer_and_accept(
        twin, lg.terms(brand, {0: 300}, valid_from=start, valid_until=start + 30 * DAY), model
    )

    [event] = granted(lg, receipt)
    assert (event["version"], event["validFrom"]) == (1, start)
    assert version_of(lg, twin, brand, 0)["validUntil"] == start
    assert current(lg, twin, brand)[0]["validFrom"] == start
    now = lg.now()
    assert price_at(lg, twin, brand, 0, now) == (Outcome.PAID, 100)
    before = settle(lg, brand, twin, [(now, 1, 0)])
    assert (outcomes(lg, before), paid(lg, before)) == ([Outcome.PAID], 100)

    lg.warp(start + 10)
    after = settle(lg, brand, twin, [(start - 1, 1, 0), (start, 1, 0), (start + 5, 2, 0)])

    assert outcomes(lg, after) == [Outcome.PAID] * 3
    assert paid(lg, after) == 100 + 300 + 2 * 300


def test_history_lookup_finds_the_version_covering_each_time(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    t0 = lg.block_time(lg.offer_and_accept(twin, lg.terms(brand, {0: 10}), model))
    lg.advance(100)
    t1 = lg.block_time(lg.offer_and_accept(twin, lg.terms(brand, {0: 20}), model))
    lg.advance(100)
    later, sooner = lg.now() + 1_000, lg.now() + 500
    lg.offer_and_accept(twin, lg.terms(brand, {0: 30}, valid_from=later), model)
    # A second future grant starting sooner replaces the first one before it ever starts.
    lg.offer_and_accept(twin, lg.terms(brand, {0: 40}, valid_from=sooner), model)

    assert [version_of(lg, twin, brand, v)["validFrom"] for v in range(4)] == [
        t0,
        t1,
        sooner,
        sooner,
    ]
    assert [version_of(lg, twin, brand, v)["validUntil"] for v in range(3)] == [t1, sooner, sooner]
    expected = [
        (t0 - 1, Outcome.LICENSE_NOT_STARTED, 0),
        (t0, Outcome.PAID, 10),
        (t1 - 1, Outcome.PAID, 10),
        (t1, Outcome.PAID, 20),
        (sooner - 1, Outcome.PAID, 20),
        (sooner, Outcome.PAID, 40),
        (later, Outcome.PAID, 40),
    ]
    assert [price_at(lg, twin, brand, 0, at) for at, _, _ in expected] == [
        (outcome, price) for _, outcome, price in expected
    ]
    lg.warp(later + 10)

    receipt = settle(lg, brand, twin, [(at, 1, 0) for at, _, _ in expected])

    assert outcomes(lg, receipt) == [outcome for _, outcome, _ in expected]
    assert paid(lg, receipt) == sum(price for _, _, price in expected)


def test_a_gap_between_versions_is_expired(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    end = lg.now() + 100
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}, valid_until=end), model)
    start = end + 100
    lg.offer_and_accept(
        twin, lg.terms(brand, {0: 20}, valid_from=start, valid_until=start + DAY), model
    )
    lg.warp(start + 10)

    receipt = settle(
        lg, brand, twin, [(end - 1, 1, 0), (end, 1, 0), (start - 1, 1, 0), (start, 1, 0)]
    )

    assert outcomes(lg, receipt) == [
        Outcome.PAID,
        Outcome.LICENSE_EXPIRED,
        Outcome.LICENSE_EXPIRED,
        Outcome.PAID,
    ]
    assert paid(lg, receipt) == 30
    assert version_of(lg, twin, brand, 0)["validUntil"] == end


def test_usage_before_a_future_license_starts_is_not_started(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    start = lg.now() + DAY
    lg.offer_and_accept(
        twin, lg.terms(brand, {0: 10}, valid_from=start, valid_until=start + DAY), model
    )
    lg.advance(10)
    now = lg.now()

    receipt = settle(lg, brand, twin, [(now, 1, 0)])

    assert outcomes(lg, receipt) == [Outcome.LICENSE_NOT_STARTED]
    assert paid(lg, receipt) == 0
    assert price_at(lg, twin, brand, 0, now) == (Outcome.LICENSE_NOT_STARTED, 0)
    assert price_at(lg, twin, brand, 0, start) == (Outcome.PAID, 10)


# ---------------------------------------------------------------------- revocation


def test_revoke_emits_license_revoked_and_marks_the_version(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}), model)
    lg.advance(10)
    lg.offer_and_accept(twin, lg.terms(brand, {0: 20}), model)
    lg.advance(10)

    receipt = lg.revoke(twin, brand, model)

    revoked_at = lg.block_time(receipt)
    assert lg.events(receipt, "LicenseRevoked") == [
        {"twinId": twin, "brand": brand.address, "version": 1, "revokedAt": revoked_at}
    ]
    license, version = current(lg, twin, brand)
    assert (version, license["revoked"], license["validUntil"]) == (1, True, revoked_at)
    assert version_of(lg, twin, brand, 0)["revoked"] is False
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 2


def test_revoke_keeps_earlier_uses_paid(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}), model)
    lg.advance(100)
    revoked_at = lg.block_time(lg.revoke(twin, brand, model))
    lg.advance(100)

    receipt = settle(
        lg, brand, twin, [(revoked_at - 1, 2, 0), (revoked_at, 1, 0), (revoked_at + 50, 1, 0)]
    )

    assert outcomes(lg, receipt) == [Outcome.PAID, Outcome.LICENSE_REVOKED, Outcome.LICENSE_REVOKED]
    assert paid(lg, receipt) == 20
    assert price_at(lg, twin, brand, 0, revoked_at - 1) == (Outcome.PAID, 10)
    assert price_at(lg, twin, brand, 0, revoked_at) == (Outcome.LICENSE_REVOKED, 0)


def test_revoke_also_ends_a_future_dated_version(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}, valid_until=lg.now() + 30 * DAY), model)
    start = lg.now() + DAY
    lg.offer_and_accept(
        twin, lg.terms(brand, {0: 20}, valid_from=start, valid_until=start + DAY), model
    )
    lg.advance(100)

    receipt = lg.revoke(twin, brand, model)

    revoked_at = lg.block_time(receipt)
    assert lg.events(receipt, "LicenseRevoked")[0]["version"] == 1
    assert version_of(lg, twin, brand, 0)["validUntil"] == revoked_at
    assert version_of(lg, twin, brand, 0)["revoked"] is True
    assert current(lg, twin, brand)[0]["revoked"] is True
    lg.warp(start + 10)
    settled = settle(lg, brand, twin, [(revoked_at - 1, 1, 0), (revoked_at, 1, 0), (start, 1, 0)])
    assert outcomes(lg, settled) == [Outcome.PAID, Outcome.LICENSE_REVOKED, Outcome.LICENSE_REVOKED]
    assert paid(lg, settled) == 10


def test_grant_after_revoke_starts_a_new_version(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}), model)
    lg.advance(10)
    revoked_at = lg.block_time(lg.revoke(twin, brand, model))
    lg.advance(10)
    receipt = lg.offer_and_accept(twin, lg.terms(brand, {0: 30}), model)
    start = lg.block_time(receipt)
    lg.advance(10)

    assert granted(lg, receipt)[0]["version"] == 1
    assert current(lg, twin, brand)[0]["revoked"] is False
    settled = settle(lg, brand, twin, [(revoked_at - 1, 1, 0), (start - 1, 1, 0), (start, 1, 0)])
    assert outcomes(lg, settled) == [Outcome.PAID, Outcome.LICENSE_REVOKED, Outcome.PAID]
    assert paid(lg, settled) == 40


def test_revoking_twice_reverts_already_ended(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand), model)
    lg.revoke(twin, brand, model)

    with lg.reverts("LicenseAlreadyEnded", twin, brand.address):
        lg.revoke(twin, brand, model)


def test_revoking_an_expired_license_reverts_already_ended(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, valid_until=lg.now() + 100), model)
    lg.advance(200)

    with lg.reverts("LicenseAlreadyEnded", twin, brand.address):
        lg.revoke(twin, brand, model)


def test_revoking_without_a_license_reverts_not_found(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    other = lg.actors.brands[1]
    lg.offer_and_accept(twin, lg.terms(other), model)

    with lg.reverts("LicenseNotFound", twin, brand.address):
        lg.revoke(twin, brand, model, version=0)
    with lg.reverts("LicenseNotFound", twin, brand.address):
        lg.fn.licenseOf(twin, brand.address).call()


def test_revoke_needs_the_owner_or_an_operator(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    operator = lg.actors.payees[1]
    lg.offer_and_accept(twin, lg.terms(brand), model)

    for stranger in (brand, lg.actors.outsider, lg.actors.admin):
        with lg.reverts("ERC721InsufficientApproval", stranger.address, twin):
            lg.revoke(twin, brand, stranger)
    with lg.reverts("ERC721NonexistentToken", twin + 1):
        lg.transact(lg.fn.revokeLicense(twin + 1, brand.address, 0), model)

    lg.transact(lg.fn.setApprovalForAll(operator.address, True), model)
    receipt = lg.revoke(twin, brand, operator)
    assert lg.events(receipt, "LicenseRevoked") == [
        {"twinId": twin, "brand": brand.address, "version": 0, "revokedAt": lg.block_time(receipt)}
    ]


@pytest.mark.parametrize("named", [0, 2, 5])
def test_revoke_must_name_the_current_version(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int, named: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}), model)
    lg.advance(10)
    lg.offer_and_accept(twin, lg.terms(brand, {0: 20}), model)

    with lg.reverts("LicenseVersionMismatch", twin, brand.address, named):
        lg.revoke(twin, brand, model, version=named)

    assert current(lg, twin, brand)[0]["revoked"] is False
    receipt = lg.revoke(twin, brand, model, version=1)
    assert lg.events(receipt, "LicenseRevoked")[0]["version"] == 1


# ---------------------------------------------------------------------- usage outcomes


def test_expired_license_refuses_uses_from_its_end(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    end = lg.now() + 100
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}, valid_until=end), model)
    lg.warp(end + 50)

    receipt = settle(lg, brand, twin, [(end - 1, 1, 0), (end, 1, 0), (end + 10, 1, 0)])

    assert outcomes(lg, receipt) == [Outcome.PAID, Outcome.LICENSE_EXPIRED, Outcome.LICENSE_EXPIRED]
    assert paid(lg, receipt) == 10
    assert price_at(lg, twin, brand, 0, end) == (Outcome.LICENSE_EXPIRED, 0)


def test_unlicensed_usage_type_and_brand_are_refused(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    other = lg.actors.brands[1]
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10, 2: 20}), model)
    lg.advance(5)
    now = lg.now()

    receipt = lg.settle(
        [
            (brand.address, [lg.usage(twin, used_at=now, usage_type=t) for t in (0, 1, 2, 3)]),
            (other.address, [lg.usage(twin, used_at=now, usage_type=0)]),
        ]
    )

    assert outcomes(lg, receipt) == [
        Outcome.PAID,
        Outcome.USAGE_TYPE_NOT_LICENSED,
        Outcome.PAID,
        Outcome.USAGE_TYPE_NOT_LICENSED,
        Outcome.NO_LICENSE,
    ]
    assert [e["paid"] for e in lg.events(receipt, "UsagesSettled")] == [30, 0]


def test_use_cap_counts_quantity(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}, max_uses=5), model)
    lg.advance(5)
    now = lg.now()

    receipt = settle(
        lg, brand, twin, [(now, 3, 0), (now, 3, 0), (now, 1, 9), (now, 2, 0), (now, 1, 0)]
    )

    assert outcomes(lg, receipt) == [
        Outcome.PAID,
        Outcome.USE_CAP_REACHED,
        Outcome.USAGE_TYPE_NOT_LICENSED,
        Outcome.PAID,
        Outcome.USE_CAP_REACHED,
    ]
    assert paid(lg, receipt) == 50
    license, _ = current(lg, twin, brand)
    assert (license["maxUses"], license["uses"]) == (5, 5)
    again = settle(lg, brand, twin, [(now, 1, 0)])
    assert outcomes(lg, again) == [Outcome.USE_CAP_REACHED]


def test_use_cap_persists_across_batches(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}, max_uses=4), model)
    lg.advance(5)
    now = lg.now()

    first = settle(lg, brand, twin, [(now, 3, 0)])
    assert current(lg, twin, brand)[0]["uses"] == 3
    second = settle(lg, brand, twin, [(now, 2, 0), (now, 1, 0)])

    assert outcomes(lg, first) == [Outcome.PAID]
    assert outcomes(lg, second) == [Outcome.USE_CAP_REACHED, Outcome.PAID]
    assert current(lg, twin, brand)[0]["uses"] == 4


def test_cap_of_a_replaced_version_counts_on_that_version(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: 10}, max_uses=2), model)
    lg.advance(100)
    start = lg.block_time(lg.offer_and_accept(twin, lg.terms(brand, {0: 20}, max_uses=6), model))
    lg.advance(10)

    receipt = settle(lg, brand, twin, [(start - 1, 2, 0), (start - 1, 1, 0), (start, 5, 0)])

    assert outcomes(lg, receipt) == [Outcome.PAID, Outcome.USE_CAP_REACHED, Outcome.PAID]
    assert paid(lg, receipt) == 2 * 10 + 5 * 20
    assert version_of(lg, twin, brand, 0)["uses"] == 2
    assert current(lg, twin, brand)[0]["uses"] == 5
    later = settle(lg, brand, twin, [(start - 2, 1, 0), (start + 1, 1, 0), (start + 2, 1, 0)])
    assert outcomes(lg, later) == [Outcome.USE_CAP_REACHED, Outcome.PAID, Outcome.USE_CAP_REACHED]
