"""Ledger events, and the access manager's role events, decoded from raw logs with the compiled
ABIs (``bridge.chain.events``): exact arguments (offers, acceptances, declines, withdrawals,
revocations with their version, limits, own attesters, nonces, roles with uint64 ids), usages of
``UsagesSettled`` expanded with their outcomes (an unknown code without raising), other contracts'
logs skipped and undecodable logs refused. Logs of a real chain are decoded in
``test_indexer.py``."""

from __future__ import annotations

from typing import Any

import pytest
from eth_abi.abi import encode
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from bridge.chain.client import LogEntry
from bridge.chain.events import (
    EventDecodeError,
    LedgerEvent,
    SettledUsage,
    decode_logs,
    ledger_decoder,
    manager_decoder,
    settled_usages,
)
from bridge.domain.codec import Outcome, Usage

LEDGER = to_checksum_address("0x000000000000000000000000000000000000ed6e")
OTHER = to_checksum_address("0x0000000000000000000000000000000000000a11")
BRAND = to_checksum_address("0x000000000000000000000000000000000000bbbb")
OWNER = to_checksum_address("0x00000000000000000000000000000000000000aa")
ATTESTER = to_checksum_address("0x0000000000000000000000000000000000a77e57")
TX = "0x" + "ab" * 32
BLOCK_HASH = "0x" + "cd" * 32
DIGEST = keccak(text="batch")


def _topic(signature: str) -> bytes:
    return keccak(text=signature)


def _word(value: int | str) -> bytes:
    return encode(["address" if isinstance(value, str) else "uint256"], [value])


def _log(
    topics: list[bytes], data: bytes, *, block: int = 7, index: int = 0, address: str = LEDGER
) -> LogEntry:
    return LogEntry(
        address=address,
        topics=tuple(topics),
        data=data,
        block_number=block,
        block_hash=BLOCK_HASH,
        tx_hash=TX,
        log_index=index,
    )


TERMS_HASH = keccak(text="terms")
MANAGER = to_checksum_address("0x000000000000000000000000000000000000aaaa")


def _license_offered(index: int) -> LogEntry:
    prices = [(0, 500_000), (3, 2**96 - 1)]
    return _log(
        [
            _topic(
                "LicenseOffered(uint256,address,uint256,uint40,uint40,uint32,bytes32,bytes32,"
                "(uint8,uint256)[],bytes32)"
            ),
            _word(5),
            _word(BRAND),
            _word(2),
        ],
        encode(
            ["uint40", "uint40", "uint32", "bytes32", "bytes32", "(uint8,uint256)[]", "bytes32"],
            [1_000, 2**40 - 1, 10, b"\x11" * 32, b"\x22" * 32, prices, TERMS_HASH],
        ),
        index=index,
    )


def test_events_decode_with_exact_arguments_in_log_order() -> None:
    minted = _log(
        [_topic("TwinMinted(uint256,address,string,bytes32)"), _word(5), _word(OWNER)],
        encode(["string", "bytes32"], ["ipfs://twin/5", b"\x33" * 32]),
        index=3,
    )
    token_transfer = _log(  # the payment token's Transfer: another contract, skipped
        [_topic("Transfer(address,address,uint256)"), _word(OWNER), _word(BRAND)],
        _word(10),
        index=1,
        address=OTHER,
    )
    twin_transfer = _log(
        [_topic("Transfer(address,address,uint256)"), _word(0), _word(OWNER), _word(5)],
        b"",
        index=2,
        block=6,
    )
    events = decode_logs(
        [_license_offered(4), minted, token_transfer, twin_transfer], ledger=LEDGER.lower()
    )
    assert [(e.name, e.block_number, e.log_index) for e in events] == [
        ("Transfer", 6, 2),
        ("TwinMinted", 7, 3),
        ("LicenseOffered", 7, 4),
    ]
    transfer, mint, grant = events
    assert dict(transfer.args) == {
        "from": "0x0000000000000000000000000000000000000000",
        "to": OWNER,
        "tokenId": 5,
    }
    assert mint == LedgerEvent(
        name="TwinMinted",
        block_number=7,
        block_hash=BLOCK_HASH,
        tx_hash=TX,
        log_index=3,
        args=mint.args,
        address=LEDGER,
    )
    assert dict(mint.args) == {
        "twinId": 5,
        "owner": OWNER,
        "uri": "ipfs://twin/5",
        "consentHash": "0x" + "33" * 32,
    }
    assert grant.json_args() == {
        "twinId": 5,
        "brand": BRAND,
        "version": 2,
        "validFrom": 1_000,
        "validUntil": 2**40 - 1,
        "maxUses": 10,
        "purposeHash": "0x" + "11" * 32,
        "consentHash": "0x" + "22" * 32,
        "prices": [{"usageType": 0, "price": 500_000}, {"usageType": 3, "price": 2**96 - 1}],
        "termsHash": "0x" + TERMS_HASH.hex(),
    }
    assert (grant.int_arg("version"), grant.str_arg("brand")) == (2, BRAND)
    with pytest.raises(TypeError, match=r"LicenseOffered\.brand is"):
        grant.int_arg("brand")
    with pytest.raises(TypeError):
        grant.args["twinId"] = 6  # type: ignore[index]  # read-only


