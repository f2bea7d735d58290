"""Response models of the public read API (``bridge.api.routes.ledger``): what the indexer stored
from confirmed ledger events, each figure with the event it came from."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema

from bridge.domain.times import rfc3339
from bridge.domain.usage import UsageCode

TOKEN_DECIMALS: Final = 6
"""Decimals of the payment token (a USD stablecoin; the mock on local chains)."""

Amount = Annotated[
    int,
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^[0-9]+$",
            "description": "Token base units as a decimal string (uint256); divide by "
            "10^decimals for the token amount.",
            "examples": ["12500000"],
        }
    ),
]
SignedAmount = Annotated[
    int,
    PlainSerializer(str, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": "^-?[0-9]+$",
            "description": "A change in token base units as a decimal string (int256).",
        }
    ),
]
Address = Annotated[str, Field(description="EIP-55 checksummed address.")]
Hash32 = Annotated[str, Field(description="32 bytes, 0x-hex.")]
LedgerTime = Annotated[
    int,
    PlainSerializer(rfc3339, return_type=str),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "A time the ledger keeps (in unix seconds), RFC 3339 in UTC; one "
            "beyond 9999 (a license without end) reads 9999-12-31T23:59:59Z.",
            "examples": ["2026-12-05T16:00:40Z"],
        }
    ),
]
Decimals = Annotated[
    int, Field(description="Decimals of the payment token: amounts / 10^decimals are tokens.")
]


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class SourceOut(_Out):
    """The ledger event a figure came from."""

    tx_hash: Hash32 = Field(description="Transaction that emitted the event.")
    block_number: int
    log_index: int = Field(description="Position of the event in its block.")
    block_time: datetime = Field(description="Timestamp of the block.")


# ---------------------------------------------------------------- twins


class OwnerOut(_Out):
    address: Address
    source: SourceOut = Field(description="The mint or transfer that made it the owner.")


class PauseIntervalOut(_Out):
    paused_at: LedgerTime = Field(description="No use at or after this time is payable ...")
    paused_source: SourceOut
    unpaused_at: LedgerTime | None = Field(description="... until this time (null: still paused).")
    unpaused_source: SourceOut | None


class PauseOut(_Out):
    paused: bool
    paused_since: LedgerTime | None
    source: SourceOut | None = Field(description="The last pause or unpause (null: never).")
    history: list[PauseIntervalOut] = Field(
        description="Every pause, oldest first; uses dated inside any of them stay unpayable."
    )


class PayeeOut(_Out):
    account: Address
    bps: int = Field(description="Share in basis points (of 10,000).")


class SplitOut(_Out):
    payees: list[PayeeOut]
    owner_bps: int = Field(description="The owner's remainder: 10,000 minus the payees' shares.")
    source: SourceOut | None = Field(description="The PayeesSet event (null: never set).")


class PriceOut(_Out):
    usage_type: str | None = Field(
        description="Usage type name (campaign_image, video, ...), null for a code the bridge "
        "does not name."
    )
    usage_type_code: int = Field(description="The usage type's number on chain (uint8).")
    price: Amount = Field(description="Price per use, token base units.")


LicenseStateName = Literal["active", "not_started", "expired", "revoked", "superseded"]


class LicenseVersionOut(_Out):
    version: int
    state: LicenseStateName = Field(
        description="At the request time: active (in its effective window), not_started, "
        "expired, revoked, or superseded (ended by a later version from that one's start)."
    )
    valid_from: LedgerTime = Field(
        description="As accepted: the later of the offered start and the acceptance."
    )
    valid_until: LedgerTime
    effective_from: LedgerTime = Field(
        description="The window in which the version prices uses, after later acceptances and "
        "revocations ended it."
    )
    effective_until: LedgerTime
    revoked: bool = Field(description="A revocation ended this version.")
    max_uses: int | None = Field(description="Cap on uses (quantity); null: no cap.")
    uses: int = Field(description="Quantity of the paid usages this version priced.")
    purpose_hash: Hash32
    consent_hash: Hash32
    prices: list[PriceOut]
    terms_hash: Hash32 | None = Field(
        description="The EIP-712 struct hash of the terms the brand accepted."
    )
    offered_from: LedgerTime | None = Field(description="The start the offer named.")
    source: SourceOut = Field(description="The LicenseAccepted event (the brand's acceptance).")


class RevocationOut(_Out):
    version: int = Field(description="The newest version when it was revoked.")
    revoked_at: LedgerTime
    source: SourceOut


class LicenseOut(_Out):
    brand: Address
    state: LicenseStateName = Field(description="The state of the current version.")
    current_version: int = Field(
        description="The version active at the request time, else the newest one."
    )
    current: LicenseVersionOut = Field(description="Its terms.")
    versions: list[LicenseVersionOut] = Field(description="Every version, oldest first.")
    revocations: list[RevocationOut]


class OfferOut(_Out):
    """A license offer waiting for the brand's acceptance: not payable until the brand accepts
    ``version`` with ``terms_hash`` (``acceptLicense``)."""

    brand: Address
    version: int = Field(description="The number the version gets once accepted.")
    valid_from: LedgerTime = Field(
        description="As offered; the license starts no earlier than its acceptance."
    )
    valid_until: LedgerTime
    max_uses: int | None = Field(description="Cap on uses (quantity); null: no cap.")
    purpose_hash: Hash32
    consent_hash: Hash32
    prices: list[PriceOut]
    terms_hash: Hash32 = Field(
        description="What the brand accepts: the terms' EIP-712 struct hash."
    )
    source: SourceOut = Field(description="The LicenseOffered event.")


class TwinOut(_Out):
    """A twin as of the indexer's cursor."""

    twin_id: int
    owner: OwnerOut
    metadata_uri: str
    consent_hash: Hash32 = Field(description="Hash of the consent record the twin was minted with.")
    minted: SourceOut = Field(description="The TwinMinted event.")
    pause: PauseOut
    payees: SplitOut
    licenses: list[LicenseOut] = Field(
        description="One per brand that ever accepted a license, by brand."
    )
    offers: list[OfferOut] = Field(
        description="Offers waiting for a brand's acceptance (at most one per brand), by brand."
    )


