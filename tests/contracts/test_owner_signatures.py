"""Signed actions relayed by anyone: the owner's offerLicenseBySig, revokeLicenseBySig,
setTwinPausedBySig and setPayeesBySig and the brand's acceptLicenseBySig, with nonces (and their
cancellation), deadlines, domain separation, the signer named in every struct, ownership changes
and ERC-1271 smart-wallet owners and brands."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from .helpers import DAY, Ledger, sign_typed, terms_hash, terms_message, typed_data, typed_digest

OWNER_ACTIONS = ["OfferLicense", "RevokeLicense", "SetTwinPaused", "SetPayees"]
ACTIONS = [*OWNER_ACTIONS, "AcceptLicense"]
FUNCTIONS = {
    "OfferLicense": "offerLicenseBySig",
    "RevokeLicense": "revokeLicenseBySig",
    "SetTwinPaused": "setTwinPausedBySig",
    "SetPayees": "setPayeesBySig",
    "AcceptLicense": "acceptLicenseBySig",
}
FAR_FUTURE = 4_000_000_000
"""A fixed end of validity (2096), so that the same parameters can be prepared on two ledgers."""
SIGNER_FIELD = dict.fromkeys(OWNER_ACTIONS, "owner") | {"AcceptLicense": "brand"}
"""The struct field naming the signer: the twin's owner, or the brand accepting."""


def message_of(
    action: str, signer: str, twin: int, params: Any, nonce: int, deadline: int
) -> dict[str, Any]:
    """The typed-data message of ``action`` (``signer`` is the owner, or the accepting brand)."""
    body: dict[str, Any] = {SIGNER_FIELD[action]: signer, "twinId": twin}
    if action == "OfferLicense":
        body["terms"] = terms_message(params)
    elif action == "RevokeLicense":
        body["brand"], body["version"] = params
    elif action == "SetTwinPaused":
        body["paused"] = params
    elif action == "SetPayees":
        body["payees"] = [{"account": a, "bps": b} for a, b in params]
    else:
        body["version"], body["termsHash"] = params
    return {**body, "nonce": nonce, "deadline": deadline}


def sign_action(
    lg: Ledger,
    signer: LocalAccount,
    action: str,
    twin: int,
    params: Any,
    *,
    nonce: int,
    deadline: int,
    chain_id: int | None = None,
    ledger: str | None = None,
    named: str | None = None,
) -> tuple[bytes, bytes]:
    """``(signature, digest)`` of ``action`` on ``twin`` signed by ``signer`` for the ledger's
    domain (or another chain id / verifying contract); the struct names ``named`` as the owner
    (or brand), ``signer``'s own address by default (an ERC-1271 wallet's for a wallet)."""
    data = typed_data(
        action,
        message_of(action, named or signer.address, twin, params, nonce, deadline),
        chain_id=lg.w3.eth.chain_id if chain_id is None else chain_id,
        ledger=lg.contract.address if ledger is None else ledger,
    )
    return sign_typed(signer, data), typed_digest(data)


def call_of(
    lg: Ledger,
    action: str,
    signer: str,
    twin: int,
    params: Any,
    nonce: int,
    deadline: int,
    signature: bytes,
) -> Any:
    """The unsent ``*BySig`` call naming ``signer`` (owner or brand)."""
    flat = list(params) if action in ("RevokeLicense", "AcceptLicense") else [params]
    return getattr(lg.fn, FUNCTIONS[action])(signer, twin, *flat, nonce, deadline, signature)


def default_signer(lg: Ledger, action: str, twin: int) -> str:
    """Who signs ``action`` in these tests: brand 0 accepts; the twin's owner does the rest."""
    if action == "AcceptLicense":
        return str(lg.actors.brands[0].address)
    try:
        return str(lg.fn.ownerOf(twin).call())
    except Exception:  # a twin that does not exist: model 0 signs
        return str(lg.actors.models[0].address)


