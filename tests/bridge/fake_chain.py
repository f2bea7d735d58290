"""An in-memory chain with a ledger that settles like ``TwinLedger.settle`` would (for the worker's
unit tests): nonces, a mempool, blocks, receipts with ``UsagesSettled`` logs, reorgs, drops and
injected send errors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from eth_abi.abi import encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.typed_transactions import TypedTransaction
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from bridge.chain.client import Block, BlockTag, FeeData, LogEntry, PendingTx, Receipt
from bridge.chain.ledger import (
    IS_USAGE_PROCESSED_SELECTOR,
    PRICE_AT_SELECTOR,
    decode_settle_calldata,
    usages_settled_log,
)
from bridge.domain import eip712
from bridge.domain.codec import Outcome, Usage
from bridge.errors import (
    ExecutionRevertedError,
    NonceTooLowError,
    ReplacementUnderpricedError,
    TransactionAlreadyKnownError,
)

LEDGER = "0x000000000000000000000000000000000000ED6e"
CHAIN_ID = 31337
START_TIME = 1_772_366_400  # 2026-03-01 12:00 UTC
DEFAULT_PRICE = 1_000_000
STRANGER = "0x000000000000000000000000000000000000dEaD"
TOKEN = "0x000000000000000000000000000000000000700e"  # noqa: S105 - an address
_TOKEN_ANSWERS: dict[bytes, bytes] = {
    keccak(text=signature)[:4]: encode([kind], [value])
    for signature, kind, value in (
        ("paymentToken()", "address", TOKEN),
        ("symbol()", "string", "mUSD"),
        ("name()", "string", "Mock USD"),
        ("decimals()", "uint8", 6),
    )
}
"""What the fake ledger's payment token answers, by selector."""
"""Who copies a pending settlement (``FakeChain.front_run``)."""


@dataclass
class _Tx:
    tx_hash: str
    raw: bytes
    sender: str
    nonce: int
    to: str
    data: bytes
    max_fee: int
    priority: int


