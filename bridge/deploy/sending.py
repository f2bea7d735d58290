"""Sending a deployment's transactions: signed locally with the deployer's key (EIP-1559, priced
by the network's ``FeePolicy``), consecutive nonces, each receipt waited for, then the
confirmations. Works against any RPC endpoint, not only a dev node's unlocked accounts."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final, NamedTuple, Protocol

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from hexbytes import HexBytes
from rich.console import Console
from web3 import Web3
from web3.exceptions import TimeExhausted
from web3.types import TxParams, TxReceipt

from bridge.deploy.errors import DeploymentError
from bridge.deploy.networks import NetworkConfig
from bridge.domain.fees import FeePolicy, Fees

GAS_MARGIN: Final = 1.2
"""Gas limit = estimate x this."""
DEFAULT_TIP: Final = 10**9
"""The tip offered when the node has no ``eth_maxPriorityFeePerGas``."""


class Step(Protocol):
    """One transaction of a deployment (``bridge.deploy.plan``)."""

    @property
    def description(self) -> str: ...
    @property
    def data(self) -> HexBytes: ...
    @property
    def to(self) -> ChecksumAddress | None:
        """None for a contract creation."""
        ...


class FeeQuote(NamedTuple):
    """The latest base fee and the fees a transaction offers at it."""

    base_fee: int
    fees: Fees

    @property
    def per_gas_now(self) -> int:
        """What a unit of gas costs now: base fee plus tip, at most the max fee."""
        return min(self.fees.max_fee, self.base_fee + self.fees.priority)


class Sender:
    """Sends one deployment's transactions, signed locally, and waits for them."""

    def __init__(
        self, w3: Web3, network: NetworkConfig, account: LocalAccount, console: Console
    ) -> None:
        self.w3 = w3
        self.network = network
        self.account = account
        self.console = console
        self.policy = FeePolicy(cap=network.max_fee_per_gas_wei)

    def quote(self) -> FeeQuote:
        """The fees of the moment under the network's cap.

        Raises:
            DeploymentError: the base fee is above the cap.
        """
        block = self.w3.eth.get_block("latest")
        base_fee = int(block.get("baseFeePerGas", 0))
        try:
            tip = int(self.w3.eth.max_priority_fee)
        except Exception:  # nodes without eth_maxPriorityFeePerGas
            tip = DEFAULT_TIP
        if not self.policy.payable(base_fee):
            raise DeploymentError(
                f"the base fee on {self.network.name} is {base_fee:,} wei, above the network's "
                f"fee cap of {self.policy.cap:,} wei (max_fee_per_gas_wei): wait for cheaper "
                "blocks or raise the cap"
            )
        return FeeQuote(base_fee, self.policy.fees(base_fee=base_fee, tip=tip))

    def estimate(self, step: Step) -> int:
        """The node's gas estimate of ``step`` (without the margin)."""
        params: TxParams = {"from": self.account.address, "data": step.data}
        if step.to is not None:
            params["to"] = step.to
        try:
            return int(self.w3.eth.estimate_gas(params))
        except Exception as exc:  # reverts and RPC errors alike stop the deploy
            raise DeploymentError(f"{step.description} would fail: {exc}") from exc

    def send_all(self, steps: Sequence[Step], nonce: int) -> list[TxReceipt]:
        """Sends ``steps`` with consecutive nonces from ``nonce``, then waits for every receipt."""
        fees = self.quote().fees
        hashes = [self._send(step, nonce + i, fees) for i, step in enumerate(steps)]
        return [self._receipt(step, tx_hash) for step, tx_hash in zip(steps, hashes, strict=True)]

    def _send(self, step: Step, nonce: int, fees: Fees) -> HexBytes:
        params: TxParams = {
            "type": 2,
            "chainId": self.network.chain_id,
            "nonce": nonce,  # type: ignore[typeddict-item]
            "gas": int(self.estimate(step) * GAS_MARGIN),
            "maxFeePerGas": fees.max_fee,  # type: ignore[typeddict-item]
            "maxPriorityFeePerGas": fees.priority,  # type: ignore[typeddict-item]
            "value": 0,  # type: ignore[typeddict-item]
            "data": step.data,
        }
        if step.to is not None:
            params["to"] = step.to
        signed = self.account.sign_transaction(params)  # type: ignore[arg-type]
        try:
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        except Exception as exc:  # report the node's refusal in words
            raise DeploymentError(f"the node refused {step.description}: {exc}") from exc
        self.console.print(f"  sent {step.description}: {tx_hash.to_0x_hex()}", highlight=False)
        return HexBytes(tx_hash)

    def _receipt(self, step: Step, tx_hash: HexBytes) -> TxReceipt:
        try:
            receipt = self.w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=self.network.receipt_timeout_s, poll_latency=self._poll_s
            )
        except TimeExhausted as exc:
            raise DeploymentError(
                f"{step.description} ({tx_hash.to_0x_hex()}) was not mined within "
                f"{self.network.receipt_timeout_s:.0f} s"
            ) from exc
        if receipt["status"] != 1:
            raise DeploymentError(f"{step.description} reverted in {tx_hash.to_0x_hex()}")
        self.console.print(
            f"  [green]✓[/] {step.description}: block {receipt['blockNumber']}, "
            f"gas {receipt['gasUsed']:,}",
            highlight=False,
        )
        return receipt

    @property
    def _poll_s(self) -> float:
        return min(1.0, self.network.block_time_s / 4)

    def wait_confirmations(self, receipts: Sequence[TxReceipt]) -> None:
        """Waits until the last receipt has ``confirmations`` blocks (its own included) and checks
        that no receipt moved to another block meanwhile."""
        if not receipts:
            return
        target = max(int(r["blockNumber"]) for r in receipts) + self.network.confirmations - 1
        with self.console.status(
            f"waiting for {self.network.confirmations} confirmation(s) (block {target})"
        ):
            self._wait_for_block(target)
        for receipt in receipts:
            again = self.w3.eth.get_transaction_receipt(receipt["transactionHash"])
            if again is None or again["blockHash"] != receipt["blockHash"]:
                raise DeploymentError(
                    f"transaction {receipt['transactionHash'].to_0x_hex()} was reorganised out "
                    "of its block while waiting for confirmations: run the deployment again"
                )
        self.console.print(
            f"  [green]✓[/] {self.network.confirmations} confirmation(s) at block {target}",
            highlight=False,
        )

    def _wait_for_block(self, target: int) -> None:
        deadline = time.monotonic() + self.network.receipt_timeout_s
        while self.w3.eth.block_number < target:
            if time.monotonic() > deadline:
                raise DeploymentError(f"block {target} did not come within the timeout")
            time.sleep(self._poll_s)