def relay(
    lg: Ledger,
    action: str,
    twin: int,
    params: Any,
    nonce: int,
    deadline: int,
    signature: bytes,
    sender: LocalAccount | None = None,
    *,
    signer: str | None = None,
) -> Any:
    """Relays the signed ``action`` from ``sender`` (an outsider by default), naming ``signer``
    (the default signer of the action by default)."""
    named = signer or default_signer(lg, action, twin)
    call = call_of(lg, action, named, twin, params, nonce, deadline, signature)
    return lg.transact(call, sender or lg.actors.outsider)


def nonce_of(lg: Ledger, account: LocalAccount | str) -> int:
    address = account if isinstance(account, str) else account.address
    return int(lg.fn.nonces(address).call())


def signer_for(lg: Ledger, action: str, model: LocalAccount) -> LocalAccount:
    """The key that signs ``action`` when ``model`` owns the twin: the brand's for an acceptance."""
    return lg.actors.brands[0] if action == "AcceptLicense" else model


def params_for(lg: Ledger, action: str, twin: int, owner: LocalAccount | str) -> Any:
    """Parameters with which ``action`` succeeds on a fresh ``twin`` (offering and accepting a
    license first for a revocation, offering one to brand 0 for an acceptance)."""
    brand = lg.actors.brands[0]
    if action == "OfferLicense":
        return lg.terms(brand, {0: 10, 1: 2**50, 2: 3}, valid_until=FAR_FUTURE)
    if action == "RevokeLicense":
        lg.offer_and_accept(twin, lg.terms(brand), owner)
        return (brand.address, 0)
    if action == "AcceptLicense":
        terms = lg.terms(brand, {0: 10, 5: 2**50}, valid_until=FAR_FUTURE)
        version, digest = lg.offered(lg.offer(twin, terms, owner))
        assert digest == terms_hash(terms)
        return (version, digest)
    if action == "SetTwinPaused":
        return True
    return [(lg.actors.payees[0].address, 1_500), (lg.actors.payees[1].address, 500)]


def tampered(lg: Ledger, action: str, params: Any) -> Any:
    """``params`` changed in one field, keeping the action otherwise valid."""
    if action == "OfferLicense":
        terms = list(params)
        terms[6] = [(0, 11), *terms[6][1:]]
        return tuple(terms)
    if action == "RevokeLicense":
        return (params[0], params[1] + 1)
    if action == "AcceptLicense":
        return (params[0], keccak(params[1]))
    if action == "SetTwinPaused":
        return not params
    return [(params[0][0], params[0][1] + 1), *params[1:]]


@pytest.fixture
def model(lg: Ledger) -> LocalAccount:
    return lg.actors.models[0]


@pytest.fixture
def deadline(lg: Ledger) -> int:
    return lg.now() + 3600


# ---------------------------------------------------------------------- accepted actions


