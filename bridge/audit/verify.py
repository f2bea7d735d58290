"""A settlement transaction's signed input against its events: the input decodes as
``settle(batch, attester, signature)`` naming the events' attester, the EIP-712 digest recomputed
with ``bridge.domain.eip712`` is the events' batch digest, the signature recovers to the attester
(an attester contract's ERC-1271 signature does not recover: it is named, for a person to
check), the batch was mined before its deadline, and the results are the signed usage words in
the signed order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data

from bridge.audit.logs import TxInfo, checksum
from bridge.audit.state import Batch
from bridge.chain.ledger import decode_settle_calldata
from bridge.domain import eip712
from bridge.domain.codec import Usage, same_usage

SignedGroups = list[tuple[str, list[int]]]
"""``(brand, usage words)`` per group of a signed batch."""


def verify_batch(
    batch: Batch, info: TxInfo | None, *, ledger: str, chain_id: int, results: Sequence[int]
) -> None:
    """Adds to ``batch.problems`` what the transaction ``info`` contradicts (``results`` are the
    result words of the batch's events, in order) and sets ``batch.verified``."""
    problems = batch.problems
    if info is None:
        problems.append("the transaction could not be fetched")
    elif info.to is None or info.to.lower() != ledger.lower():
        problems.append(
            f"the transaction calls {info.to}, not the ledger: its input is not the signed batch"
        )
    else:
        try:
            deadline, groups, attester, signature = decode_settle_calldata(info.input)
        except Exception as exc:  # eth-abi raises several types for bad input
            problems.append(f"its input is not a settle() call ({exc})")
        else:
            if attester != batch.attester:
                problems.append(f"it names attester {attester}, its events {batch.attester}")
            typed = eip712.usage_batch(deadline, groups, chain_id=chain_id, ledger=ledger)
            _check_signature(batch, typed, signature)
            _check_deadline(batch, deadline)
            _check_groups(batch, groups, results)
    batch.verified = not problems


def _check_signature(batch: Batch, typed: dict[str, Any], signature: bytes) -> None:
    """The signed batch hashes to the events' digest and recovers to the events' attester."""
    digest = "0x" + eip712.digest(typed).hex()
    if digest != batch.digest:
        batch.problems.append(f"the signed input hashes to {digest}, not the events' digest")
    try:
        message = encode_typed_data(full_message=typed)
        signer = checksum(Account.recover_message(message, signature=signature))
    except Exception as exc:  # eth-keys raises several types for a bad signature
        batch.problems.append(f"its signature does not recover ({exc})")
        return
    batch.signer = signer
    if signer != batch.attester:
        batch.problems.append(
            f"the signature recovers to {signer}, not the events' attester {batch.attester}"
        )


def _check_deadline(batch: Batch, deadline: int) -> None:
    if batch.block_time > deadline:
        batch.problems.append(f"it was mined at {batch.block_time}, after its deadline {deadline}")


def _check_groups(batch: Batch, groups: SignedGroups, results: Sequence[int]) -> None:
    """Each signed group was settled for its brand, with the signed usages in the signed order."""
    if len(groups) != len(batch.groups):
        batch.problems.append(f"it signs {len(groups)} groups but {len(batch.groups)} were settled")
        return
    position = 0
    for (brand, words), (settled_brand, _, count, _) in zip(groups, batch.groups, strict=True):
        if brand != settled_brand:
            batch.problems.append(f"a group signed for {brand} was settled for {settled_brand}")
        if len(words) != count:
            batch.problems.append(
                f"the group of {brand} signs {len(words)} usages, {count} were settled"
            )
        else:
            _check_words(batch, words, results[position : position + count])
        position += count


def _check_words(batch: Batch, words: Sequence[int], results: Sequence[int]) -> None:
    """The first settled usage that is not the usage word signed at its place, if any."""
    for word, result in zip(words, results, strict=True):
        if not same_usage(word, result):
            batch.problems.append(
                f"usage {Usage.decode(result).usage_id} as settled is not the usage signed at "
                f"its place ({word:#x})"
            )
            return
