"""Replays of every signed message type (the owner's four actions, the brand's acceptance and the
attester's usage batch) under another chain id, on another ledger (a second deployment, where the
same signature is genuinely valid and accepted), after its deadline, with its nonce (or usage ids)
already used, after its signer lost the ownership, the role or the offer it accepted, and from
another ERC-1271 wallet of the same key. Each replay reverts with its exact error and changes
nothing: the signer's nonce, the twin's licenses and offers, pause and payees, and the brand's
escrow stay as they were.

``test_owner_signatures.py`` and ``test_settlement.py`` test each refusal on its own; this module
runs the same replays against every message type, so that no type misses one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from web3.contract import Contract

from .conftest import ATTESTER_ROLE, REGISTRAR_ROLE, Chain, deploy_system
from .helpers import Ledger
from .test_owner_signatures import (
    ACTIONS,
    call_of,
    nonce_of,
    params_for,
    sign_action,
    signer_for,
)

VARIANTS = ["other chain", "other ledger", "past deadline", "used nonce", "signer lost it"]
PRICE = 1_000


@pytest.fixture(scope="module")
def other_system(session_chain: Chain) -> Iterator[tuple[Contract, Contract]]:
    """A second manager and ledger on the same chain, sharing the token, with the same admin,
    registrar and attester; removed (the chain reverted) when the module ends."""
    base = session_chain.snapshot()
    actors = session_chain.actors
    system = deploy_system(
        session_chain.w3,
        admin=actors.admin.address,
        members={
            REGISTRAR_ROLE: [actors.registrar.address],
            ATTESTER_ROLE: [actors.attester.address],
        },
        token=session_chain.token,
    )
    for brand in actors.brands:
        session_chain.token.functions.approve(system.ledger.address, 2**256 - 1).transact(
            {"from": brand.address}
        )
    yield system.ledger, system.manager
    session_chain.revert(base)


@pytest.fixture
def other(tester_chain: Chain, other_system: tuple[Contract, Contract]) -> Ledger:
    """The driver of the second ledger (reverted with ``tester_chain`` after each test)."""
    ledger, manager = other_system
    return Ledger(tester_chain.w3, ledger, tester_chain.token, tester_chain.actors, manager)


def _state(lg: Ledger, twin: int) -> Any:
    brands = [b.address for b in lg.actors.brands]
    return (
        [lg.fn.licenseVersionCount(twin, b).call() for b in brands],
        [_offer(lg, twin, b) for b in brands],
        [lg.fn.isPausedAt(twin, lg.now()).call()],
        lg.fn.payeesOf(twin).call(),
        lg.fn.twinState(twin).call(),
    )


def _offer(lg: Ledger, twin: int, brand: str) -> Any:
    try:
        return lg.fn.offerOf(twin, brand).call()[1:]
    except Exception:  # LicenseNoOffer
        return None


def _lose_it(lg: Ledger, action: str, twin: int, params: Any) -> tuple[Any, ...]:
    """Takes away what the signer's message relied on; returns the error its replay meets."""
    model, heir = lg.actors.models[0], lg.actors.models[1]
    if action == "AcceptLicense":
        # The owner replaced the offer: same number, other terms. The acceptance names the old.
        brand = lg.actors.brands[0]
        lg.offer(twin, lg.terms(brand, {0: 99}), model)
        return ("LicenseOfferMismatch", twin, brand.address, params[0], params[1])
    lg.transact(lg.fn.transferFrom(model.address, heir.address, twin), model)
    return ("TwinInvalidSigner", heir.address)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("action", ACTIONS)
def test_signed_action_replays_revert(lg: Ledger, other: Ledger, action: str, variant: str) -> None:
    model, heir = lg.actors.models[0], lg.actors.models[1]
    signer = signer_for(lg, action, model)
    twin = lg.mint(model)
    assert other.mint(model) == twin  # the same twin id on both ledgers
    params = params_for(lg, action, twin, model)
    assert params_for(other, action, twin, model) == params
    deadline = lg.now() + 600
    domain: dict[str, Any] = {}
    if variant == "other chain":
        domain["chain_id"] = lg.w3.eth.chain_id + 1
    elif variant == "other ledger":
        domain["ledger"] = other.contract.address
    signature, _ = sign_action(
        lg, signer, action, twin, params, nonce=0, deadline=deadline, **domain
    )
    call = call_of(lg, action, signer.address, twin, params, 0, deadline, signature)

    nonce = 0
    error: tuple[Any, ...]
    if variant in ("other chain", "other ledger"):
        error = ("TwinInvalidSigner", signer.address)
        if variant == "other ledger":  # valid where it was signed for
            other.transact(
                call_of(other, action, signer.address, twin, params, 0, deadline, signature),
                lg.actors.outsider,
            )
            assert nonce_of(other, signer) == 1
    elif variant == "past deadline":
        lg.warp(deadline + 1)
        error = ("TwinSignatureExpired", deadline)
    elif variant == "used nonce":
        lg.transact(call, lg.actors.outsider)
        nonce = 1
        error = ("InvalidAccountNonce", signer.address, 1)
    else:
        error = _lose_it(lg, action, twin, params)
    before = _state(lg, twin)

    with lg.reverts(*error):
        lg.transact(call, lg.actors.outsider)
    assert _state(lg, twin) == before
    assert nonce_of(lg, signer) == nonce
    assert nonce_of(lg, heir) == 0