def test_offer_license_by_signature_relayed_by_an_outsider(
    lg: Ledger, model: LocalAccount, deadline: int
) -> None:
    brand = lg.actors.brands[1]
    twin = lg.mint(model)
    start = lg.now() + DAY
    terms = lg.terms(
        brand,
        {3: 7, 9: 2**60, 4: 0, 200: 2**44},
        valid_from=start,
        valid_until=start + 5 * DAY,
        max_uses=12,
        purpose=keccak(text="p"),
        consent=keccak(text="c"),
    )
    signature, digest = sign_action(
        lg, model, "OfferLicense", twin, terms, nonce=0, deadline=deadline
    )

    receipt = relay(lg, "OfferLicense", twin, terms, 0, deadline, signature)

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": model.address, "nonce": 0, "digest": digest}
    ]
    [event] = lg.events(receipt, "LicenseOffered")
    assert {**event, "prices": [(p["usageType"], p["price"]) for p in event["prices"]]} == {
        "twinId": twin,
        "brand": brand.address,
        "version": 0,
        "validFrom": start,
        "validUntil": start + 5 * DAY,
        "maxUses": 12,
        "purposeHash": keccak(text="p"),
        "consentHash": keccak(text="c"),
        "prices": [(3, 7), (9, 2**60), (4, 0), (200, 2**44)],
        "termsHash": terms_hash(terms),
    }
    names = lg.all_events(receipt)
    assert names.index("SignedActionUsed") < names.index("LicenseOffered")
    assert nonce_of(lg, model) == 1
    assert nonce_of(lg, lg.actors.outsider) == 0
    # An offer, not yet a license: the brand accepts it by its terms hash.
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 0
    (offered, version, offered_hash) = lg.fn.offerOf(twin, brand.address).call()
    assert (list(offered[:5]), version, bytes(offered_hash)) == (
        [start, start + 5 * DAY, 12, 0, False],
        0,
        terms_hash(terms),
    )
    lg.accept(twin, 0, terms_hash(terms), brand)
    (valid_from, valid_until, max_uses, uses, revoked, prices), version = lg.fn.licenseOf(
        twin, brand.address
    ).call()
    assert (valid_from, valid_until, max_uses, uses, revoked, version) == (
        start,
        start + 5 * DAY,
        12,
        0,
        False,
        0,
    )
    assert dict(prices) == {3: 7, 9: 2**60, 4: 0, 200: 2**44}


def test_accept_license_by_the_brands_signature_relayed_by_an_outsider(
    lg: Ledger, model: LocalAccount, deadline: int
) -> None:
    brand = lg.actors.brands[0]
    twin = lg.mint(model)
    params = params_for(lg, "AcceptLicense", twin, model)
    signature, digest = sign_action(
        lg, brand, "AcceptLicense", twin, params, nonce=0, deadline=deadline
    )

    receipt = relay(lg, "AcceptLicense", twin, params, 0, deadline, signature)

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": brand.address, "nonce": 0, "digest": digest}
    ]
    assert lg.events(receipt, "LicenseAccepted") == [
        {"twinId": twin, "brand": brand.address, "version": 0, "validFrom": lg.block_time(receipt)}
    ]
    assert (nonce_of(lg, brand), nonce_of(lg, model)) == (1, 0)
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 1
    with lg.reverts("LicenseNoOffer", twin, brand.address):
        lg.fn.offerOf(twin, brand.address).call()


def test_revoke_license_by_signature(lg: Ledger, model: LocalAccount, deadline: int) -> None:
    brand = lg.actors.brands[0]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand), model)
    signature, digest = sign_action(
        lg, model, "RevokeLicense", twin, (brand.address, 0), nonce=0, deadline=deadline
    )

    receipt = relay(lg, "RevokeLicense", twin, (brand.address, 0), 0, deadline, signature)

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": model.address, "nonce": 0, "digest": digest}
    ]
    revoked_at = lg.block_time(receipt)
    assert lg.events(receipt, "LicenseRevoked") == [
        {"twinId": twin, "brand": brand.address, "version": 0, "revokedAt": revoked_at}
    ]
    (_, valid_until, _, _, revoked, _), _ = lg.fn.licenseOf(twin, brand.address).call()
    assert (valid_until, revoked) == (revoked_at, True)
    assert nonce_of(lg, model) == 1


