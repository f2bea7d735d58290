"""``bridge.chain.escrow`` on a fake chain: a token takes permits only when the domain it publishes
(ERC-5267, else its name with version "1") hashes to its ``DOMAIN_SEPARATOR``; a withdrawal is open
from its unlock time until (not at) its lapse time; the escrow events of a receipt are the brand's
own. (The mock stablecoin's permit, on anvil: ``test_brand_money``.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from eth_abi.abi import encode
from eth_account.messages import encode_typed_data
from eth_utils.crypto import keccak

from bridge.chain.brand_ledger import selector
from bridge.chain.client import Block, BlockTag, LogEntry
from bridge.chain.escrow import (
    DOMAIN_SEPARATOR,
    EIP712_DOMAIN,
    NAME,
    PERMIT_NONCES,
    EscrowAccount,
    EscrowLedger,
    escrow_events,
    permit_typed_data,
)
from bridge.errors import ExecutionRevertedError

LEDGER = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
TOKEN = "0x" + "70" * 20
BRAND = "0x" + "B4" * 20
OTHER = "0x" + "0C" * 20


def _separator(domain: dict[str, Any]) -> bytes:
    typed = permit_typed_data(domain, owner=BRAND, spender=LEDGER, value=1, nonce=0, deadline=1)
    return bytes(encode_typed_data(full_message=typed).header)


LEGACY = {"name": "Legacy USD", "version": "1", "chainId": 31337, "verifyingContract": TOKEN}


@dataclass
class FakeToken:
    """A token answering the permit's reads from ``answers`` (selector -> ABI-encoded answer);
    the rest revert."""

    answers: dict[bytes, bytes] = field(default_factory=dict)

    def chain_id(self) -> int:
        return 31337

    def block(self, tag: BlockTag = "latest") -> Block | None:
        return Block(number=1, hash="0x" + "11" * 32, timestamp=1_772_366_400)

    def call(self, *, to: str, data: bytes, block: BlockTag = "latest") -> bytes:
        assert to == TOKEN
        answer = self.answers.get(data[:4])
        if answer is None:
            raise ExecutionRevertedError("http://rpc.test", 3, "execution reverted", b"")
        return answer


def _legacy_token(separator: bytes) -> FakeToken:
    return FakeToken(
        {
            selector(PERMIT_NONCES): encode(["uint256"], [0]),
            selector(DOMAIN_SEPARATOR): separator,
            selector(NAME): encode(["string"], ["Legacy USD"]),
        }
    )


def _domain(token: FakeToken) -> dict[str, Any] | None:
    return EscrowLedger(token, LEDGER)._permit_domain(TOKEN, BRAND)


def test_a_token_without_eip5267_takes_permits_under_its_name_and_version_1() -> None:
    assert _domain(_legacy_token(_separator(LEGACY))) == LEGACY


def test_a_token_whose_separator_is_another_domains_takes_no_permit_here() -> None:
    assert _domain(_legacy_token(_separator({**LEGACY, "version": "2"}))) is None


def test_a_token_without_nonces_takes_no_permit() -> None:
    token = _legacy_token(_separator(LEGACY))
    del token.answers[selector(PERMIT_NONCES)]
    assert _domain(token) is None


def test_the_eip5267_domain_is_the_fields_it_flags() -> None:
    salt = b"\x5a" * 32
    domain = {
        "name": "Salty",
        "chainId": 31337,
        "verifyingContract": TOKEN,
        "salt": "0x" + salt.hex(),
    }
    published = encode(
        ["bytes1", "string", "string", "uint256", "address", "bytes32", "uint256[]"],
        [bytes([0b11101]), "Salty", "", 31337, TOKEN, salt, []],
    )
    token = _legacy_token(_separator(domain))
    token.answers[selector(EIP712_DOMAIN)] = published
    assert _domain(token) == domain


@pytest.mark.parametrize(
    ("now", "refusal"),
    [
        (99, "the withdrawal unlocks at 1970-01-01 00:01:40 UTC, after the notice period"),
        (100, None),
        (199, None),
        (200, "the withdrawal request lapsed at 1970-01-01 00:03:20 UTC; request it again"),
    ],
)
def test_a_withdrawal_is_open_from_its_unlock_until_its_lapse(
    now: int, refusal: str | None
) -> None:
    assert EscrowAccount(500, 0, 0, 50, 100, 200).withdrawal_refusal(now) == refusal
    assert EscrowAccount(500, 0, 0, 0, 0, 0).withdrawal_refusal(now) == (
        "no escrow withdrawal is pending; request one first"
    )


def _log(address: str, event: str, brand: str, data: bytes) -> LogEntry:
    topics = (keccak(text=event), bytes(12) + bytes.fromhex(brand[2:]))
    return LogEntry(address, topics, data, 9, "0x" + "99" * 32, "0x" + "ab" * 32, 0)


def test_the_escrow_events_of_a_receipt_are_the_brands_own_at_the_ledger() -> None:
    deposited = "EscrowDeposited(address,address,uint256,uint256)"
    logs = [
        _log(LEDGER, deposited, OTHER, encode(["uint256", "uint256"], [7, 0])),
        _log(TOKEN, deposited, BRAND, encode(["uint256", "uint256"], [8, 0])),
        _log(LEDGER, "Transfer(address,address,uint256)", BRAND, encode(["uint256"], [9])),
        _log(LEDGER, deposited, BRAND, encode(["uint256", "uint256"], [250, 40])),
        _log(LEDGER, "EscrowWithdrawn(address,uint256)", BRAND, encode(["uint256"], [3])),
    ]
    events = escrow_events(logs, ledger=LEDGER.lower(), brand=BRAND.lower())
    assert (events.deposited, events.requested, events.withdrawn) == ((250, 40), None, 3)