class TwinPageOut(_Out):
    items: list[TwinOut]
    next: str | None = Field(description="The next page's URL (path and query), null at the end.")


# ---------------------------------------------------------------- usages


class SettledUsageOut(_Out):
    """A usage as the ledger settled it."""

    usage_id: int
    twin_id: int
    brand: Address
    usage_type: str | None = Field(description="Name, null for a code the bridge does not name.")
    usage_type_code: int
    quantity: int
    used_at: datetime
    code: UsageCode = Field(
        description="The outcome from the one vocabulary (README: usage codes): paid or why it was "
        "rejected; unknown_outcome for a code this bridge does not know (a discrepancy)."
    )
    sentence: str = Field(description="The outcome in a sentence.")
    outcome_code: int = Field(description="The ledger's outcome number (0 paid).")
    amount: Amount | None = Field(
        description="Royalty charged for a paid usage (price x quantity), null otherwise."
    )
    paid_from_escrow: Amount | None = Field(
        description="Of amount, what the brand's escrow paid; null unless paid and priced."
    )
    recorded_as_debt: Amount | None = Field(
        description="Of amount, what the escrow fell short of: recorded as the brand's debt."
    )
    license_version: int | None = Field(description="The version that priced a paid usage.")
    batch_digest: Hash32
    attester: Address
    tx_hash: Hash32
    block_number: int
    log_index: int
    position: int = Field(description="Index of the usage in its UsagesSettled event.")
    settled_at: datetime = Field(description="Timestamp of the settlement's block.")


class UsagePageOut(_Out):
    items: list[SettledUsageOut]
    next: str | None = Field(description="The next page's URL (path and query), null at the end.")
    decimals: Decimals = TOKEN_DECIMALS


# ---------------------------------------------------------------- earnings


class PayeeFlowOut(_Out):
    payee: Address
    distributed: Amount = Field(description="Distributed from the twin to this payee.")
    paid_out: Amount = Field(description="Of the twin's distributions to it, paid out.")
    claimable: Amount = Field(
        description="Distributed from the twin to it and not paid out, at the period's end."
    )


class TwinEarningsPeriodOut(_Out):
    period: str | None = Field(description="2030-01-31 or 2030-01 (UTC); null for the totals.")
    paid: Amount = Field(description="Charged for the twin's paid usages (price x quantity).")
    debt_recorded: Amount = Field(description="Part of paid the brands' escrow did not cover.")
    debt_repaid: Amount = Field(description="Debt later paid into the twin's account.")
    accrued: SignedAmount = Field(
        description="paid - debt_recorded + debt_repaid: credited to the twin's royalty account."
    )
    distributed: Amount = Field(description="Split from the twin's account to its payees.")
    paid_out: Amount = Field(description="Of the twin's distributions, paid out to payees.")
    undistributed: Amount = Field(description="The twin's royalty account at the period's end.")
    unpaid_debt: Amount = Field(description="Debt owed to the twin at the period's end.")
    claimable: Amount = Field(
        description="Distributed from the twin and not yet paid out, at the period's end."
    )
    payees: list[PayeeFlowOut]