def test_set_twin_paused_by_signature_pauses_and_unpauses(
    lg: Ledger, model: LocalAccount, deadline: int
) -> None:
    twin = lg.mint(model)
    pause_sig, pause_digest = sign_action(
        lg, model, "SetTwinPaused", twin, True, nonce=0, deadline=deadline
    )
    unpause_sig, unpause_digest = sign_action(
        lg, model, "SetTwinPaused", twin, False, nonce=1, deadline=deadline
    )

    paused = relay(lg, "SetTwinPaused", twin, True, 0, deadline, pause_sig)
    unpaused = relay(
        lg, "SetTwinPaused", twin, False, 1, deadline, unpause_sig, sender=lg.actors.brands[2]
    )

    assert lg.events(paused, "SignedActionUsed") == [
        {"signer": model.address, "nonce": 0, "digest": pause_digest}
    ]
    assert lg.events(paused, "TwinPaused") == [{"twinId": twin, "at": lg.block_time(paused)}]
    assert lg.events(unpaused, "SignedActionUsed") == [
        {"signer": model.address, "nonce": 1, "digest": unpause_digest}
    ]
    assert lg.events(unpaused, "TwinUnpaused") == [{"twinId": twin, "at": lg.block_time(unpaused)}]
    assert lg.fn.twinState(twin).call() == [0, 0, 1]
    assert nonce_of(lg, model) == 2


def test_set_payees_by_signature(lg: Ledger, model: LocalAccount, deadline: int) -> None:
    twin = lg.mint(model)
    payees = [(lg.actors.payees[2].address, 4_000), (lg.actors.payees[0].address, 1)]
    signature, digest = sign_action(
        lg, model, "SetPayees", twin, payees, nonce=0, deadline=deadline
    )

    receipt = relay(lg, "SetPayees", twin, payees, 0, deadline, signature)

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": model.address, "nonce": 0, "digest": digest}
    ]
    [event] = lg.events(receipt, "PayeesSet")
    assert (event["twinId"], [(p["account"], p["bps"]) for p in event["payees"]]) == (twin, payees)
    assert lg.fn.payeesOf(twin).call() == payees
    assert nonce_of(lg, model) == 1


def test_deadline_equal_to_the_block_time_is_accepted(lg: Ledger, model: LocalAccount) -> None:
    twin = lg.mint(model)
    deadline = lg.next_time()
    signature, _ = sign_action(lg, model, "SetTwinPaused", twin, True, nonce=0, deadline=deadline)

    receipt = relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature)

    assert lg.block_time(receipt) == deadline
    assert lg.fn.twinState(twin).call()[1] == deadline


# ---------------------------------------------------------------------- refused signatures


@pytest.mark.parametrize("action", ACTIONS)
def test_replayed_signature_reverts_with_the_current_nonce(
    lg: Ledger, model: LocalAccount, deadline: int, action: str
) -> None:
    twin = lg.mint(model)
    params = params_for(lg, action, twin, model)
    signer = signer_for(lg, action, model)
    signature, _ = sign_action(lg, signer, action, twin, params, nonce=0, deadline=deadline)
    relay(lg, action, twin, params, 0, deadline, signature)

    with lg.reverts("InvalidAccountNonce", signer.address, 1):
        relay(lg, action, twin, params, 0, deadline, signature)
    assert nonce_of(lg, signer) == 1


@pytest.mark.parametrize("action", ACTIONS)
def test_signature_with_a_future_nonce_is_refused(
    lg: Ledger, model: LocalAccount, deadline: int, action: str
) -> None:
    twin = lg.mint(model)
    params = params_for(lg, action, twin, model)
    signer = signer_for(lg, action, model)
    signature, _ = sign_action(lg, signer, action, twin, params, nonce=1, deadline=deadline)

    with lg.reverts("InvalidAccountNonce", signer.address, 0):
        relay(lg, action, twin, params, 1, deadline, signature)


