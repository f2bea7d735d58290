"""Twins: minting, metadata, transfers (licenses, royalties and payees follow the rules), the
per-twin pause with its history, and the royalty split between payees and the owner."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from .helpers import CONSENT_RECORD, DAY, Ledger, Outcome

ZERO = "0x0000000000000000000000000000000000000000"
FUNDS = 10**13


def actor(lg: Ledger, name: str) -> LocalAccount:
    """An actor by name: a role account, ``model`` or ``brand``."""
    if name == "model":
        return lg.actors.models[0]
    if name == "brand":
        return lg.actors.brands[0]
    return getattr(lg.actors, name)


def licensed_twin(lg: Ledger, owner: LocalAccount, brand: LocalAccount) -> int:
    """A twin of ``owner`` licensed to ``brand`` at 1 unit per use (type 0), escrow funded."""
    twin = lg.mint(owner)
    lg.offer_and_accept(twin, lg.terms(brand, {0: 1}, valid_until=lg.now() + 365 * DAY), owner)
    lg.deposit(brand, FUNDS)
    return twin


def accrue(lg: Ledger, twin: int, brand: LocalAccount, amount: int) -> Any:
    """Settles ``amount`` paid uses (quantity) of ``twin``: ``amount`` accrues to the twin."""
    receipt = lg.settle([(brand.address, [lg.usage(twin, used_at=lg.now(), quantity=amount)])])
    [(_, outcome)] = lg.outcomes(receipt)
    assert outcome == Outcome.PAID
    return receipt


def distributed(lg: Ledger, receipt: Any) -> list[tuple[int, str, int]]:
    return [
        (e["twinId"], e["payee"], e["amount"]) for e in lg.events(receipt, "RoyaltiesDistributed")
    ]


def payees_set(lg: Ledger, receipt: Any) -> list[tuple[int, list[tuple[str, int]]]]:
    """``(twinId, [(account, bps)])`` of every PayeesSet event (structs decode as dicts)."""
    return [
        (e["twinId"], [(p["account"], p["bps"]) for p in e["payees"]])
        for e in lg.events(receipt, "PayeesSet")
    ]


def claimable(lg: Ledger, account: LocalAccount | str) -> int:
    address = account if isinstance(account, str) else account.address
    return int(lg.fn.claimable(address).call())


# ====================================================================== mint


def test_mint_assigns_sequential_ids_from_one(lg: Ledger) -> None:
    models = lg.actors.models
    ids = [lg.mint(models[0]), lg.mint(models[1]), lg.mint(models[0])]

    assert ids == [1, 2, 3]
    assert [lg.fn.ownerOf(i).call() for i in ids] == [
        models[0].address,
        models[1].address,
        models[0].address,
    ]
    assert lg.fn.balanceOf(models[0].address).call() == 2
    assert lg.fn.balanceOf(models[1].address).call() == 1


def test_mint_emits_twin_minted_and_transfer(lg: Ledger) -> None:
    model = lg.actors.models[1]
    consent = keccak(text="consent of model 1")
    lg.mint(lg.actors.models[0])

    receipt = lg.transact(lg.fn.mint(model.address, "ipfs://twin-2", consent), lg.actors.registrar)

    assert lg.events(receipt, "TwinMinted") == [
        {"twinId": 2, "owner": model.address, "uri": "ipfs://twin-2", "consentHash": consent}
    ]
    assert lg.events(receipt, "Transfer") == [{"from": ZERO, "to": model.address, "tokenId": 2}]
    names = lg.all_events(receipt)
    assert names.index("TwinMinted") < names.index("Transfer")


def test_mint_stores_uri_and_consent_hash_per_twin(lg: Ledger) -> None:
    first = lg.mint(lg.actors.models[0], "ipfs://first", CONSENT_RECORD)
    second_consent = keccak(text="second consent")
    second = lg.mint(lg.actors.models[1], "ar://second", second_consent)

    assert lg.fn.tokenURI(first).call() == "ipfs://first"
    assert lg.fn.tokenURI(second).call() == "ar://second"
    assert lg.fn.consentHashOf(first).call() == CONSENT_RECORD
    assert lg.fn.consentHashOf(second).call() == second_consent


@pytest.mark.parametrize("twin_id", [0, 2, 2**64])
def test_views_of_a_nonexistent_twin_revert(lg: Ledger, twin_id: int) -> None:
    lg.mint(lg.actors.models[0])

    with lg.reverts("ERC721NonexistentToken", twin_id):
        lg.fn.tokenURI(twin_id).call()
    with lg.reverts("ERC721NonexistentToken", twin_id):
        lg.fn.consentHashOf(twin_id).call()
    with lg.reverts("ERC721NonexistentToken", twin_id):
        lg.fn.ownerOf(twin_id).call()


@pytest.mark.parametrize("name", ["admin", "attester", "pauser", "outsider", "model", "brand"])
def test_mint_refused_without_registrar_role(lg: Ledger, name: str) -> None:
    caller = actor(lg, name)
    assert lg.role("REGISTRAR_ROLE") == 1
    assert not lg.has_role(1, caller)

    with lg.reverts("AccessManagedUnauthorized", caller.address):
        lg.transact(lg.fn.mint(lg.actors.models[0].address, "ipfs://x", CONSENT_RECORD), caller)

    assert lg.mint(lg.actors.models[0]) == 1  # the refused call consumed no id


def test_mint_to_a_contract_without_receiver_hook_reverts(lg: Ledger) -> None:
    not_a_receiver = lg.token.address

    with lg.reverts("ERC721InvalidReceiver", not_a_receiver):
        lg.transact(lg.fn.mint(not_a_receiver, "ipfs://x", CONSENT_RECORD), lg.actors.registrar)

    assert lg.mint(lg.actors.models[0]) == 1


def test_mint_to_an_erc1271_wallet_succeeds(lg: Ledger, deploy: Any) -> None:
    wallet = deploy("MockERC1271Wallet", lg.actors.models[0].address)

    twin = lg.mint(wallet.address)

    assert lg.fn.ownerOf(twin).call() == wallet.address
    assert lg.fn.balanceOf(wallet.address).call() == 1


# ====================================================================== transfers


def test_license_survives_a_transfer_and_keeps_paying(lg: Ledger) -> None:
    old, new, brand = lg.actors.models[0], lg.actors.models[1], lg.actors.brands[0]
    twin = licensed_twin(lg, old, brand)
    license_before = lg.fn.licenseOf(twin, brand.address).call()

    lg.transact(lg.fn.safeTransferFrom(old.address, new.address, twin), old)

    assert lg.fn.licenseOf(twin, brand.address).call() == license_before
    receipt = accrue(lg, twin, brand, 700)
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 700
    distribution = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)
    assert distributed(lg, distribution) == [(twin, new.address, 700)]
    assert (claimable(lg, new), claimable(lg, old)) == (700, 0)


def test_transfer_pays_royalties_accrued_before_it_to_the_old_owner(lg: Ledger) -> None:
    old, new, brand = lg.actors.models[0], lg.actors.models[1], lg.actors.brands[0]
    twin = licensed_twin(lg, old, brand)
    accrue(lg, twin, brand, 1_234)

    receipt = lg.transact(lg.fn.transferFrom(old.address, new.address, twin), old)

    assert distributed(lg, receipt) == [(twin, old.address, 1_234)]
    assert lg.events(receipt, "Transfer") == [
        {"from": old.address, "to": new.address, "tokenId": twin}
    ]
    names = lg.all_events(receipt)
    assert names.index("RoyaltiesDistributed") < names.index("Transfer")
    assert lg.fn.twinState(twin).call()[0] == 0
    assert claimable(lg, old) == 1_234

    accrue(lg, twin, brand, 66)
    later = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)
    assert distributed(lg, later) == [(twin, new.address, 66)]
    assert (claimable(lg, old), claimable(lg, new)) == (1_234, 66)
    paid = lg.transact(lg.fn.withdraw([]), old)
    assert lg.events(paid, "PayeePaid") == [
        {"payee": old.address, "caller": old.address, "amount": 1_234}
    ]


def test_payees_survive_a_transfer_and_share_before_and_after(lg: Ledger) -> None:
    old, new, brand = lg.actors.models[0], lg.actors.models[1], lg.actors.brands[0]
    payee = lg.actors.payees[0]
    twin = licensed_twin(lg, old, brand)
    lg.transact(lg.fn.setPayees(twin, [(payee.address, 2_500)]), old)
    accrue(lg, twin, brand, 1_001)

    receipt = lg.transact(lg.fn.transferFrom(old.address, new.address, twin), old)

    assert distributed(lg, receipt) == [(twin, payee.address, 250), (twin, old.address, 751)]
    assert lg.fn.payeesOf(twin).call() == [(payee.address, 2_500)]
    accrue(lg, twin, brand, 400)
    later = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)
    assert distributed(lg, later) == [(twin, payee.address, 100), (twin, new.address, 300)]
    assert (claimable(lg, payee), claimable(lg, old), claimable(lg, new)) == (350, 751, 300)


def test_transfer_with_nothing_accrued_distributes_nothing(lg: Ledger) -> None:
    old, new = lg.actors.models[0], lg.actors.models[1]
    twin = lg.mint(old)

    receipt = lg.transact(lg.fn.transferFrom(old.address, new.address, twin), old)

    assert lg.all_events(receipt) == ["Transfer"]
    assert lg.fn.ownerOf(twin).call() == new.address


# ====================================================================== pause


def test_pause_and_unpause_emit_their_block_times(lg: Ledger) -> None:
    model = lg.actors.models[0]
    twin = lg.mint(model)
    assert lg.fn.twinState(twin).call() == [0, 0, 0]

    paused = lg.transact(lg.fn.setTwinPaused(twin, True), model)
    paused_at = lg.block_time(paused)
    assert lg.events(paused, "TwinPaused") == [{"twinId": twin, "at": paused_at}]
    assert lg.fn.twinState(twin).call() == [0, paused_at, 0]
    lg.advance(100)

    unpaused = lg.transact(lg.fn.setTwinPaused(twin, False), model)
    unpaused_at = lg.block_time(unpaused)
    assert unpaused_at > paused_at + 100
    assert lg.events(unpaused, "TwinUnpaused") == [{"twinId": twin, "at": unpaused_at}]
    assert lg.fn.twinState(twin).call() == [0, 0, 1]


def test_is_paused_at_follows_the_current_pause(lg: Ledger) -> None:
    model = lg.actors.models[0]
    twin = lg.mint(model)
    assert not lg.fn.isPausedAt(twin, lg.now()).call()

    paused_at = lg.block_time(lg.transact(lg.fn.setTwinPaused(twin, True), model))

    assert not lg.fn.isPausedAt(twin, paused_at - 1).call()
    assert lg.fn.isPausedAt(twin, paused_at).call()
    assert lg.fn.isPausedAt(twin, paused_at + 10 * DAY).call()


def test_pause_state_must_change(lg: Ledger) -> None:
    model = lg.actors.models[0]
    twin = lg.mint(model)

    with lg.reverts("TwinPauseUnchanged", twin, False):
        lg.transact(lg.fn.setTwinPaused(twin, False), model)
    lg.transact(lg.fn.setTwinPaused(twin, True), model)
    with lg.reverts("TwinPauseUnchanged", twin, True):
        lg.transact(lg.fn.setTwinPaused(twin, True), model)


def test_operator_may_pause_and_others_may_not(lg: Ledger) -> None:
    model, operator = lg.actors.models[0], lg.actors.payees[0]
    twin = lg.mint(model)

    for stranger in (lg.actors.outsider, lg.actors.admin, lg.actors.pauser, lg.actors.models[1]):
        with lg.reverts("ERC721InsufficientApproval", stranger.address, twin):
            lg.transact(lg.fn.setTwinPaused(twin, True), stranger)
    with lg.reverts("ERC721NonexistentToken", twin + 1):
        lg.transact(lg.fn.setTwinPaused(twin + 1, True), model)

    lg.transact(lg.fn.setApprovalForAll(operator.address, True), model)
    receipt = lg.transact(lg.fn.setTwinPaused(twin, True), operator)
    assert lg.events(receipt, "TwinPaused") == [{"twinId": twin, "at": lg.block_time(receipt)}]


def test_uses_at_or_after_the_pause_are_refused_and_earlier_ones_paid(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    twin = licensed_twin(lg, model, brand)
    lg.advance(10)
    paused_at = lg.block_time(lg.transact(lg.fn.setTwinPaused(twin, True), model))
    lg.advance(50)

    receipt = lg.settle(
        [
            (
                brand.address,
                [
                    lg.usage(twin, used_at=paused_at - 1, quantity=3),
                    lg.usage(twin, used_at=paused_at, quantity=5),
                    lg.usage(twin, used_at=paused_at + 40, quantity=7),
                ],
            )
        ]
    )

    assert [o for _, o in lg.outcomes(receipt)] == [
        Outcome.PAID,
        Outcome.TWIN_PAUSED,
        Outcome.TWIN_PAUSED,
    ]
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == 3
    assert lg.fn.twinState(twin).call() == [3, paused_at, 0]


def test_uses_inside_any_finished_pause_stay_refused(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    twin = licensed_twin(lg, model, brand)
    intervals = []
    for _ in range(3):
        lg.advance(100)
        start = lg.block_time(lg.transact(lg.fn.setTwinPaused(twin, True), model))
        lg.advance(50)
        end = lg.block_time(lg.transact(lg.fn.setTwinPaused(twin, False), model))
        intervals.append((start, end))
    lg.advance(100)
    (s1, e1), (s2, e2), (s3, e3) = intervals
    times = [s1 - 1, s1, e1 - 1, e1, s2 - 1, s2, s2 + 20, e2 - 1, e2, s3, e3 - 1, e3, e3 + 50]
    expected = [
        Outcome.PAID,
        Outcome.TWIN_PAUSED,
        Outcome.TWIN_PAUSED,
        Outcome.PAID,
        Outcome.PAID,
        Outcome.TWIN_PAUSED,
        Outcome.TWIN_PAUSED,
        Outcome.TWIN_PAUSED,
        Outcome.PAID,
        Outcome.TWIN_PAUSED,
        Outcome.TWIN_PAUSED,
        Outcome.PAID,
        Outcome.PAID,
    ]

    receipt = lg.settle([(brand.address, [lg.usage(twin, used_at=t) for t in times])])

    assert [o for _, o in lg.outcomes(receipt)] == expected
    assert lg.events(receipt, "UsagesSettled")[0]["paid"] == expected.count(Outcome.PAID)
    assert [lg.fn.isPausedAt(twin, t).call() for t in times] == [
        o == Outcome.TWIN_PAUSED for o in expected
    ]
    assert lg.fn.twinState(twin).call() == [expected.count(Outcome.PAID), 0, 3]


def test_pause_of_one_twin_leaves_others_payable(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    paused_twin = licensed_twin(lg, model, brand)
    other_twin = licensed_twin(lg, model, brand)
    lg.transact(lg.fn.setTwinPaused(paused_twin, True), model)
    lg.advance(5)

    receipt = lg.settle([(brand.address, [lg.usage(paused_twin), lg.usage(other_twin)])])

    assert [o for _, o in lg.outcomes(receipt)] == [Outcome.TWIN_PAUSED, Outcome.PAID]
    assert not lg.fn.isPausedAt(other_twin, lg.now()).call()


# ====================================================================== payees


def test_set_payees_emits_and_stores_the_split(lg: Ledger) -> None:
    model = lg.actors.models[0]
    payees = lg.actors.payees
    twin = lg.mint(model)
    split = [(payees[0].address, 1_000), (payees[1].address, 2_345)]

    receipt = lg.transact(lg.fn.setPayees(twin, split), model)

    assert payees_set(lg, receipt) == [(twin, split)]
    assert lg.fn.payeesOf(twin).call() == split
    replaced = lg.transact(lg.fn.setPayees(twin, [(payees[2].address, 10_000)]), model)
    assert payees_set(lg, replaced) == [(twin, [(payees[2].address, 10_000)])]
    assert lg.fn.payeesOf(twin).call() == [(payees[2].address, 10_000)]
    cleared = lg.transact(lg.fn.setPayees(twin, []), model)
    assert payees_set(lg, cleared) == [(twin, [])]
    assert lg.fn.payeesOf(twin).call() == []


def test_set_payees_accepts_eight_payees(lg: Ledger) -> None:
    model = lg.actors.models[0]
    twin = lg.mint(model)
    split = [(f"0x{i:040x}", 1_250) for i in range(1, 9)]

    lg.transact(lg.fn.setPayees(twin, split), model)

    assert [(a.lower(), b) for a, b in lg.fn.payeesOf(twin).call()] == split


@pytest.mark.parametrize(
    ("split", "error"),
    [
        ([(f"0x{i:040x}", 100) for i in range(1, 10)], ("PayeesTooMany", 9, 8)),
        ([("0x" + "11" * 20, 100), (ZERO, 100)], ("PayeesInvalidAccount", ZERO)),
        (
            [("0x" + "11" * 20, 100), ("0x" + "22" * 20, 0)],
            ("PayeesInvalidShare", "0x" + "22" * 20, 0),
        ),
        ([("0x" + "11" * 20, 5_000), ("0x" + "22" * 20, 5_001)], ("PayeesTotalTooHigh", 10_001)),
        ([("0x" + "11" * 20, 65_535)], ("PayeesTotalTooHigh", 65_535)),
        (
            [("0x" + "11" * 20, 100), ("0x" + "22" * 20, 100), ("0x" + "11" * 20, 100)],
            ("PayeesDuplicateAccount", "0x" + "11" * 20),
        ),
    ],
    ids=["too-many", "zero-account", "zero-share", "total-10001", "total-65535", "duplicate"],
)
def test_set_payees_validation(
    lg: Ledger, split: list[tuple[str, int]], error: tuple[Any, ...]
) -> None:
    model = lg.actors.models[0]
    twin = lg.mint(model)
    checksummed = [(lg.w3.to_checksum_address(a), b) for a, b in split]

    with lg.reverts(*error):
        lg.transact(lg.fn.setPayees(twin, checksummed), model)


def test_set_payees_refused_for_non_owners(lg: Ledger) -> None:
    model, stranger = lg.actors.models[0], lg.actors.payees[0]
    twin = lg.mint(model)
    split = [(stranger.address, 5_000)]

    with lg.reverts("ERC721InsufficientApproval", stranger.address, twin):
        lg.transact(lg.fn.setPayees(twin, split), stranger)
    with lg.reverts("ERC721NonexistentToken", twin + 1):
        lg.transact(lg.fn.setPayees(twin + 1, split), model)

    lg.transact(lg.fn.approve(stranger.address, twin), model)
    lg.transact(lg.fn.setPayees(twin, split), stranger)
    assert lg.fn.payeesOf(twin).call() == split


def test_split_gives_payees_the_floor_and_the_owner_the_remainder(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    payees = lg.actors.payees
    twin = licensed_twin(lg, model, brand)
    lg.transact(
        lg.fn.setPayees(
            twin, [(payees[0].address, 3_333), (payees[1].address, 2_500), (payees[2].address, 1)]
        ),
        model,
    )
    accrue(lg, twin, brand, 1_000_003)

    receipt = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)

    # 1_000_003 * 3333 / 10000 = 333_300.99..., * 2500 / 10000 = 250_000.75, * 1 / 10000 = 100.0003
    assert distributed(lg, receipt) == [
        (twin, payees[0].address, 333_300),
        (twin, payees[1].address, 250_000),
        (twin, payees[2].address, 100),
        (twin, model.address, 1_000_003 - 333_300 - 250_000 - 100),
    ]
    assert [claimable(lg, p) for p in payees] == [333_300, 250_000, 100]
    assert claimable(lg, model) == 416_603
    assert lg.fn.twinState(twin).call()[0] == 0


def test_full_split_leaves_the_owner_only_the_rounding_remainder(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    payees = lg.actors.payees
    twin = licensed_twin(lg, model, brand)
    lg.transact(
        lg.fn.setPayees(
            twin,
            [(payees[0].address, 3_333), (payees[1].address, 3_333), (payees[2].address, 3_334)],
        ),
        model,
    )

    accrue(lg, twin, brand, 10)
    receipt = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)
    assert distributed(lg, receipt) == [
        (twin, payees[0].address, 3),
        (twin, payees[1].address, 3),
        (twin, payees[2].address, 3),
        (twin, model.address, 1),
    ]

    accrue(lg, twin, brand, 10_000)
    exact = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)
    assert distributed(lg, exact) == [
        (twin, payees[0].address, 3_333),
        (twin, payees[1].address, 3_333),
        (twin, payees[2].address, 3_334),
    ]
    assert claimable(lg, model) == 1


def test_zero_shares_are_not_distributed(lg: Ledger) -> None:
    model, brand, payee = lg.actors.models[0], lg.actors.brands[0], lg.actors.payees[0]
    twin = licensed_twin(lg, model, brand)
    lg.transact(lg.fn.setPayees(twin, [(payee.address, 1)]), model)
    accrue(lg, twin, brand, 9_999)

    receipt = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)

    assert distributed(lg, receipt) == [(twin, model.address, 9_999)]
    assert claimable(lg, payee) == 0


def test_payee_change_distributes_pending_royalties_under_the_old_split(lg: Ledger) -> None:
    model, brand = lg.actors.models[0], lg.actors.brands[0]
    payees = lg.actors.payees
    twin = licensed_twin(lg, model, brand)
    lg.transact(lg.fn.setPayees(twin, [(payees[0].address, 5_000)]), model)
    accrue(lg, twin, brand, 801)
    new_split = [(payees[1].address, 2_000), (payees[2].address, 1_000)]

    receipt = lg.transact(lg.fn.setPayees(twin, new_split), model)

    assert distributed(lg, receipt) == [(twin, payees[0].address, 400), (twin, model.address, 401)]
    names = lg.all_events(receipt)
    assert names.index("PayeesSet") > max(
        i for i, n in enumerate(names) if n == "RoyaltiesDistributed"
    )
    assert lg.fn.twinState(twin).call()[0] == 0

    accrue(lg, twin, brand, 1_000)
    later = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)
    assert distributed(lg, later) == [
        (twin, payees[1].address, 200),
        (twin, payees[2].address, 100),
        (twin, model.address, 700),
    ]
    assert [claimable(lg, p) for p in payees] == [400, 200, 100]
    assert claimable(lg, model) == 1_101


def test_removing_payees_gives_the_owner_everything(lg: Ledger) -> None:
    model, brand, payee = lg.actors.models[0], lg.actors.brands[0], lg.actors.payees[0]
    twin = licensed_twin(lg, model, brand)
    lg.transact(lg.fn.setPayees(twin, [(payee.address, 9_000)]), model)
    lg.transact(lg.fn.setPayees(twin, []), model)
    accrue(lg, twin, brand, 500)

    receipt = lg.transact(lg.fn.distribute([twin]), lg.actors.outsider)

    assert distributed(lg, receipt) == [(twin, model.address, 500)]
    assert claimable(lg, payee) == 0