class TwinEarningsOut(_Out):
    """A twin's royalties per period; flows count the events in [from, to), balances all events
    before each period's end."""

    twin_id: int
    period: Literal["day", "month"]
    from_: datetime | None = Field(serialization_alias="from")
    to: datetime | None
    decimals: Decimals = TOKEN_DECIMALS
    periods: list[TwinEarningsPeriodOut] = Field(description="Periods with any movement.")
    totals: TwinEarningsPeriodOut = Field(description="Flows over [from, to), balances at its end.")


class TwinShareOut(_Out):
    twin_id: int
    distributed: Amount


class PayeeEarningsPeriodOut(_Out):
    period: str | None = Field(description="2030-01-31 or 2030-01 (UTC); null for the totals.")
    distributed: Amount = Field(description="Credited to the payee from twins' royalties.")
    paid_out: Amount = Field(description="Paid out to the payee (PayeePaid).")
    claimable: Amount = Field(description="Distributed and not yet paid out, at the period's end.")
    twins: list[TwinShareOut] = Field(description="distributed, per twin.")


class PayeeEarningsOut(_Out):
    """A payee's (or twin owner's) royalties per period."""

    payee: Address
    period: Literal["day", "month"]
    from_: datetime | None = Field(serialization_alias="from")
    to: datetime | None
    decimals: Decimals = TOKEN_DECIMALS
    periods: list[PayeeEarningsPeriodOut] = Field(description="Periods with any movement.")
    totals: PayeeEarningsPeriodOut = Field(
        description="Flows over [from, to), claimable at its end."
    )


class PayoutOut(_Out):
    """One ``PayeePaid``: tokens that left the ledger to the payee."""

    payee: Address
    caller: Address = Field(description="Who called withdraw or payout (the relay's relayer).")
    amount: Amount
    source: SourceOut = Field(description="The PayeePaid event.")


class PayoutPageOut(_Out):
    items: list[PayoutOut] = Field(description="Newest first.")
    next: str | None = Field(description="The next (older) page's URL, null at the end.")
    decimals: Decimals = TOKEN_DECIMALS


# ---------------------------------------------------------------- brands


class BrandTotalsOut(_Out):
    deposited: Amount = Field(description="Σ EscrowDeposited.amount (escrow and debt together).")
    deposited_to_debt: Amount = Field(description="Σ EscrowDeposited.toDebt: went to debt first.")
    charged: Amount = Field(description="Σ UsagesSettled.paid: charged for paid usages.")
    spent_from_escrow: Amount = Field(description="Of charged, taken from escrow at settlement.")
    debt_recorded: Amount = Field(description="Σ DebtRecorded.amount: of charged, owed as debt.")
    debt_repaid: Amount = Field(description="Σ DebtRepaid.amount.")
    withdrawn: Amount = Field(description="Σ EscrowWithdrawn.amount.")


class DebtEntryOut(_Out):
    entry: int = Field(description="Position in the brand's debt queue (paid first in, first out).")
    twin_id: int = Field(description="The twin the debt is owed to.")
    recorded: Amount
    repaid: Amount
    outstanding: Amount
    sources: list[SourceOut] = Field(description="Its DebtRecorded and DebtRepaid events.")


class AccountChangeOut(_Out):
    event: str
    escrow_delta: SignedAmount
    debt_delta: SignedAmount
    escrow: Amount = Field(description="Escrow after the event.")
    debt: Amount
    debt_reserve: Amount
    pending_withdrawal: Amount
    source: SourceOut


class BrandAccountOut(_Out):
    """A brand's escrow and debt as of the indexer's cursor (``ITwinLedger.brandAccount``)."""

    brand: Address
    decimals: Decimals = TOKEN_DECIMALS
    escrow: Amount = Field(description="Unspent escrow.")
    debt: Amount = Field(description="Owed to twins, not yet repaid.")
    debt_reserve: Amount = Field(description="Deposited towards the debt, not yet paid to twins.")
    pending_withdrawal: Amount = Field(description="Requested escrow withdrawal (0: none).")
    withdrawal_unlocks_at: LedgerTime | None = Field(description="When it may be withdrawn.")
    source: SourceOut = Field(description="The event of the last change.")
    totals: BrandTotalsOut
    debt_entries: list[DebtEntryOut]
    changes: list[AccountChangeOut] = Field(description="The latest account changes, newest first.")


# ---------------------------------------------------------------- the index


class IndexStatusOut(_Out):
    indexed: bool = Field(description="False until the indexer wrote its first range.")
    ledger: Address | None
    block_number: int | None = Field(description="The last indexed (confirmed) block.")
    block_hash: Hash32 | None
    block_time: datetime | None
    updated_at: datetime | None = Field(description="When the indexer last moved its cursor.")
    block_age_seconds: float | None = Field(
        description="Request time minus the cursor block's time: how far the index lags behind "
        "the wall clock (the chain's head is not asked at request time)."
    )
