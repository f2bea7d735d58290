"""Brand escrow: deposits (plain and with an EIP-2612 permit), noticed withdrawals, the pause."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from .conftest import BRAND_FUNDS, CLAIM_WINDOW, NOTICE_PERIOD
from .helpers import DAY, Ledger, Outcome

ZERO = "0x0000000000000000000000000000000000000000"
PRICE = 1_000_000


def block_time(lg: Ledger, receipt: Any) -> int:
    return int(lg.w3.eth.get_block(receipt["blockNumber"])["timestamp"])


def fund(lg: Ledger, account: LocalAccount, amount: int) -> None:
    """Faucet tokens to ``account`` (no allowance)."""
    lg.transact(lg.token.functions.mint(account.address, amount), account)


def sign_permit(
    lg: Ledger, owner: LocalAccount, value: int, deadline: int, *, spender: str | None = None
) -> tuple[int, bytes, bytes]:
    """``(v, r, s)`` of an EIP-2612 permit of ``owner`` for the ledger on the mock stablecoin."""
    nonce = lg.token.functions.nonces(owner.address).call()
    data = {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"},
            ],
        },
        "primaryType": "Permit",
        "domain": {
            "name": "Mock USD",
            "version": "1",
            "chainId": lg.w3.eth.chain_id,
            "verifyingContract": lg.token.address,
        },
        "message": {
            "owner": owner.address,
            "spender": spender or lg.contract.address,
            "value": value,
            "nonce": nonce,
            "deadline": deadline,
        },
    }
    signed = owner.sign_message(encode_typed_data(full_message=data))
    return signed.v, signed.r.to_bytes(32, "big"), signed.s.to_bytes(32, "big")


def spend_escrow(lg: Ledger, brand: LocalAccount, amount: int) -> None:
    """Settles ``amount / PRICE`` uses of a fresh twin by ``brand`` (escrow must cover them)."""
    model = lg.actors.models[3]
    twin = lg.mint(model)
    lg.offer_and_accept(twin, lg.terms(brand, {0: PRICE}), model)
    lg.advance(2)
    receipt = lg.settle([(brand.address, [lg.usage(twin, quantity=amount // PRICE)])])
    [(_, outcome)] = lg.outcomes(receipt)
    assert outcome == Outcome.PAID


def assert_solvent(lg: Ledger) -> None:
    assert lg.fn.totalLiabilities().call() == lg.token_balance(lg.contract.address)


# ---------------------------------------------------------------------- deposit


def test_deposit_credits_escrow_and_pulls_tokens_from_the_caller(lg: Ledger) -> None:
    brand = lg.actors.brands[0]

    receipt = lg.deposit(brand, 5_000_000)

    assert lg.all_events(receipt) == ["EscrowDeposited"]
    assert lg.events(receipt, "EscrowDeposited") == [
        {"brand": brand.address, "from": brand.address, "amount": 5_000_000, "toDebt": 0}
    ]
    assert lg.brand_account(brand) == {
        "escrow": 5_000_000,
        "debt": 0,
        "debtReserve": 0,
        "pending": 0,
        "unlocksAt": 0,
        "lapsesAt": 0,
    }
    assert lg.token_balance(brand.address) == BRAND_FUNDS - 5_000_000
    assert lg.token_balance(lg.contract.address) == 5_000_000
    assert lg.fn.totalLiabilities().call() == 5_000_000


def test_deposits_accumulate_per_brand(lg: Ledger) -> None:
    first, second = lg.actors.brands[0], lg.actors.brands[1]

    lg.deposit(first, 1_000_000)
    lg.deposit(first, 2_500_000)
    lg.deposit(second, 7)

    assert lg.brand_account(first)["escrow"] == 3_500_000
    assert lg.brand_account(second)["escrow"] == 7
    assert lg.fn.totalLiabilities().call() == 3_500_007 == lg.token_balance(lg.contract.address)


def test_anyone_can_deposit_into_a_brands_escrow(lg: Ledger) -> None:
    brand, sponsor = lg.actors.brands[1], lg.actors.outsider
    fund(lg, sponsor, 3_000_000)
    lg.transact(lg.token.functions.approve(lg.contract.address, 3_000_000), sponsor)

    receipt = lg.transact(lg.fn.deposit(brand.address, 3_000_000), sponsor)

    assert lg.events(receipt, "EscrowDeposited") == [
        {"brand": brand.address, "from": sponsor.address, "amount": 3_000_000, "toDebt": 0}
    ]
    assert lg.brand_account(brand)["escrow"] == 3_000_000
    assert lg.brand_account(sponsor)["escrow"] == 0
    assert lg.token_balance(sponsor.address) == 0
    assert lg.token_balance(brand.address) == BRAND_FUNDS
    assert lg.token.functions.allowance(sponsor.address, lg.contract.address).call() == 0
    assert_solvent(lg)


def test_deposit_of_zero_reverts_escrow_zero_amount(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    with lg.reverts("EscrowZeroAmount"):
        lg.fn.deposit(brand.address, 0).transact({"from": brand.address})


def test_deposit_for_the_zero_brand_reverts_escrow_invalid_brand(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    with lg.reverts("EscrowInvalidBrand", ZERO):
        lg.fn.deposit(ZERO, 1_000).transact({"from": brand.address})
    assert lg.token_balance(lg.contract.address) == 0


def test_deposit_without_allowance_bubbles_the_token_error(lg: Ledger) -> None:
    sponsor, brand = lg.actors.outsider, lg.actors.brands[0]
    fund(lg, sponsor, 1_000)
    with lg.reverts("ERC20InsufficientAllowance", lg.contract.address, 0, 1_000):
        lg.fn.deposit(brand.address, 1_000).transact({"from": sponsor.address})

    lg.transact(lg.token.functions.approve(lg.contract.address, 999), sponsor)
    with lg.reverts("ERC20InsufficientAllowance", lg.contract.address, 999, 1_000):
        lg.fn.deposit(brand.address, 1_000).transact({"from": sponsor.address})
    assert lg.brand_account(brand)["escrow"] == 0
    assert lg.fn.totalLiabilities().call() == 0


def test_deposit_beyond_the_callers_balance_bubbles_the_token_error(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    with lg.reverts("ERC20InsufficientBalance", brand.address, BRAND_FUNDS, BRAND_FUNDS + 1):
        lg.fn.deposit(brand.address, BRAND_FUNDS + 1).transact({"from": brand.address})
    assert lg.fn.totalLiabilities().call() == 0


# ---------------------------------------------------------------------- deposit with permit


def test_deposit_with_permit_needs_no_prior_approval(lg: Ledger) -> None:
    sponsor, brand = lg.actors.outsider, lg.actors.brands[2]
    fund(lg, sponsor, 4_000_000)
    deadline = lg.now() + 3600
    v, r, s = sign_permit(lg, sponsor, 4_000_000, deadline)

    receipt = lg.transact(
        lg.fn.depositWithPermit(brand.address, 4_000_000, deadline, v, r, s), sponsor
    )

    assert lg.events(receipt, "EscrowDeposited") == [
        {"brand": brand.address, "from": sponsor.address, "amount": 4_000_000, "toDebt": 0}
    ]
    assert lg.brand_account(brand)["escrow"] == 4_000_000
    assert lg.token_balance(sponsor.address) == 0
    assert lg.token.functions.nonces(sponsor.address).call() == 1
    assert lg.token.functions.allowance(sponsor.address, lg.contract.address).call() == 0
    assert_solvent(lg)


def test_deposit_with_a_front_run_permit_still_uses_the_allowance(lg: Ledger) -> None:
    sponsor, brand = lg.actors.outsider, lg.actors.brands[0]
    fund(lg, sponsor, 2_000_000)
    deadline = lg.now() + 3600
    v, r, s = sign_permit(lg, sponsor, 2_000_000, deadline)
    # Someone watching the mempool submits the permit first: the signature is now spent.
    lg.transact(
        lg.token.functions.permit(
            sponsor.address, lg.contract.address, 2_000_000, deadline, v, r, s
        ),
        lg.actors.brands[1],
    )
    assert lg.token.functions.allowance(sponsor.address, lg.contract.address).call() == 2_000_000

    receipt = lg.transact(
        lg.fn.depositWithPermit(brand.address, 2_000_000, deadline, v, r, s), sponsor
    )

    assert lg.events(receipt, "EscrowDeposited") == [
        {"brand": brand.address, "from": sponsor.address, "amount": 2_000_000, "toDebt": 0}
    ]
    assert lg.brand_account(brand)["escrow"] == 2_000_000
    assert lg.token.functions.nonces(sponsor.address).call() == 1


def test_deposit_with_a_reused_permit_and_no_allowance_reverts_on_allowance(lg: Ledger) -> None:
    sponsor, brand = lg.actors.outsider, lg.actors.brands[0]
    fund(lg, sponsor, 2_000_000)
    deadline = lg.now() + 3600
    v, r, s = sign_permit(lg, sponsor, 1_000_000, deadline)
    lg.transact(lg.fn.depositWithPermit(brand.address, 1_000_000, deadline, v, r, s), sponsor)

    with lg.reverts("ERC20InsufficientAllowance", lg.contract.address, 0, 1_000_000):
        lg.fn.depositWithPermit(brand.address, 1_000_000, deadline, v, r, s).transact(
            {"from": sponsor.address}
        )
    assert lg.brand_account(brand)["escrow"] == 1_000_000
    assert lg.token_balance(sponsor.address) == 1_000_000


def test_deposit_with_a_permit_for_another_amount_reverts_on_allowance(lg: Ledger) -> None:
    sponsor, brand = lg.actors.outsider, lg.actors.brands[0]
    fund(lg, sponsor, 2_000_000)
    deadline = lg.now() + 3600
    v, r, s = sign_permit(lg, sponsor, 1_000_000, deadline)

    # The permit is checked against the deposited amount, so the signature does not match.
    with lg.reverts("ERC20InsufficientAllowance", lg.contract.address, 0, 2_000_000):
        lg.fn.depositWithPermit(brand.address, 2_000_000, deadline, v, r, s).transact(
            {"from": sponsor.address}
        )
    assert lg.token.functions.nonces(sponsor.address).call() == 0


def test_deposit_with_permit_is_refused_while_paused(lg: Ledger) -> None:
    sponsor, brand = lg.actors.outsider, lg.actors.brands[0]
    fund(lg, sponsor, 1_000_000)
    deadline = lg.now() + 3600
    v, r, s = sign_permit(lg, sponsor, 1_000_000, deadline)
    lg.transact(lg.fn.pause(), lg.actors.pauser)

    with lg.reverts("EnforcedPause"):
        lg.fn.depositWithPermit(brand.address, 1_000_000, deadline, v, r, s).transact(
            {"from": sponsor.address}
        )
    assert lg.token.functions.nonces(sponsor.address).call() == 0


# ---------------------------------------------------------------------- withdrawal


def test_withdrawal_request_unlocks_after_the_notice_period(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 5_000_000)
    assert lg.fn.config().call()[0] == NOTICE_PERIOD == 36 * DAY

    receipt = lg.transact(lg.fn.requestEscrowWithdrawal(2_000_000), brand)

    unlocks_at = block_time(lg, receipt) + NOTICE_PERIOD
    assert lg.events(receipt, "EscrowWithdrawalRequested") == [
        {"brand": brand.address, "amount": 2_000_000, "unlocksAt": unlocks_at}
    ]
    assert lg.brand_account(brand) == {
        "escrow": 5_000_000,
        "debt": 0,
        "debtReserve": 0,
        "pending": 2_000_000,
        "unlocksAt": unlocks_at,
        "lapsesAt": unlocks_at + CLAIM_WINDOW,
    }


def test_withdrawal_request_of_zero_reverts_escrow_zero_amount(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 5_000_000)
    with lg.reverts("EscrowZeroAmount"):
        lg.fn.requestEscrowWithdrawal(0).transact({"from": brand.address})


def test_withdraw_before_unlock_reverts_escrow_withdrawal_locked(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 5_000_000)
    receipt = lg.transact(lg.fn.requestEscrowWithdrawal(2_000_000), brand)
    unlocks_at = block_time(lg, receipt) + NOTICE_PERIOD

    with lg.reverts("EscrowWithdrawalLocked", brand.address, unlocks_at):
        lg.fn.withdrawEscrow().transact({"from": brand.address})
    lg.advance(NOTICE_PERIOD - 10)
    with lg.reverts("EscrowWithdrawalLocked", brand.address, unlocks_at):
        lg.fn.withdrawEscrow().transact({"from": brand.address})
    assert lg.brand_account(brand)["escrow"] == 5_000_000


def test_withdraw_after_unlock_pays_the_pending_amount(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 5_000_000)
    lg.transact(lg.fn.requestEscrowWithdrawal(2_000_000), brand)
    lg.advance(NOTICE_PERIOD)

    receipt = lg.transact(lg.fn.withdrawEscrow(), brand)

    assert lg.all_events(receipt) == ["EscrowWithdrawn"]
    assert lg.events(receipt, "EscrowWithdrawn") == [{"brand": brand.address, "amount": 2_000_000}]
    assert lg.brand_account(brand) == {
        "escrow": 3_000_000,
        "debt": 0,
        "debtReserve": 0,
        "pending": 0,
        "unlocksAt": 0,
        "lapsesAt": 0,
    }
    assert lg.token_balance(brand.address) == BRAND_FUNDS - 3_000_000
    assert lg.fn.totalLiabilities().call() == 3_000_000 == lg.token_balance(lg.contract.address)
    with lg.reverts("EscrowNoPendingWithdrawal", brand.address):
        lg.fn.withdrawEscrow().transact({"from": brand.address})


def test_withdraw_is_capped_at_escrow_spent_by_settlements_during_the_notice(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 5_000_000)
    lg.transact(lg.fn.requestEscrowWithdrawal(4_000_000), brand)
    spend_escrow(lg, brand, 3_000_000)
    assert lg.brand_account(brand)["escrow"] == 2_000_000
    lg.advance(NOTICE_PERIOD)

    receipt = lg.transact(lg.fn.withdrawEscrow(), brand)

    assert lg.events(receipt, "EscrowWithdrawn") == [{"brand": brand.address, "amount": 2_000_000}]
    account = lg.brand_account(brand)
    assert (account["escrow"], account["pending"], account["unlocksAt"]) == (0, 0, 0)
    assert lg.token_balance(brand.address) == BRAND_FUNDS - 3_000_000
    assert_solvent(lg)


def test_withdrawal_request_above_escrow_pays_what_is_there(lg: Ledger) -> None:
    brand = lg.actors.brands[1]
    lg.deposit(brand, 1_500_000)
    requested = lg.transact(lg.fn.requestEscrowWithdrawal(10**12), brand)
    # The request is capped at the escrow when made.
    assert lg.events(requested, "EscrowWithdrawalRequested") == [
        {
            "brand": brand.address,
            "amount": 1_500_000,
            "unlocksAt": block_time(lg, requested) + NOTICE_PERIOD,
        }
    ]
    assert lg.brand_account(brand)["pending"] == 1_500_000
    lg.advance(NOTICE_PERIOD)

    receipt = lg.transact(lg.fn.withdrawEscrow(), brand)

    assert lg.events(receipt, "EscrowWithdrawn") == [{"brand": brand.address, "amount": 1_500_000}]
    assert lg.token_balance(brand.address) == BRAND_FUNDS
    assert lg.fn.totalLiabilities().call() == 0 == lg.token_balance(lg.contract.address)


def test_new_withdrawal_request_replaces_the_earlier_one(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 5_000_000)
    first = lg.transact(lg.fn.requestEscrowWithdrawal(1_000_000), brand)
    lg.advance(2 * DAY)
    second = lg.transact(lg.fn.requestEscrowWithdrawal(3_000_000), brand)
    unlocks_at = block_time(lg, second) + NOTICE_PERIOD
    assert unlocks_at >= block_time(lg, first) + NOTICE_PERIOD + 2 * DAY

    account = lg.brand_account(brand)
    assert (account["pending"], account["unlocksAt"]) == (3_000_000, unlocks_at)
    # The first request's unlock time has passed, the replacement's has not.
    lg.advance(NOTICE_PERIOD - 2 * DAY + 10)
    with lg.reverts("EscrowWithdrawalLocked", brand.address, unlocks_at):
        lg.fn.withdrawEscrow().transact({"from": brand.address})
    lg.advance(2 * DAY)
    receipt = lg.transact(lg.fn.withdrawEscrow(), brand)
    assert lg.events(receipt, "EscrowWithdrawn") == [{"brand": brand.address, "amount": 3_000_000}]


def test_cancelled_withdrawal_cannot_be_withdrawn(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 5_000_000)
    lg.transact(lg.fn.requestEscrowWithdrawal(2_000_000), brand)

    receipt = lg.transact(lg.fn.cancelEscrowWithdrawal(), brand)

    assert lg.all_events(receipt) == ["EscrowWithdrawalCancelled"]
    assert lg.events(receipt, "EscrowWithdrawalCancelled") == [{"brand": brand.address}]
    account = lg.brand_account(brand)
    assert (account["escrow"], account["pending"], account["unlocksAt"]) == (5_000_000, 0, 0)
    lg.advance(NOTICE_PERIOD)
    with lg.reverts("EscrowNoPendingWithdrawal", brand.address):
        lg.fn.withdrawEscrow().transact({"from": brand.address})
    with lg.reverts("EscrowNoPendingWithdrawal", brand.address):
        lg.fn.cancelEscrowWithdrawal().transact({"from": brand.address})


def test_withdraw_or_cancel_without_a_request_reverts_escrow_no_pending_withdrawal(
    lg: Ledger,
) -> None:
    brand, other = lg.actors.brands[0], lg.actors.brands[1]
    lg.deposit(brand, 5_000_000)
    lg.transact(lg.fn.requestEscrowWithdrawal(2_000_000), brand)
    lg.advance(NOTICE_PERIOD)

    # A request is the requesting brand's own: another brand has nothing pending.
    with lg.reverts("EscrowNoPendingWithdrawal", other.address):
        lg.fn.withdrawEscrow().transact({"from": other.address})
    with lg.reverts("EscrowNoPendingWithdrawal", other.address):
        lg.fn.cancelEscrowWithdrawal().transact({"from": other.address})
    assert lg.brand_account(brand)["pending"] == 2_000_000


# ---------------------------------------------------------------------- pause


def test_pause_stops_deposits_and_escrow_withdrawal_until_unpaused(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 5_000_000)
    lg.transact(lg.fn.requestEscrowWithdrawal(5_000_000), brand)
    lg.advance(NOTICE_PERIOD)
    paused = lg.transact(lg.fn.pause(), lg.actors.pauser)

    with lg.reverts("EnforcedPause"):
        lg.fn.deposit(brand.address, 1_000).transact({"from": brand.address})
    with lg.reverts("EnforcedPause"):
        lg.fn.withdrawEscrow().transact({"from": brand.address})
    lg.advance(100)
    unpaused = lg.transact(lg.fn.unpause(), lg.actors.pauser)
    paused_for = block_time(lg, unpaused) - block_time(lg, paused)
    assert lg.fn.pausedSeconds().call() == paused_for
    receipt = lg.transact(lg.fn.withdrawEscrow(), brand)

    assert lg.events(receipt, "EscrowWithdrawn") == [{"brand": brand.address, "amount": 5_000_000}]
    assert lg.token_balance(brand.address) == BRAND_FUNDS
    assert lg.fn.totalLiabilities().call() == 0 == lg.token_balance(lg.contract.address)


def test_withdrawal_can_be_requested_and_cancelled_while_paused(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.deposit(brand, 5_000_000)
    lg.transact(lg.fn.pause(), lg.actors.pauser)

    requested = lg.transact(lg.fn.requestEscrowWithdrawal(1_000_000), brand)
    assert lg.events(requested, "EscrowWithdrawalRequested") == [
        {
            "brand": brand.address,
            "amount": 1_000_000,
            "unlocksAt": block_time(lg, requested) + NOTICE_PERIOD,
        }
    ]
    cancelled = lg.transact(lg.fn.cancelEscrowWithdrawal(), brand)
    assert lg.events(cancelled, "EscrowWithdrawalCancelled") == [{"brand": brand.address}]


def test_deposits_resume_after_unpause(lg: Ledger) -> None:
    brand = lg.actors.brands[0]
    lg.transact(lg.fn.pause(), lg.actors.pauser)
    with lg.reverts("EnforcedPause"):
        lg.fn.deposit(brand.address, 1_000).transact({"from": brand.address})
    lg.transact(lg.fn.unpause(), lg.actors.pauser)

    receipt = lg.deposit(brand, 1_000)

    assert lg.events(receipt, "EscrowDeposited")[0]["amount"] == 1_000
    assert lg.brand_account(brand)["escrow"] == 1_000


@pytest.mark.parametrize("who", ["outsider", "attester", "admin"])
def test_only_the_pauser_can_pause(lg: Ledger, who: str) -> None:
    account = getattr(lg.actors, who)
    assert lg.has_role(lg.role("PAUSER_ROLE"), account) is False
    with lg.reverts("AccessManagedUnauthorized", account.address):
        lg.fn.pause().transact({"from": account.address})
    assert lg.fn.paused().call() is False
