"""A brand's own transactions to the ledger (decline an offer, set its spending limits, accept an
offer without the relay): signed on the brand's machine with its key (EIP-1559, priced by the
``FeePolicy`` under a cap), sent through the brand's RPC URL and followed until mined. The ledger
is asked first (gas estimation), so a transaction it would refuse is not sent and the reason is
told in the ledger's words."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Protocol

from eth_account.signers.local import LocalAccount
from eth_typing import HexStr

from bridge.chain.client import FeeData, Receipt
from bridge.chain.reverts import explain_revert
from bridge.cli.remote import RemoteCliError
from bridge.domain.fees import FeePolicy
from bridge.errors import ExecutionRevertedError

GAS_MARGIN: Final = 1.2
"""Gas limit = estimate x this."""


class TxChain(Protocol):
    """The calls a brand's transaction needs (``Web3ChainClient`` has them)."""

    def chain_id(self) -> int: ...

    def pending_nonce(self, address: str) -> int: ...

    def fee_data(self) -> FeeData: ...

    def estimate_gas(self, *, sender: str, to: str, data: bytes) -> int: ...

    def send_raw_transaction(self, raw: bytes) -> str: ...

    def receipt(self, tx_hash: str) -> Receipt | None: ...


@dataclass(frozen=True)
class OwnTransaction:
    """Sends transactions from ``account`` over ``chain``, paying at most ``fee_cap`` wei per gas
    and waiting ``timeout`` seconds at most for each to be mined."""

    chain: TxChain
    account: LocalAccount
    fee_cap: int
    timeout: float = 120.0
    poll: float = 0.5

    def send(self, *, to: str, data: bytes, what: str) -> Receipt:
        """Sends ``data`` to ``to`` and waits for its receipt; ``what`` names it in messages.

        Raises:
            RemoteCliError: the ledger would refuse it (with its reason), the base fee is above the
                cap, it reverted, or it was not mined in time.
        """
        sender = self.account.address
        try:
            gas = self.chain.estimate_gas(sender=sender, to=to, data=data)
        except ExecutionRevertedError as exc:
            reason = explain_revert(exc.data) or exc.message
            raise RemoteCliError(f"the ledger would refuse {what}: {reason}") from None
        quote = self.chain.fee_data()
        policy = FeePolicy(cap=self.fee_cap)
        if not policy.payable(quote.base_fee):
            raise RemoteCliError(
                f"the base fee is {quote.base_fee:,} wei, above the cap of {self.fee_cap:,} wei "
                "per gas (--max-fee-gwei)"
            )
        fees = policy.fees(base_fee=quote.base_fee, tip=quote.priority_fee)
        signed = self.account.sign_transaction(
            {
                "type": 2,
                "chainId": self.chain.chain_id(),
                "nonce": self.chain.pending_nonce(sender),
                "gas": int(gas * GAS_MARGIN),
                "maxFeePerGas": fees.max_fee,
                "maxPriorityFeePerGas": fees.priority,
                "to": HexStr(to),
                "value": 0,
                "data": data,
            }
        )
        return self._mined(self.chain.send_raw_transaction(signed.raw_transaction), what)

    def _mined(self, tx_hash: str, what: str) -> Receipt:
        deadline = time.monotonic() + self.timeout
        while (receipt := self.chain.receipt(tx_hash)) is None:
            if time.monotonic() > deadline:
                raise RemoteCliError(f"{what} ({tx_hash}) was not mined in {self.timeout:.0f} s")
            time.sleep(self.poll)
        if receipt.status != 1:
            raise RemoteCliError(f"{what} reverted in transaction {tx_hash}")
        return receipt