def test_usages_settled_expands_every_usage_with_its_outcome() -> None:
    paid = Usage(usage_id=11, twin_id=5, used_at=1_700_000_000, quantity=3, usage_type=1)
    capped = Usage(usage_id=12, twin_id=6, used_at=1_700_000_100, quantity=2**32 - 1, usage_type=0)
    unknown = Usage(usage_id=2**64 - 1, twin_id=2**64 - 1, used_at=0, quantity=1, usage_type=255)
    results = [
        paid.encode(),
        capped.encode() | Outcome.USE_CAP_REACHED,
        unknown.encode() | Outcome.UNKNOWN_TWIN,
    ]
    log = _log(
        [
            _topic("UsagesSettled(bytes32,address,address,uint256,uint256[])"),
            DIGEST,
            _word(BRAND),
            _word(ATTESTER),
        ],
        encode(["uint256", "uint256[]"], [1_500_000, results]),
        index=9,
    )
    [event] = decode_logs([log], ledger=LEDGER)
    assert (event.name, event.int_arg("paid"), event.ints_arg("results")) == (
        "UsagesSettled",
        1_500_000,
        tuple(results),
    )
    where: dict[str, Any] = {
        "brand": BRAND,
        "attester": ATTESTER,
        "batch_digest": "0x" + DIGEST.hex(),
        "block_number": 7,
        "block_hash": BLOCK_HASH,
        "tx_hash": TX,
        "log_index": 9,
    }
    cap = Outcome.USE_CAP_REACHED
    assert settled_usages(event) == (
        SettledUsage(11, 5, 1_700_000_000, 3, 1, Outcome.PAID, position=0, **where),
        SettledUsage(12, 6, 1_700_000_100, 2**32 - 1, 0, cap, position=1, **where),
        SettledUsage(2**64 - 1, 2**64 - 1, 0, 1, 255, Outcome.UNKNOWN_TWIN, position=2, **where),
    )  # fmt: skip
    [grant] = decode_logs([_license_offered(0)], ledger=LEDGER)
    with pytest.raises(ValueError, match="LicenseOffered is not UsagesSettled"):
        settled_usages(grant)


def test_every_event_of_the_abi_has_a_topic() -> None:
    names = set(ledger_decoder().topics.values())
    assert {
        "TwinMinted", "LicenseOffered", "LicenseAccepted", "LicenseDeclined",
        "LicenseOfferWithdrawn", "LicenseRevoked", "TwinPaused", "TwinUnpaused", "PayeesSet",
        "SignedActionUsed", "NoncesInvalidated", "EscrowDeposited", "EscrowWithdrawalRequested",
        "EscrowWithdrawalCancelled", "EscrowWithdrawn", "SpendingLimitsSet", "BrandAttesterSet",
        "UsagesSettled", "DebtRecorded", "DebtRepaid", "RoyaltiesDistributed", "PayeePaid",
        "Transfer", "Approval", "ApprovalForAll", "AuthorityUpdated", "Paused", "Unpaused",
    } <= names  # fmt: skip
    # Licenses are agreements and roles are the access manager's: neither event is the ledger's.
    assert not {"LicenseGranted", "RoleGranted", "RoleRevoked"} & names
    assert {"RoleGranted", "RoleRevoked", "RoleGrantDelayChanged"} <= set(
        manager_decoder().topics.values()
    )
    assert ledger_decoder().topics[_topic("PayeePaid(address,address,uint256)")] == "PayeePaid"


def test_agreement_limit_and_nonce_events_decode_with_exact_arguments() -> None:
    logs = [
        _log(
            [_topic("LicenseAccepted(uint256,address,uint256,uint40)"), _word(5), _word(BRAND),
             _word(2)],
            encode(["uint40"], [1_234]),
            index=1,
        ),
        _log(
            [_topic("LicenseDeclined(uint256,address,uint256)"), _word(6), _word(BRAND), _word(0)],
            b"",
            index=2,
        ),
        _log(
            [_topic("LicenseOfferWithdrawn(uint256,address,uint256)"), _word(7), _word(BRAND),
             _word(3)],
            b"",
            index=3,
        ),
        _log(
            [_topic("LicenseRevoked(uint256,address,uint256,uint40)"), _word(5), _word(BRAND),
             _word(2)],
            encode(["uint40"], [2_000]),
            index=4,
        ),
        _log(
            [_topic("SpendingLimitsSet(address,uint256,uint256,uint40)"), _word(BRAND)],
            encode(["uint256", "uint256", "uint40"], [50_000 * 10**6, 250_000 * 10**6, 86_400]),
            index=5,
        ),
        _log(
            [_topic("BrandAttesterSet(address,address)"), _word(BRAND), _word(ATTESTER)],
            b"",
            index=6,
        ),
        _log([_topic("NoncesInvalidated(address,uint256)"), _word(OWNER)], _word(256), index=7),
        _log(
            [_topic("EscrowWithdrawalRequested(address,uint256,uint40)"), _word(BRAND)],
            encode(["uint256", "uint40"], [10**6, 3_110_400]),
            index=8,
        ),
    ]  # fmt: skip
    events = decode_logs(logs, ledger=LEDGER)
    assert [(e.name, e.address, e.json_args()) for e in events] == [
        ("LicenseAccepted", LEDGER, {"twinId": 5, "brand": BRAND, "version": 2,
                                     "validFrom": 1_234}),
        ("LicenseDeclined", LEDGER, {"twinId": 6, "brand": BRAND, "version": 0}),
        ("LicenseOfferWithdrawn", LEDGER, {"twinId": 7, "brand": BRAND, "version": 3}),
        ("LicenseRevoked", LEDGER, {"twinId": 5, "brand": BRAND, "version": 2, "revokedAt": 2_000}),
        ("SpendingLimitsSet", LEDGER, {"brand": BRAND, "perUsage": 50_000 * 10**6,
                                       "perPeriod": 250_000 * 10**6, "effectiveAt": 86_400}),
        ("BrandAttesterSet", LEDGER, {"brand": BRAND, "attester": ATTESTER}),
        ("NoncesInvalidated", LEDGER, {"account": OWNER, "newNonce": 256}),
        ("EscrowWithdrawalRequested", LEDGER, {"brand": BRAND, "amount": 10**6,
                                               "unlocksAt": 3_110_400}),
    ]  # fmt: skip