@dataclass
class FakeChain:
    """Automines every sent transaction unless ``automine`` is off (then ``mine()``)."""

    automine: bool = True
    attesters: set[str] = field(default_factory=set)
    outcomes: dict[int, Outcome] = field(default_factory=dict)
    """Usage id -> outcome the ledger gives it (default: paid)."""
    prices: dict[tuple[int, str, int], int] = field(default_factory=dict)
    base_fee: int = 10**9
    priority_fee: int = 10**9
    send_errors: list[Exception] = field(default_factory=list)
    """Raised (in order) by the next sends instead of accepting the transaction."""
    blocks: list[Block] = field(default_factory=list)
    nonces: dict[str, int] = field(default_factory=dict)
    mempool: dict[str, _Tx] = field(default_factory=dict)
    mined: dict[str, tuple[_Tx, Receipt]] = field(default_factory=dict)
    processed: set[int] = field(default_factory=set)
    paid: dict[int, int] = field(default_factory=dict)
    """Usage id -> amount paid, across all settlements (a second payment would be a bug)."""
    sent: list[str] = field(default_factory=list)
    """Hash of every accepted send, repeats included."""
    estimate_reverts: set[int] = field(default_factory=set)
    """Usage ids whose presence makes gas estimation revert (as a processed one does)."""
    estimates: int = 0
    block_lookups: list[BlockTag] = field(default_factory=list)
    """Every ``block(tag)`` asked, in order."""
    produced: int = 0
    """Blocks made so far, reorged ones included (a new block never has an old one's hash)."""

    def __post_init__(self) -> None:
        if not self.blocks:
            self.blocks.append(Block(number=0, hash=self._block_hash(0, 0), timestamp=START_TIME))

    # ---------------------------------------------------------- ChainClient

    def chain_id(self) -> int:
        return CHAIN_ID

    def block(self, tag: BlockTag = "latest") -> Block | None:
        self.block_lookups.append(tag)
        if tag == "latest":
            return self.blocks[-1]
        if tag == "finalized":
            return self.blocks[0]
        return self.blocks[tag] if 0 <= tag < len(self.blocks) else None

    def pending_nonce(self, address: str) -> int:
        nonce = self.nonces.get(address.lower(), 0)
        pending = sorted(t.nonce for t in self.mempool.values() if t.sender == address.lower())
        for n in pending:
            if n == nonce:
                nonce += 1
        return nonce

    def fee_data(self) -> FeeData:
        return FeeData(base_fee=self.base_fee, priority_fee=self.priority_fee)

    def estimate_gas(self, *, sender: str, to: str, data: bytes) -> int:
        self.estimates += 1
        groups = decode_settle_calldata(data).groups
        usages = {Usage.decode(w).usage_id for _, words in groups for w in words}
        bad = usages & (self.estimate_reverts | self.processed)
        if bad:
            raise ExecutionRevertedError("fake", 3, f"execution reverted: usages {sorted(bad)}")
        return 60_000 + 16 * len(data)

    def call(self, *, to: str, data: bytes, block: BlockTag = "latest") -> bytes:
        from eth_abi.abi import decode, encode

        if data[:4] == IS_USAGE_PROCESSED_SELECTOR:
            _brand, usage_id = decode(["address", "uint64"], data[4:])
            return encode(["bool"], [int(usage_id) in self.processed])
        token_answer = _TOKEN_ANSWERS.get(data[:4])
        if token_answer is not None:  # the payment token the worker's log shows amounts in
            return token_answer
        assert data[:4] == PRICE_AT_SELECTOR
        twin_id, brand, usage_type, _at = decode(
            ["uint256", "address", "uint8", "uint40"], data[4:]
        )
        price = self.price(int(twin_id), str(brand), int(usage_type))
        return encode(["uint8", "uint256"], [0, price])

    def call_many(
        self, *, to: str, calls: Sequence[bytes], block: BlockTag = "latest"
    ) -> list[bytes]:
        return [self.call(to=to, data=data, block=block) for data in calls]

    def send_raw_transaction(self, raw: bytes) -> str:
        if self.send_errors:
            raise self.send_errors.pop(0)
        tx_hash = HexBytes(keccak(raw)).to_0x_hex()
        if tx_hash in self.mempool or tx_hash in self.mined:
            raise TransactionAlreadyKnownError("fake://chain", -32000, "already known")
        fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        sender = Account.recover_transaction(raw).lower()
        nonce = int(fields["nonce"])
        if nonce < self.nonces.get(sender, 0):
            raise NonceTooLowError("fake://chain", -32000, "nonce too low")
        tx = _Tx(
            tx_hash=tx_hash,
            raw=raw,
            sender=sender,
            nonce=nonce,
            to=to_checksum_address(bytes(fields["to"])),
            data=bytes(fields["data"]),
            max_fee=int(fields["maxFeePerGas"]),
            priority=int(fields["maxPriorityFeePerGas"]),
        )
        for old in list(self.mempool.values()):
            if (old.sender, old.nonce) != (sender, nonce):
                continue
            if tx.max_fee * 10 < old.max_fee * 11 or tx.priority * 10 < old.priority * 11:
                raise ReplacementUnderpricedError(
                    "fake://chain", -32000, "replacement transaction underpriced"
                )
            del self.mempool[old.tx_hash]
        self.mempool[tx_hash] = tx
        self.sent.append(tx_hash)
        if self.automine:
            self.mine()
        return tx_hash

    def receipt(self, tx_hash: str) -> Receipt | None:
        found = self.mined.get(tx_hash)
        return None if found is None else found[1]

    def transaction(self, tx_hash: str) -> PendingTx | None:
        if tx_hash in self.mempool:
            return PendingTx(tx_hash=tx_hash, nonce=self.mempool[tx_hash].nonce, block_number=None)
        found = self.mined.get(tx_hash)
        if found is None:
            return None
        return PendingTx(tx_hash=tx_hash, nonce=found[0].nonce, block_number=found[1].block_number)

    def logs(
        self, *, address: str, from_block: int, to_block: int, topics: Sequence[bytes | None] = ()
    ) -> list[LogEntry]:
        return [
            log
            for _, receipt in self.mined.values()
            for log in receipt.logs
            if from_block <= log.block_number <= to_block
            and all(t is None or t == log.topics[i] for i, t in enumerate(topics))
        ]

    # ---------------------------------------------------------- levers

    def price(self, twin_id: int, brand: str, usage_type: int) -> int:
        return self.prices.get((twin_id, brand.lower(), usage_type), DEFAULT_PRICE)

    @staticmethod
    def _block_hash(number: int, salt: int) -> str:
        return HexBytes(keccak(text=f"block {number} {salt}")).to_0x_hex()

    def _new_block(self) -> Block:
        number = len(self.blocks)
        self.produced += 1
        block = Block(
            number=number,
            hash=self._block_hash(number, self.produced),
            timestamp=self.blocks[-1].timestamp + 1,
        )
        self.blocks.append(block)
        return block

    def front_run(self, tx_hash: str) -> str:
        """A stranger copies the calldata of the pending transaction ``tx_hash`` and gets it mined
        first, in a block of its own; the original stays pending. The copy's hash."""
        ours = self.mempool[tx_hash]
        sender = STRANGER.lower()
        copy = _Tx(
            tx_hash=HexBytes(keccak(b"copy of " + ours.raw)).to_0x_hex(),
            raw=b"",
            sender=sender,
            nonce=self.nonces.get(sender, 0),
            to=ours.to,
            data=ours.data,
            max_fee=ours.max_fee * 2,
            priority=ours.priority * 2,
        )
        block = self._new_block()
        self.nonces[sender] = copy.nonce + 1
        receipt, _ = self._execute(copy, block, 0)
        self.mined[copy.tx_hash] = (copy, receipt)
        return copy.tx_hash

    def mine(self, *, empty: bool = False) -> Block:
        """Mines a block with the mempool's next transactions per sender (unless ``empty``)."""
        block = self._new_block()
        if empty:
            return block
        log_index = 0
        for tx in sorted(self.mempool.values(), key=lambda t: (t.sender, t.nonce)):
            if tx.nonce != self.nonces.get(tx.sender, 0):
                continue
            del self.mempool[tx.tx_hash]
            self.nonces[tx.sender] = tx.nonce + 1
            receipt, log_index = self._execute(tx, block, log_index)
            self.mined[tx.tx_hash] = (tx, receipt)
        return block

    def _execute(self, tx: _Tx, block: Block, log_index: int) -> tuple[Receipt, int]:
        deadline, groups, attester, signature = decode_settle_calldata(tx.data)
        data = eip712.usage_batch(deadline, groups, chain_id=CHAIN_ID, ledger=LEDGER)
        signer = Account.recover_message(encode_typed_data(full_message=data), signature=signature)
        usages = [Usage.decode(w) for _, words in groups for w in words]
        reverted = (
            deadline < block.timestamp
            or signer != attester
            or attester.lower() not in self.attesters
            or any(u.usage_id in self.processed for u in usages)
            or tx.to != LEDGER
        )
        logs: list[LogEntry] = []
        if not reverted:
            for brand, words in groups:
                results, paid = [], 0
                for word in words:
                    usage = Usage.decode(word)
                    self.processed.add(usage.usage_id)
                    outcome = self.outcomes.get(usage.usage_id, Outcome.PAID)
                    if outcome is Outcome.PAID:
                        amount = self.price(usage.twin_id, brand, usage.usage_type) * usage.quantity
                        self.paid[usage.usage_id] = self.paid.get(usage.usage_id, 0) + amount
                        paid += amount
                    results.append(word | int(outcome))
                topics, payload = usages_settled_log(
                    batch_digest=eip712.digest(data),
                    brand=brand,
                    attester=attester,
                    paid=paid,
                    results=results,
                )
                logs.append(
                    LogEntry(
                        address=LEDGER,
                        topics=topics,
                        data=payload,
                        block_number=block.number,
                        block_hash=block.hash,
                        tx_hash=tx.tx_hash,
                        log_index=log_index,
                    )
                )
                log_index += 1
        receipt = Receipt(
            tx_hash=tx.tx_hash,
            status=0 if reverted else 1,
            block_number=block.number,
            block_hash=block.hash,
            gas_used=50_000 + 5_000 * len(usages),
            effective_gas_price=self.base_fee + self.priority_fee,
            logs=tuple(logs),
        )
        return receipt, log_index

    def reorg(self, depth: int = 1) -> None:
        """Drops the last ``depth`` blocks; their transactions go back to the mempool, unpaid."""
        for _ in range(depth):
            gone = self.blocks.pop()
            for tx_hash, (tx, receipt) in list(self.mined.items()):
                if receipt.block_number != gone.number:
                    continue
                del self.mined[tx_hash]
                self.mempool[tx_hash] = tx
                self.nonces[tx.sender] = min(self.nonces[tx.sender], tx.nonce)
                for log in receipt.logs:
                    for word in _results(log):
                        usage = Usage.decode(word)
                        self.processed.discard(usage.usage_id)
                        self.paid.pop(usage.usage_id, None)

    def drop(self, tx_hash: str) -> None:
        """The mempool forgets the transaction (as a node under pressure does)."""
        del self.mempool[tx_hash]


def _results(log: LogEntry) -> list[int]:
    from eth_abi.abi import decode

    _, results = decode(["uint256", "uint256[]"], log.data)
    return [int(w) for w in results]