@pytest.mark.parametrize("action", ACTIONS)
def test_signature_for_one_wallet_does_not_act_for_another_wallet_of_the_same_key(
    lg: Ledger, deploy: Any, action: str
) -> None:
    """The cross-account replay ERC-7739 addresses: two ERC-1271 wallets answer for one key; a
    message signed for the first names it, so the second cannot use it."""
    key = lg.actors.models[2] if action != "AcceptLicense" else lg.actors.brands[2]
    first, second = (deploy("MockERC1271Wallet", key.address) for _ in range(2))
    owner = lg.actors.models[0]
    if action == "AcceptLicense":
        twin = lg.mint(owner)
        terms_first = lg.terms(first.address, {0: 10}, valid_until=4_000_000_000)
        terms_second = lg.terms(second.address, {0: 10}, valid_until=4_000_000_000)
        version, digest = lg.offered(lg.offer(twin, terms_first, owner))
        second_version, second_digest = lg.offered(lg.offer(twin, terms_second, owner))
        assert second_version == version
        params: Any = (version, digest)
        own_params: Any = (version, second_digest)
        victim = second.address
    else:
        twin = lg.mint(first.address)
        params = params_for(lg, action, twin, first.address) if action != "RevokeLicense" else None
        if action == "RevokeLicense":
            brand = lg.actors.brands[0]
            terms = lg.terms(brand)
            offer = lg.fn.offerLicense(twin, terms)
            lg.transact(
                first.functions.execute(lg.contract.address, offer._encode_transaction_data()),
                key,
            )
            lg.accept(twin, 0, _hash(lg, terms), brand)
            params = (brand.address, 0)
        move = lg.fn.transferFrom(first.address, second.address, twin)
        lg.transact(
            first.functions.execute(lg.contract.address, move._encode_transaction_data()), key
        )
        victim = second.address
        own_params = params
    deadline = lg.now() + 600
    signature, _ = sign_action(
        lg, key, action, twin, params, nonce=0, deadline=deadline, named=first.address
    )
    before = _state(lg, twin)

    with lg.reverts("TwinInvalidSigner", victim):
        lg.transact(
            call_of(lg, action, victim, twin, params, 0, deadline, signature), lg.actors.outsider
        )
    assert _state(lg, twin) == before
    assert (nonce_of(lg, first.address), nonce_of(lg, second.address)) == (0, 0)
    # Signed for the second wallet, the same action goes through.
    signature, _ = sign_action(
        lg, key, action, twin, own_params, nonce=0, deadline=deadline, named=victim
    )
    receipt = lg.transact(
        call_of(lg, action, victim, twin, own_params, 0, deadline, signature), lg.actors.outsider
    )
    assert lg.events(receipt, "SignedActionUsed")[0]["signer"] == victim


def _hash(lg: Ledger, terms: Any) -> bytes:
    return bytes(lg.fn.hashLicenseTerms(terms).call())


@pytest.mark.parametrize("variant", VARIANTS)
def test_usage_batch_replays_revert(lg: Ledger, other: Ledger, variant: str) -> None:
    model, brand, attester = lg.actors.models[0], lg.actors.brands[0], lg.actors.attester
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: PRICE}), model)
    lg.deposit(brand, 100 * PRICE)
    lg.advance(5)
    usage = lg.usage(twin, used_at=lg.now(), usage_id=4_242)
    groups = [(brand.address, [usage])]
    deadline = lg.now() + 600
    domain: dict[str, Any] = {}
    if variant == "other chain":
        domain["chain_id"] = lg.w3.eth.chain_id + 1
    elif variant == "other ledger":
        domain["ledger"] = other.contract.address
    batch, signature = lg.sign_batch(groups, deadline=deadline, **domain)
    recovered = Account._recover_hash(
        bytes(lg.fn.hashUsageBatch(batch).call()), signature=signature
    )
    call = lg.fn.settle(batch, attester.address, signature)

    error: tuple[Any, ...]
    if variant in ("other chain", "other ledger"):
        assert recovered != attester.address
        error = ("SettlementInvalidAttester", attester.address)
        if variant == "other ledger":  # valid where it was signed for
            receipt = other.transact(
                other.fn.settle(batch, attester.address, signature), lg.actors.outsider
            )
            assert other.events(receipt, "UsagesSettled")[0]["attester"] == attester.address
    elif variant == "past deadline":
        lg.warp(deadline + 1)
        error = ("SettlementExpired", deadline)
    elif variant == "used nonce":
        receipt = lg.transact(call, lg.actors.outsider)
        assert lg.events(receipt, "UsagesSettled")[0]["paid"] == PRICE
        error = ("UsageAlreadyProcessed", brand.address, 4_242)
    else:
        # Rotation: a new attester is granted, the old one revoked.
        lg.grant_role(ATTESTER_ROLE, lg.actors.payees[2])
        lg.revoke_role(ATTESTER_ROLE, attester)
        error = ("SettlementInvalidAttester", attester.address)
    escrow = lg.brand_account(brand)
    processed = lg.fn.isUsageProcessed(brand.address, 4_242).call()

    with lg.reverts(*error):
        lg.transact(call, lg.actors.outsider)
    assert lg.brand_account(brand) == escrow
    assert (
        lg.fn.isUsageProcessed(brand.address, 4_242).call()
        == processed
        == (variant == "used nonce")
    )
