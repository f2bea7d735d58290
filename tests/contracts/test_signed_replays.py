"""Replays of every signed message type — the four owner actions and the attester's usage batch —
under another chain id, on another ledger (a second deployment, where the same signature is
genuinely valid and accepted), after its deadline, with its nonce (or usage ids) already used, and
after its signer lost the ownership or the role. Each replay reverts with its exact error and
changes nothing: the owner's nonce, the twin's license, pause and payees, and the brand's escrow
stay as they were.

``test_owner_signatures.py`` and ``test_settlement.py`` test each refusal on its own; this module
runs the same five replays against every message type, so that no type misses one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from web3.contract import Contract

from bridge.chain.deploy import deploy_ledger

from .conftest import ADMIN_DELAY, NOTICE_PERIOD, Chain
from .helpers import Ledger
from .test_owner_signatures import FUNCTIONS, nonce_of, params_for, sign_action

VARIANTS = ["other chain", "other ledger", "past deadline", "used nonce", "signer lost it"]
OWNER_ACTIONS = list(FUNCTIONS)
PRICE = 1_000


@pytest.fixture(scope="module")
def other_ledger(session_chain: Chain) -> Iterator[Contract]:
    """A second ledger on the same chain with the same admin, registrar and attester; removed
    (the chain reverted) when the module ends."""
    base = session_chain.snapshot()
    actors = session_chain.actors
    ledger = deploy_ledger(
        session_chain.w3,
        sender=actors.admin.address,
        admin=actors.admin.address,
        admin_delay=ADMIN_DELAY,
        notice_period=NOTICE_PERIOD,
        token=session_chain.token.address,
    ).ledger
    for role, account in (("REGISTRAR_ROLE", actors.registrar), ("ATTESTER_ROLE", actors.attester)):
        role_id = getattr(ledger.functions, role)().call()
        ledger.functions.grantRole(role_id, account.address).transact(
            {"from": actors.admin.address}
        )
    yield ledger
    session_chain.revert(base)


@pytest.fixture
def other(tester_chain: Chain, other_ledger: Contract) -> Ledger:
    """The driver of the second ledger (reverted with ``tester_chain`` after each test)."""
    return Ledger(tester_chain.w3, other_ledger, tester_chain.token, tester_chain.actors)


def _state(lg: Ledger, twin: int) -> Any:
    brands = [b.address for b in lg.actors.brands]
    return (
        [lg.fn.licenseVersionCount(twin, b).call() for b in brands],
        [lg.fn.isPausedAt(twin, lg.now()).call()],
        lg.fn.payeesOf(twin).call(),
        lg.fn.twinState(twin).call(),
    )


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("action", OWNER_ACTIONS)
def test_owner_action_replays_revert(lg: Ledger, other: Ledger, action: str, variant: str) -> None:
    model, heir = lg.actors.models[0], lg.actors.models[1]
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
        lg, model, action, twin, params, nonce=0, deadline=deadline, **domain
    )
    call = getattr(lg.fn, FUNCTIONS[action])(twin, params, 0, deadline, signature)

    nonce = 0
    error: tuple[Any, ...]
    if variant in ("other chain", "other ledger"):
        error = ("TwinInvalidSigner", model.address)
        if variant == "other ledger":  # valid where it was signed for
            other.transact(
                getattr(other.fn, FUNCTIONS[action])(twin, params, 0, deadline, signature),
                lg.actors.outsider,
            )
            assert nonce_of(other, model) == 1
    elif variant == "past deadline":
        lg.warp(deadline + 1)
        error = ("TwinSignatureExpired", deadline)
    elif variant == "used nonce":
        lg.transact(call, lg.actors.outsider)
        nonce = 1
        error = ("InvalidAccountNonce", model.address, 1)
    else:
        lg.transact(lg.fn.transferFrom(model.address, heir.address, twin), model)
        error = ("TwinInvalidSigner", heir.address)
    before = _state(lg, twin)

    with lg.reverts(*error):
        lg.transact(call, lg.actors.outsider)
    assert _state(lg, twin) == before
    assert nonce_of(lg, model) == nonce
    assert nonce_of(lg, heir) == 0


@pytest.mark.parametrize("variant", VARIANTS)
def test_usage_batch_replays_revert(lg: Ledger, other: Ledger, variant: str) -> None:
    model, brand, attester = lg.actors.models[0], lg.actors.brands[0], lg.actors.attester
    twin = lg.mint(model)
    lg.grant(twin, lg.terms(brand, {0: PRICE}), model)
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

    error: tuple[Any, ...]
    if variant in ("other chain", "other ledger"):
        assert recovered != attester.address
        error = ("SettlementInvalidAttester", recovered)
        if variant == "other ledger":  # valid where it was signed for
            receipt = other.transact(other.fn.settle(batch, signature), lg.actors.outsider)
            assert other.events(receipt, "UsagesSettled")[0]["attester"] == attester.address
    elif variant == "past deadline":
        lg.warp(deadline + 1)
        error = ("SettlementExpired", deadline)
    elif variant == "used nonce":
        receipt = lg.transact(lg.fn.settle(batch, signature), lg.actors.outsider)
        assert lg.events(receipt, "UsagesSettled")[0]["paid"] == PRICE
        error = ("UsageAlreadyProcessed", 4_242)
    else:
        lg.transact(
            lg.fn.rotateAttester(attester.address, lg.actors.payees[2].address), lg.actors.admin
        )
        error = ("SettlementInvalidAttester", attester.address)
    escrow = lg.brand_account(brand)
    processed = lg.fn.isUsageProcessed(4_242).call()

    with lg.reverts(*error):
        lg.transact(lg.fn.settle(batch, signature), lg.actors.outsider)
    assert lg.brand_account(brand) == escrow
    assert lg.fn.isUsageProcessed(4_242).call() == processed == (variant == "used nonce")
