"""Licenses are agreements: the owner offers a version, the brand accepts exactly that version and
terms hash (in its own transaction or by an EIP-712 signature, ECDSA or ERC-1271), declines it, or
the owner replaces or withdraws it. Until the brand accepts, the offer pays nothing
(``OfferNotAccepted``) and its earlier accepted version stays in force."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3.contract import Contract

from .helpers import (
    CONSENT,
    DAY,
    PURPOSE,
    Ledger,
    Outcome,
    sign_typed,
    terms_hash,
    typed_digest,
)

PRICE = 1_000_000
DEPOSIT = 10**12
WRONG_HASH = keccak(text="not the offered terms")


# ---------------------------------------------------------------------- helpers


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


def license_tuple(lg: Ledger, twin: int, brand: str, version: int) -> tuple[Any, ...]:
    """An accepted version as ``(validFrom, validUntil, maxUses, uses, revoked, prices)``."""
    valid_from, until, cap, uses, revoked, prices = lg.fn.licenseVersion(
        twin, brand, version
    ).call()
    return valid_from, until, cap, uses, revoked, [tuple(p) for p in prices]


def settle_one(lg: Ledger, brand: str, twin: int, **usage: Any) -> tuple[Outcome, int]:
    """Settles one usage of ``twin`` by ``brand``: its outcome and the group's ``paid``."""
    receipt = lg.settle([(brand, [lg.usage(twin, **usage)])])
    [(_, outcome)] = lg.outcomes(receipt)
    [event] = lg.events(receipt, "UsagesSettled")
    return outcome, int(event["paid"])


def acceptance(
    lg: Ledger,
    brand: str,
    signer: LocalAccount,
    twin: int,
    version: int,
    digest: bytes,
    *,
    deadline: int | None = None,
) -> tuple[Any, bytes]:
    """The unsent ``acceptLicenseBySig`` call signed by ``signer`` for ``brand`` (at the brand's
    current nonce), and the EIP-712 digest it signed."""
    deadline = lg.now() + 3600 if deadline is None else deadline
    nonce = lg.nonce(brand)
    data = lg.typed(
        "AcceptLicense",
        {
            "brand": brand,
            "twinId": twin,
            "version": version,
            "termsHash": digest,
            "nonce": nonce,
            "deadline": deadline,
        },
    )
    call = lg.fn.acceptLicenseBySig(
        brand, twin, version, digest, nonce, deadline, sign_typed(signer, data)
    )
    return call, typed_digest(data)


# ---------------------------------------------------------------------- offers