@pytest.mark.parametrize("action", ACTIONS)
def test_expired_signature_is_refused(lg: Ledger, model: LocalAccount, action: str) -> None:
    twin = lg.mint(model)
    params = params_for(lg, action, twin, model)
    deadline = lg.next_time() - 1
    signer = signer_for(lg, action, model)
    signature, _ = sign_action(lg, signer, action, twin, params, nonce=0, deadline=deadline)

    with lg.reverts("TwinSignatureExpired", deadline):
        relay(lg, action, twin, params, 0, deadline, signature)
    assert nonce_of(lg, signer) == 0


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(
    "fault",
    [
        "other chain",
        "other ledger",
        "other signer",
        "tampered",
        "other twin",
        "other deadline",
        "other signer named",
        "empty signature",
    ],
)
def test_signature_not_matching_the_action_is_refused(
    lg: Ledger, model: LocalAccount, deadline: int, action: str, fault: str
) -> None:
    twin = lg.mint(model)
    other_twin = lg.mint(model)
    params_for(lg, action, other_twin, model)
    params = params_for(lg, action, twin, model)
    real = signer_for(lg, action, model)
    signed_twin, signed_params, signed_deadline, signer = twin, params, deadline, real
    domain: dict[str, Any] = {"named": real.address}
    if fault == "other chain":
        domain["chain_id"] = lg.w3.eth.chain_id + 1
    elif fault == "other ledger":
        domain["ledger"] = lg.token.address
    elif fault == "other signer":
        signer = lg.actors.outsider
    elif fault == "tampered":
        signed_params = tampered(lg, action, params)
    elif fault == "other twin":
        signed_twin = other_twin
    elif fault == "other deadline":
        signed_deadline = deadline + 1
    elif fault == "other signer named":  # the real key, but a struct naming someone else
        domain["named"] = lg.actors.outsider.address
    signature, _ = sign_action(
        lg, signer, action, signed_twin, signed_params, nonce=0, deadline=signed_deadline, **domain
    )
    if fault == "empty signature":
        signature = b""

    with lg.reverts("TwinInvalidSigner", real.address):
        relay(lg, action, twin, params, 0, deadline, signature)
    assert nonce_of(lg, real) == 0


def test_operator_signature_does_not_act_for_the_owner(
    lg: Ledger, model: LocalAccount, deadline: int
) -> None:
    operator = lg.actors.payees[0]
    twin = lg.mint(model)
    lg.transact(lg.fn.setApprovalForAll(operator.address, True), model)
    signature, _ = sign_action(
        lg, operator, "SetTwinPaused", twin, True, nonce=0, deadline=deadline
    )

    with lg.reverts("TwinInvalidSigner", model.address):
        relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature)
    # Named as the signer, the operator is not the owner: refused before its signature counts.
    with lg.reverts("TwinInvalidSigner", model.address):
        relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature, signer=operator.address)
    assert (nonce_of(lg, model), nonce_of(lg, operator)) == (0, 0)


def test_previous_owner_signature_is_refused_after_a_transfer(
    lg: Ledger, model: LocalAccount, deadline: int
) -> None:
    new_owner = lg.actors.models[1]
    twin = lg.mint(model)
    signature, _ = sign_action(lg, model, "SetTwinPaused", twin, True, nonce=0, deadline=deadline)
    lg.transact(lg.fn.transferFrom(model.address, new_owner.address, twin), model)

    with lg.reverts("TwinInvalidSigner", new_owner.address):
        relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature)
    with lg.reverts("TwinInvalidSigner", new_owner.address):
        relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature, signer=model.address)

    new_signature, digest = sign_action(
        lg, new_owner, "SetTwinPaused", twin, True, nonce=0, deadline=deadline
    )
    receipt = relay(lg, "SetTwinPaused", twin, True, 0, deadline, new_signature)
    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": new_owner.address, "nonce": 0, "digest": digest}
    ]
    assert (nonce_of(lg, model), nonce_of(lg, new_owner)) == (0, 1)


def test_nonces_are_per_owner_across_twins(lg: Ledger, model: LocalAccount, deadline: int) -> None:
    first, second = lg.mint(model), lg.mint(model)
    signature, _ = sign_action(lg, model, "SetTwinPaused", first, True, nonce=0, deadline=deadline)
    relay(lg, "SetTwinPaused", first, True, 0, deadline, signature)

    stale, _ = sign_action(lg, model, "SetTwinPaused", second, True, nonce=0, deadline=deadline)
    with lg.reverts("InvalidAccountNonce", model.address, 1):
        relay(lg, "SetTwinPaused", second, True, 0, deadline, stale)

    fresh, digest = sign_action(
        lg, model, "SetTwinPaused", second, True, nonce=1, deadline=deadline
    )
    receipt = relay(lg, "SetTwinPaused", second, True, 1, deadline, fresh)
    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": model.address, "nonce": 1, "digest": digest}
    ]
    assert nonce_of(lg, model) == 2


