"""Ledger errors in words: every custom error of the compiled ledger's ABI has a sentence, revert
data and the bridge's relayed messages become those sentences."""

from __future__ import annotations

import re
from typing import Any

from eth_abi.abi import encode
from eth_utils.crypto import keccak

from bridge.chain.reverts import SENTENCES, describe_revert, explain, explain_revert
from bridge.chain.toolchain import load_artifact

ADDRESS = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
SAMPLE: dict[str, Any] = {"address": ADDRESS, "bool": True, "bytes32": b"\x11" * 32, "string": "x"}


def _errors() -> list[dict[str, Any]]:
    return [dict(e) for e in load_artifact("TwinLedger").abi if e["type"] == "error"]


def _sample(kind: str) -> Any:
    return SAMPLE.get(kind, 7)


def test_every_error_of_the_ledgers_abi_has_a_sentence_in_plain_words() -> None:
    for error in _errors():
        types = [i["type"] for i in error["inputs"]]
        data = keccak(text=f"{error['name']}({','.join(types)})")[:4] + encode(
            types, [_sample(t) for t in types]
        )
        words = explain_revert(data)
        assert words is not None, error["name"]
        assert error["name"] not in words
        assert not re.search(r"\b[a-z]+[A-Z]\w*=", words), words  # no name=value left
    assert sorted(SENTENCES) == sorted({e["name"] for e in _errors()})


def test_ledger_errors_become_sentences() -> None:
    paused = keccak(text="TwinPauseUnchanged(uint256,bool)")[:4] + encode(
        ["uint256", "bool"], [3, True]
    )
    assert describe_revert(paused) == "TwinPauseUnchanged(twinId=3, paused=True)"
    assert explain_revert(paused) == "twin 3 is already paused"
    locked = keccak(text="EscrowWithdrawalLocked(address,uint40)")[:4] + encode(
        ["address", "uint40"], [ADDRESS, 1_767_225_600]
    )
    assert explain_revert(locked) == (
        f"the escrow withdrawal of {ADDRESS} unlocks only at 2026-01-01 00:00:00 UTC"
    )
    assert explain_revert(b"\x00\x01\x02\x03") is None


def test_a_relayed_message_keeps_its_words_and_translates_the_ledger_error() -> None:
    assert (
        explain(f"the ledger would refuse this Payout: PayoutNothingToPay(payee={ADDRESS})")
        == f"the ledger would refuse this Payout: the ledger holds nothing to pay to {ADDRESS}"
    )
    assert explain("SetTwinPaused: TwinPauseUnchanged(twinId=3, paused=False)") == (
        "SetTwinPaused: twin 3 is already unpaused"
    )
    assert explain("UnknownThing(a=1) stays") == "UnknownThing(a=1) stays"