def test_offer_emits_license_offered_with_the_eip712_terms_hash(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    until = lg.now() + 10 * DAY
    terms = lg.terms(brand, {4: 70, 1: 30}, valid_until=until, max_uses=9)

    receipt = lg.offer(twin, terms, model)

    digest = terms_hash(terms)
    [event] = lg.events(receipt, "LicenseOffered")
    event["prices"] = [(p["usageType"], p["price"]) for p in event["prices"]]
    assert [event] == [
        {
            "twinId": twin,
            "brand": brand.address,
            "version": 0,
            "validFrom": 0,
            "validUntil": until,
            "maxUses": 9,
            "purposeHash": PURPOSE,
            "consentHash": CONSENT,
            "prices": [(4, 70), (1, 30)],
            "termsHash": digest,
        }
    ]
    assert bytes(lg.fn.hashLicenseTerms(terms).call()) == digest
    assert lg.fn.offerOf(twin, brand.address).call() == [
        (0, until, 9, 0, False, [(4, 70), (1, 30)]),
        0,
        digest,
    ]
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 0


def test_an_offer_not_yet_accepted_pays_nothing(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer(twin, lg.terms(brand, {0: PRICE}), model)
    lg.advance(10)

    assert settle_one(lg, brand.address, twin) == (Outcome.OFFER_NOT_ACCEPTED, 0)
    assert lg.fn.priceAt(twin, brand.address, 0, lg.now() - 1).call() == [
        Outcome.OFFER_NOT_ACCEPTED,
        0,
    ]
    assert lg.brand_account(brand)["escrow"] == DEPOSIT
    assert lg.fn.twinState(twin).call() == [0, 0, 0]


def test_without_an_offer_the_outcome_stays_no_license(
    lg: Ledger, brand: LocalAccount, twin: int
) -> None:
    assert settle_one(lg, brand.address, twin) == (Outcome.NO_LICENSE, 0)


def test_a_new_offer_replaces_the_waiting_one(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    first = lg.terms(brand, {0: PRICE})
    second = lg.terms(brand, {0: 2 * PRICE})
    lg.offer(twin, first, model)

    receipt = lg.offer(twin, second, model)

    assert lg.all_events(receipt) == ["LicenseOfferWithdrawn", "LicenseOffered"]
    assert lg.events(receipt, "LicenseOfferWithdrawn") == [
        {"twinId": twin, "brand": brand.address, "version": 0}
    ]
    assert lg.offered(receipt) == (0, terms_hash(second))
    with lg.reverts("LicenseOfferMismatch", twin, brand.address, 0, terms_hash(first)):
        lg.fn.acceptLicense(twin, 0, terms_hash(first)).transact({"from": brand.address})
    lg.accept(twin, 0, terms_hash(second), brand)
    assert lg.fn.priceAt(twin, brand.address, 0, lg.now()).call() == [Outcome.PAID, 2 * PRICE]


# ---------------------------------------------------------------------- acceptance


@pytest.mark.parametrize("offered_start", ["past", "future"])
def test_acceptance_starts_the_version_at_the_later_of_offered_start_and_acceptance(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int, offered_start: str
) -> None:
    valid_from = lg.now() - 5 * DAY if offered_start == "past" else lg.now() + 2 * DAY
    until = lg.now() + 10 * DAY
    terms = lg.terms(brand, {0: PRICE}, valid_from=valid_from, valid_until=until)
    version, digest = lg.offered(lg.offer(twin, terms, model))

    receipt = lg.accept(twin, version, digest, brand)

    accepted_at = lg.block_time(receipt)
    start = max(valid_from, accepted_at)
    assert lg.events(receipt, "LicenseAccepted") == [
        {"twinId": twin, "brand": brand.address, "version": 0, "validFrom": start}
    ]
    assert license_tuple(lg, twin, brand.address, 0) == (start, until, 0, 0, False, [(0, PRICE)])
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 1
    with lg.reverts("LicenseNoOffer", twin, brand.address):
        lg.fn.offerOf(twin, brand.address).call()
    lg.warp(max(start, lg.now()) + 10)
    assert settle_one(lg, brand.address, twin, used_at=start - 1) == (
        Outcome.LICENSE_NOT_STARTED,
        0,
    )
    assert settle_one(lg, brand.address, twin, used_at=start) == (Outcome.PAID, PRICE)


def test_acceptance_must_name_the_offered_version_and_terms_hash(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand), model))
    assert version == 0

    with lg.reverts("LicenseOfferMismatch", twin, brand.address, 1, digest):
        lg.fn.acceptLicense(twin, 1, digest).transact({"from": brand.address})
    with lg.reverts("LicenseOfferMismatch", twin, brand.address, 0, WRONG_HASH):
        lg.fn.acceptLicense(twin, 0, WRONG_HASH).transact({"from": brand.address})
    assert lg.fn.offerOf(twin, brand.address).call()[1:] == [0, digest]


def test_only_the_brand_named_in_the_offer_can_accept_it(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    other = lg.actors.brands[1]
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand), model))

    with lg.reverts("LicenseNoOffer", twin, other.address):
        lg.fn.acceptLicense(twin, version, digest).transact({"from": other.address})
    with lg.reverts("LicenseNoOffer", twin, model.address):
        lg.fn.acceptLicense(twin, version, digest).transact({"from": model.address})


def test_acceptance_after_the_offer_window_reverts_offer_expired(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    until = lg.now() + 100
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand, valid_until=until), model))

    lg.warp(until)
    with lg.reverts("LicenseOfferExpired", twin, brand.address, version):
        lg.fn.acceptLicense(twin, version, digest).transact({"from": brand.address})