@pytest.mark.parametrize("action", ACTIONS)
def test_signed_action_on_a_nonexistent_twin_reverts(
    lg: Ledger, model: LocalAccount, deadline: int, action: str
) -> None:
    twin = lg.mint(model)
    params = params_for(lg, action, twin, model)
    signer = signer_for(lg, action, model)
    signature, _ = sign_action(lg, signer, action, twin + 1, params, nonce=0, deadline=deadline)

    if action == "AcceptLicense":  # the brand's signature is good; there is nothing to accept
        with lg.reverts("LicenseNoOffer", twin + 1, signer.address):
            relay(lg, action, twin + 1, params, 0, deadline, signature, signer=signer.address)
    else:
        with lg.reverts("ERC721NonexistentToken", twin + 1):
            relay(lg, action, twin + 1, params, 0, deadline, signature, signer=model.address)
    assert nonce_of(lg, signer) == 0


# ---------------------------------------------------------------------- ERC-1271 owners


@pytest.mark.parametrize("action", OWNER_ACTIONS)
def test_erc1271_wallet_owner_acts_through_its_signer(
    lg: Ledger, deploy: Any, deadline: int, action: str
) -> None:
    signer = lg.actors.models[2]
    wallet = deploy("MockERC1271Wallet", signer.address)
    twin = lg.mint(wallet.address)
    if action == "RevokeLicense":
        brand = lg.actors.brands[0]
        terms = lg.terms(brand)
        offer = lg.fn.offerLicense(twin, terms)
        lg.transact(
            wallet.functions.execute(lg.contract.address, offer._encode_transaction_data()), signer
        )
        lg.accept(twin, 0, terms_hash(terms), brand)
        params: Any = (brand.address, 0)
    else:
        params = params_for(lg, action, twin, wallet.address)
    signature, digest = sign_action(
        lg, signer, action, twin, params, nonce=0, deadline=deadline, named=wallet.address
    )

    receipt = relay(lg, action, twin, params, 0, deadline, signature)

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": wallet.address, "nonce": 0, "digest": digest}
    ]
    assert (nonce_of(lg, wallet.address), nonce_of(lg, signer)) == (1, 0)


def test_erc1271_wallet_brand_accepts_through_its_signer(
    lg: Ledger, deploy: Any, model: LocalAccount, deadline: int
) -> None:
    signer = lg.actors.brands[2]
    wallet = deploy("MockERC1271Wallet", signer.address)
    twin = lg.mint(model)
    terms = lg.terms(wallet.address, {0: 10})
    version, digest_terms = lg.offered(lg.offer(twin, terms, model))
    params = (version, digest_terms)
    signature, digest = sign_action(
        lg, signer, "AcceptLicense", twin, params, nonce=0, deadline=deadline, named=wallet.address
    )
    # The key's own signature names the key, not the wallet: the wallet holds no offer.
    own, _ = sign_action(lg, signer, "AcceptLicense", twin, params, nonce=0, deadline=deadline)
    with lg.reverts("LicenseNoOffer", twin, signer.address):
        relay(lg, "AcceptLicense", twin, params, 0, deadline, own, signer=signer.address)

    receipt = relay(
        lg, "AcceptLicense", twin, params, 0, deadline, signature, signer=wallet.address
    )

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": wallet.address, "nonce": 0, "digest": digest}
    ]
    assert lg.events(receipt, "LicenseAccepted") == [
        {"twinId": twin, "brand": wallet.address, "version": 0, "validFrom": lg.block_time(receipt)}
    ]
    assert (nonce_of(lg, wallet.address), nonce_of(lg, signer)) == (1, 0)


