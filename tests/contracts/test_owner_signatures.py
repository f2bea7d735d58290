"""Owner actions on the strength of the owner's EIP-712 signature, relayed by anyone:
grantLicenseBySig, revokeLicenseBySig, setTwinPausedBySig and setPayeesBySig, with nonces,
deadlines, domain separation, ownership changes and ERC-1271 smart-wallet owners."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from bridge.domain import eip712

from .helpers import DAY, Ledger

ACTIONS = ["GrantLicense", "RevokeLicense", "SetTwinPaused", "SetPayees"]
FUNCTIONS = {
    "GrantLicense": "grantLicenseBySig",
    "RevokeLicense": "revokeLicenseBySig",
    "SetTwinPaused": "setTwinPausedBySig",
    "SetPayees": "setPayeesBySig",
}


def terms_message(terms: tuple[Any, ...]) -> dict[str, Any]:
    brand, valid_from, valid_until, max_uses, purpose, consent, prices = terms
    return {
        "brand": brand,
        "validFrom": valid_from,
        "validUntil": valid_until,
        "maxUses": max_uses,
        "purposeHash": purpose,
        "consentHash": consent,
        "prices": [{"usageType": t, "price": p} for t, p in prices],
    }


def message_of(action: str, twin: int, params: Any, nonce: int, deadline: int) -> dict[str, Any]:
    body: dict[str, Any] = {"twinId": twin}
    if action == "GrantLicense":
        body["terms"] = terms_message(params)
    elif action == "RevokeLicense":
        body["brand"] = params
    elif action == "SetTwinPaused":
        body["paused"] = params
    else:
        body["payees"] = [{"account": a, "bps": b} for a, b in params]
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
) -> tuple[bytes, bytes]:
    """``(signature, digest)`` of ``action`` on ``twin`` signed by ``signer`` for the ledger's
    domain (or another chain id / verifying contract)."""
    data = eip712.typed_data(
        action,
        message_of(action, twin, params, nonce, deadline),
        chain_id=lg.w3.eth.chain_id if chain_id is None else chain_id,
        ledger=lg.contract.address if ledger is None else ledger,
    )
    signable = encode_typed_data(full_message=data)
    digest = keccak(b"\x19" + signable.version + signable.header + signable.body)
    return eip712.sign(signer, data), digest


def relay(
    lg: Ledger,
    action: str,
    twin: int,
    params: Any,
    nonce: int,
    deadline: int,
    signature: bytes,
    sender: LocalAccount | None = None,
) -> Any:
    call = getattr(lg.fn, FUNCTIONS[action])(twin, params, nonce, deadline, signature)
    return lg.transact(call, sender or lg.actors.outsider)


def nonce_of(lg: Ledger, account: LocalAccount | str) -> int:
    address = account if isinstance(account, str) else account.address
    return int(lg.fn.nonces(address).call())


def params_for(lg: Ledger, action: str, twin: int, owner: LocalAccount | str) -> Any:
    """Parameters with which ``action`` succeeds on a fresh ``twin`` (granting a license first
    when the action is a revocation)."""
    brand = lg.actors.brands[0]
    if action == "GrantLicense":
        return lg.terms(brand, {0: 10, 1: 2**50, 2: 3})
    if action == "RevokeLicense":
        lg.grant(twin, lg.terms(brand), owner)
        return brand.address
    if action == "SetTwinPaused":
        return True
    return [(lg.actors.payees[0].address, 1_500), (lg.actors.payees[1].address, 500)]


def tampered(lg: Ledger, action: str, params: Any) -> Any:
    """``params`` changed in one field, keeping the action otherwise valid."""
    if action == "GrantLicense":
        terms = list(params)
        terms[6] = [(0, 11), *terms[6][1:]]
        return tuple(terms)
    if action == "RevokeLicense":
        return lg.actors.brands[1].address
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


def test_grant_license_by_signature_relayed_by_an_outsider(
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
        lg, model, "GrantLicense", twin, terms, nonce=0, deadline=deadline
    )

    receipt = relay(lg, "GrantLicense", twin, terms, 0, deadline, signature)

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": model.address, "nonce": 0, "digest": digest}
    ]
    [event] = lg.events(receipt, "LicenseGranted")
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
    }
    names = lg.all_events(receipt)
    assert names.index("SignedActionUsed") < names.index("LicenseGranted")
    assert nonce_of(lg, model) == 1
    assert nonce_of(lg, lg.actors.outsider) == 0
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


def test_revoke_license_by_signature(lg: Ledger, model: LocalAccount, deadline: int) -> None:
    brand = lg.actors.brands[0]
    twin = lg.mint(model)
    lg.grant(twin, lg.terms(brand), model)
    signature, digest = sign_action(
        lg, model, "RevokeLicense", twin, brand.address, nonce=0, deadline=deadline
    )

    receipt = relay(lg, "RevokeLicense", twin, brand.address, 0, deadline, signature)

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
    signature, _ = sign_action(lg, model, action, twin, params, nonce=0, deadline=deadline)
    relay(lg, action, twin, params, 0, deadline, signature)

    with lg.reverts("InvalidAccountNonce", model.address, 1):
        relay(lg, action, twin, params, 0, deadline, signature)
    assert nonce_of(lg, model) == 1


@pytest.mark.parametrize("action", ACTIONS)
def test_signature_with_a_future_nonce_is_refused(
    lg: Ledger, model: LocalAccount, deadline: int, action: str
) -> None:
    twin = lg.mint(model)
    params = params_for(lg, action, twin, model)
    signature, _ = sign_action(lg, model, action, twin, params, nonce=1, deadline=deadline)

    with lg.reverts("InvalidAccountNonce", model.address, 0):
        relay(lg, action, twin, params, 1, deadline, signature)


@pytest.mark.parametrize("action", ACTIONS)
def test_expired_signature_is_refused(lg: Ledger, model: LocalAccount, action: str) -> None:
    twin = lg.mint(model)
    params = params_for(lg, action, twin, model)
    deadline = lg.next_time() - 1
    signature, _ = sign_action(lg, model, action, twin, params, nonce=0, deadline=deadline)

    with lg.reverts("TwinSignatureExpired", deadline):
        relay(lg, action, twin, params, 0, deadline, signature)
    assert nonce_of(lg, model) == 0


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
    signed_twin, signed_params, signed_deadline, signer = twin, params, deadline, model
    domain: dict[str, Any] = {}
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
    signature, _ = sign_action(
        lg, signer, action, signed_twin, signed_params, nonce=0, deadline=signed_deadline, **domain
    )
    if fault == "empty signature":
        signature = b""

    with lg.reverts("TwinInvalidSigner", model.address):
        relay(lg, action, twin, params, 0, deadline, signature)
    assert nonce_of(lg, model) == 0


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


def test_previous_owner_signature_is_refused_after_a_transfer(
    lg: Ledger, model: LocalAccount, deadline: int
) -> None:
    new_owner = lg.actors.models[1]
    twin = lg.mint(model)
    signature, _ = sign_action(lg, model, "SetTwinPaused", twin, True, nonce=0, deadline=deadline)
    lg.transact(lg.fn.transferFrom(model.address, new_owner.address, twin), model)

    with lg.reverts("TwinInvalidSigner", new_owner.address):
        relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature)

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
    signature, _ = sign_action(lg, model, action, twin + 1, params, nonce=0, deadline=deadline)

    with lg.reverts("ERC721NonexistentToken", twin + 1):
        relay(lg, action, twin + 1, params, 0, deadline, signature)


# ---------------------------------------------------------------------- ERC-1271 owners


@pytest.mark.parametrize("action", ACTIONS)
def test_erc1271_wallet_owner_acts_through_its_signer(
    lg: Ledger, deploy: Any, deadline: int, action: str
) -> None:
    signer = lg.actors.models[2]
    wallet = deploy("MockERC1271Wallet", signer.address)
    twin = lg.mint(wallet.address)
    if action == "RevokeLicense":
        brand = lg.actors.brands[0]
        grant = lg.fn.grantLicense(twin, lg.terms(brand))
        lg.transact(
            wallet.functions.execute(lg.contract.address, grant._encode_transaction_data()), signer
        )
        params: Any = brand.address
    else:
        params = params_for(lg, action, twin, wallet.address)
    signature, digest = sign_action(lg, signer, action, twin, params, nonce=0, deadline=deadline)

    receipt = relay(lg, action, twin, params, 0, deadline, signature)

    assert lg.events(receipt, "SignedActionUsed") == [
        {"signer": wallet.address, "nonce": 0, "digest": digest}
    ]
    assert (nonce_of(lg, wallet.address), nonce_of(lg, signer)) == (1, 0)


def test_erc1271_wallet_refusing_signatures_is_an_invalid_signer(
    lg: Ledger, deploy: Any, deadline: int
) -> None:
    signer = lg.actors.models[2]
    wallet = deploy("MockERC1271Wallet", signer.address)
    twin = lg.mint(wallet.address)
    stranger_sig, _ = sign_action(
        lg, lg.actors.models[0], "SetTwinPaused", twin, True, nonce=0, deadline=deadline
    )
    with lg.reverts("TwinInvalidSigner", wallet.address):
        relay(lg, "SetTwinPaused", twin, True, 0, deadline, stranger_sig)
    signature, _ = sign_action(lg, signer, "SetTwinPaused", twin, True, nonce=0, deadline=deadline)

    lg.transact(wallet.functions.setAccepting(False), signer)

    with lg.reverts("TwinInvalidSigner", wallet.address):
        relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature)
    lg.transact(wallet.functions.setAccepting(True), signer)
    receipt = relay(lg, "SetTwinPaused", twin, True, 0, deadline, signature)
    assert lg.fn.twinState(twin).call()[1] == lg.block_time(receipt)
    assert nonce_of(lg, wallet.address) == 1