def test_acceptance_in_the_last_second_of_the_window_starts_a_one_second_version(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    until = lg.now() + 100
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand, valid_until=until), model))

    lg.warp(until - 1)
    receipt = lg.accept(twin, version, digest, brand)

    assert lg.events(receipt, "LicenseAccepted")[0]["validFrom"] == until - 1
    assert license_tuple(lg, twin, brand.address, 0)[:2] == (until - 1, until)


def test_earlier_accepted_version_stays_in_force_until_the_new_one_is_accepted(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: PRICE}), model)
    raised = lg.terms(brand, {0: 1_000 * PRICE})
    version, digest = lg.offered(lg.offer(twin, raised, model))
    assert version == 1
    lg.advance(10)

    assert settle_one(lg, brand.address, twin) == (Outcome.PAID, PRICE)
    assert lg.fn.licenseOf(twin, brand.address).call()[1] == 0

    receipt = lg.accept(twin, version, digest, brand)
    accepted_at = lg.block_time(receipt)
    assert lg.events(receipt, "LicenseAccepted") == [
        {"twinId": twin, "brand": brand.address, "version": 1, "validFrom": accepted_at}
    ]
    assert license_tuple(lg, twin, brand.address, 0)[1] == accepted_at
    lg.advance(10)
    assert settle_one(lg, brand.address, twin, used_at=accepted_at - 1) == (Outcome.PAID, PRICE)
    assert settle_one(lg, brand.address, twin, used_at=accepted_at) == (
        Outcome.PAID,
        1_000 * PRICE,
    )


# ---------------------------------------------------------------------- acceptance by signature


def test_brand_signature_accepts_and_a_relayer_submits_it(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand), model))
    call, signed = acceptance(lg, brand.address, brand, twin, version, digest)

    receipt = lg.transact(call, lg.actors.outsider)

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": brand.address, "nonce": 0, "digest": signed}
    ]
    accepted_at = lg.block_time(receipt)
    assert lg.events(receipt, "LicenseAccepted") == [
        {"twinId": twin, "brand": brand.address, "version": 0, "validFrom": accepted_at}
    ]
    assert lg.nonce(brand) == 1
    with lg.reverts("InvalidAccountNonce", brand.address, 1):
        call.transact({"from": lg.actors.outsider.address})


def test_acceptance_signed_by_another_key_or_expired_is_refused(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand), model))
    forged, _ = acceptance(lg, brand.address, model, twin, version, digest)
    deadline = lg.now() + 5
    late, _ = acceptance(lg, brand.address, brand, twin, version, digest, deadline=deadline)

    with lg.reverts("TwinInvalidSigner", brand.address):
        forged.transact({"from": lg.actors.outsider.address})
    lg.warp(deadline + 1)
    with lg.reverts("TwinSignatureExpired", deadline):
        late.transact({"from": lg.actors.outsider.address})
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 0


def test_erc1271_brand_accepts_by_its_wallet_signature(
    lg: Ledger, model: LocalAccount, twin: int, deploy: Any
) -> None:
    key = lg.actors.payees[2]
    wallet: Contract = deploy("MockERC1271Wallet", key.address)
    terms = lg.terms(wallet.address, {0: PRICE})
    version, digest = lg.offered(lg.offer(twin, terms, model))
    call, signed = acceptance(lg, wallet.address, key, twin, version, digest)

    receipt = lg.transact(call, lg.actors.outsider)

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": wallet.address, "nonce": 0, "digest": signed}
    ]
    assert lg.events(receipt, "LicenseAccepted")[0]["brand"] == wallet.address
    lg.transact(lg.fn.deposit(wallet.address, PRICE), lg.actors.brands[1])
    lg.advance(10)
    assert settle_one(lg, wallet.address, twin) == (Outcome.PAID, PRICE)