def test_erc1271_wallet_refusing_signatures_is_an_invalid_signer(
    lg: Ledger, deploy: Any, deadline: int
) -> None:
    signer = lg.actors.models[2]
    wallet = deploy("MockERC1271Wallet", signer.address)
    twin = lg.mint(wallet.address)
    stranger_sig, _ = sign_action(
        lg,
        lg.actors.models[0],
        "SetTwinPaused",
        twin,
        True,
        nonce=0,
        deadline=deadline,
        named=wallet.address,
    )
    with lg.reverts("TwinInvalidSigner", wallet.address):
        relay(lg, "SetTwinPaused", twin, True, 0, deadline, stranger_sig)
    signature, _ = sign_action(
        lg, signer, "SetTwinPaused", twin, True, nonce=0, deadline=deadline, named=wallet.address
    )

    lg.transact(wallet.functions.setAccepting(False), signer)

    with lg.reverts("TwinInvalidSigner", wallet.address):
        relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature)
    lg.transact(wallet.functions.setAccepting(True), signer)
    receipt = relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature)
    assert lg.fn.twinState(twin).call()[1] == lg.block_time(receipt)
    assert nonce_of(lg, wallet.address) == 1


# ---------------------------------------------------------------------- nonce cancellation


def test_invalidate_nonces_cancels_every_unused_signature_below_the_new_nonce(
    lg: Ledger, model: LocalAccount, deadline: int
) -> None:
    twin = lg.mint(model)
    signed = [
        sign_action(lg, model, "SetTwinPaused", twin, True, nonce=n, deadline=deadline)[0]
        for n in range(3)
    ]

    receipt = lg.transact(lg.fn.invalidateNonces(2), model)

    assert lg.all_events(receipt) == ["NoncesInvalidated"]
    assert lg.events(receipt, "NoncesInvalidated") == [{"account": model.address, "newNonce": 2}]
    assert nonce_of(lg, model) == 2
    for n in (0, 1):
        with lg.reverts("InvalidAccountNonce", model.address, 2):
            relay(lg, "SetTwinPaused", twin, True, n, deadline, signed[n])
    relay(lg, "SetTwinPaused", twin, True, 2, deadline, signed[2])
    assert nonce_of(lg, model) == 3


def test_invalidate_nonces_jumps_one_to_max_nonce_jump(lg: Ledger, model: LocalAccount) -> None:
    assert lg.fn.MAX_NONCE_JUMP().call() == 256
    lg.transact(lg.fn.invalidateNonces(1), model)

    for requested in (0, 1, 1 + 257, 2**256 - 1):
        with lg.reverts("NonceJumpInvalid", 1, requested):
            lg.transact(lg.fn.invalidateNonces(requested), model)

    receipt = lg.transact(lg.fn.invalidateNonces(1 + 256), model)
    assert lg.events(receipt, "NoncesInvalidated") == [{"account": model.address, "newNonce": 257}]
    assert (nonce_of(lg, model), nonce_of(lg, lg.actors.models[1])) == (257, 0)


def test_a_brand_cancels_its_signed_acceptance(
    lg: Ledger, model: LocalAccount, deadline: int
) -> None:
    brand = lg.actors.brands[0]
    twin = lg.mint(model)
    params = params_for(lg, "AcceptLicense", twin, model)
    signature, _ = sign_action(lg, brand, "AcceptLicense", twin, params, nonce=0, deadline=deadline)

    lg.transact(lg.fn.invalidateNonces(1), brand)

    with lg.reverts("InvalidAccountNonce", brand.address, 1):
        relay(lg, "AcceptLicense", twin, params, 0, deadline, signature)
    assert lg.fn.licenseVersionCount(twin, brand.address).call() == 0
    assert lg.fn.offerOf(twin, brand.address).call()[1:] == [0, params[1]]