def test_the_access_managers_role_events_decode_with_uint64_role_ids() -> None:
    granted = _log(
        [_topic("RoleGranted(uint64,address,uint32,uint48,bool)"), _word(2), _word(ATTESTER)],
        encode(["uint32", "uint48", "bool"], [300, 1_700_000_300, True]),
        index=1,
        address=MANAGER,
    )
    revoked = _log(
        [_topic("RoleRevoked(uint64,address)"), _word(2), _word(ATTESTER)],
        b"",
        index=2,
        address=MANAGER,
    )
    delay = _log(
        [_topic("RoleGrantDelayChanged(uint64,uint32,uint48)"), _word(1)],
        encode(["uint32", "uint48"], [172_800, 1_700_432_000]),
        index=0,
        address=MANAGER,
    )
    minted = _log(
        [_topic("TwinMinted(uint256,address,string,bytes32)"), _word(5), _word(OWNER)],
        encode(["string", "bytes32"], ["ipfs://twin/5", b"\x33" * 32]),
        index=3,
    )
    # Without the manager named, only the ledger's logs are decoded.
    assert [e.name for e in decode_logs([granted, minted], ledger=LEDGER)] == ["TwinMinted"]
    events = decode_logs([minted, revoked, granted, delay], ledger=LEDGER, manager=MANAGER)
    assert [(e.name, e.address, e.json_args()) for e in events] == [
        ("RoleGrantDelayChanged", MANAGER, {"roleId": 1, "delay": 172_800, "since": 1_700_432_000}),
        ("RoleGranted", MANAGER, {"roleId": 2, "account": ATTESTER, "delay": 300,
                                  "since": 1_700_000_300, "newMember": True}),
        ("RoleRevoked", MANAGER, {"roleId": 2, "account": ATTESTER}),
        ("TwinMinted", LEDGER, {"twinId": 5, "owner": OWNER, "uri": "ipfs://twin/5",
                                "consentHash": "0x" + "33" * 32}),
    ]  # fmt: skip


def test_an_outcome_code_the_bridge_does_not_know_decodes_without_raising() -> None:
    usage = Usage(usage_id=21, twin_id=5, used_at=1_700_000_000, quantity=1, usage_type=0)
    results = [usage.encode() | 200, usage.encode() | Outcome.OVER_PERIOD_LIMIT]
    log = _log(
        [
            _topic("UsagesSettled(bytes32,address,address,uint256,uint256[])"),
            DIGEST,
            _word(BRAND),
            _word(ATTESTER),
        ],
        encode(["uint256", "uint256[]"], [0, results]),
    )
    [event] = decode_logs([log], ledger=LEDGER)
    unknown, limited = settled_usages(event)
    assert (int(unknown.outcome), unknown.outcome.known) == (200, False)
    assert (limited.outcome, limited.outcome.known) == (Outcome.OVER_PERIOD_LIMIT, True)


def test_a_ledger_log_the_abi_cannot_decode_is_refused() -> None:
    unknown = _log([_topic("Nope(uint256)")], _word(1), index=5)
    with pytest.raises(EventDecodeError, match=r"log 5 of block 7 .*unknown topic 0x"):
        decode_logs([unknown], ledger=LEDGER)
    truncated = _log(
        [_topic("PayeePaid(address,address,uint256)"), _word(OWNER), _word(BRAND)], b"\x01"
    )
    with pytest.raises(EventDecodeError, match="PayeePaid: ") as caught:
        decode_logs([truncated], ledger=LEDGER)
    assert caught.value.log == truncated
    with pytest.raises(EventDecodeError, match="anonymous log"):
        decode_logs([_log([], b"")], ledger=LEDGER)
    assert decode_logs([unknown], ledger=OTHER) == []