def test_erc1271_brand_that_refuses_the_signature_does_not_accept(
    lg: Ledger, model: LocalAccount, twin: int, deploy: Any
) -> None:
    key = lg.actors.payees[2]
    wallet: Contract = deploy("MockERC1271Wallet", key.address)
    version, digest = lg.offered(lg.offer(twin, lg.terms(wallet.address), model))
    call, _ = acceptance(lg, wallet.address, key, twin, version, digest)
    lg.transact(wallet.functions.setAccepting(False), key.address)

    with lg.reverts("TwinInvalidSigner", wallet.address):
        call.transact({"from": lg.actors.outsider.address})
    assert lg.fn.offerOf(twin, wallet.address).call()[1:] == [0, digest]


# ---------------------------------------------------------------------- decline and withdraw


def test_brand_declines_an_offer(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand), model))
    with lg.reverts("LicenseVersionMismatch", twin, brand.address, 1):
        lg.fn.declineLicense(twin, 1).transact({"from": brand.address})

    receipt = lg.transact(lg.fn.declineLicense(twin, version), brand)

    assert lg.events(receipt, "LicenseDeclined") == [
        {"twinId": twin, "brand": brand.address, "version": 0}
    ]
    with lg.reverts("LicenseNoOffer", twin, brand.address):
        lg.fn.acceptLicense(twin, version, digest).transact({"from": brand.address})
    with lg.reverts("LicenseNoOffer", twin, brand.address):
        lg.fn.declineLicense(twin, version).transact({"from": brand.address})
    lg.advance(10)
    assert settle_one(lg, brand.address, twin) == (Outcome.NO_LICENSE, 0)


def test_owner_withdraws_a_waiting_offer_by_revoking_its_version(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand), model))

    receipt = lg.revoke(twin, brand, model, version=version)

    assert lg.all_events(receipt) == ["LicenseOfferWithdrawn"]
    assert lg.events(receipt, "LicenseOfferWithdrawn") == [
        {"twinId": twin, "brand": brand.address, "version": 0}
    ]
    with lg.reverts("LicenseNoOffer", twin, brand.address):
        lg.fn.acceptLicense(twin, version, digest).transact({"from": brand.address})
    with lg.reverts("LicenseNotFound", twin, brand.address):
        lg.fn.revokeLicense(twin, brand.address, 0).transact({"from": model.address})


def test_withdrawing_a_new_offer_keeps_the_accepted_version_in_force(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: PRICE}), model)
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand, {0: 5 * PRICE}), model))
    with lg.reverts("LicenseVersionMismatch", twin, brand.address, 2):
        lg.fn.revokeLicense(twin, brand.address, 2).transact({"from": model.address})

    receipt = lg.revoke(twin, brand, model, version=version)

    assert lg.events(receipt, "LicenseOfferWithdrawn") == [
        {"twinId": twin, "brand": brand.address, "version": 1}
    ]
    assert lg.events(receipt, "LicenseRevoked") == []
    with lg.reverts("LicenseNoOffer", twin, brand.address):
        lg.fn.acceptLicense(twin, version, digest).transact({"from": brand.address})
    lg.advance(10)
    assert settle_one(lg, brand.address, twin) == (Outcome.PAID, PRICE)


def test_revoking_the_accepted_version_leaves_a_waiting_offer_acceptable(
    lg: Ledger, model: LocalAccount, brand: LocalAccount, twin: int
) -> None:
    lg.offer_and_accept(twin, lg.terms(brand, {0: PRICE}), model)
    version, digest = lg.offered(lg.offer(twin, lg.terms(brand, {0: 3 * PRICE}), model))

    receipt = lg.revoke(twin, brand, model, version=0)

    revoked_at = lg.block_time(receipt)
    assert lg.events(receipt, "LicenseRevoked") == [
        {"twinId": twin, "brand": brand.address, "version": 0, "revokedAt": revoked_at}
    ]
    lg.advance(10)
    assert settle_one(lg, brand.address, twin) == (Outcome.LICENSE_REVOKED, 0)
    accepted = lg.accept(twin, version, digest, brand)
    lg.advance(10)
    assert settle_one(lg, brand.address, twin) == (Outcome.PAID, 3 * PRICE)
    assert license_tuple(lg, twin, brand.address, 1)[0] == lg.block_time(accepted)
