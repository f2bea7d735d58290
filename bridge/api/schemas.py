"""Pydantic models at the HTTP boundary: strict, no unknown fields."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_validator,
)

from bridge.domain.usage import UsageCode, UsageType
from bridge.settings import MAX_BATCH_EVENTS

CLOUDEVENT_TYPE: Final = "dev.twinbridge.usage.v1"
MAX_TWIN_ID: Final = 2**63 - 1  # the store's BIGINT; the ledger mints ids from 1 upwards
EVENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@~-]{0,127}$"

EventId = Annotated[
    str,
    Field(
        pattern=EVENT_ID_PATTERN,
        description="The brand's own id for the event: 1-128 characters of A-Z a-z 0-9 . _ : @ ~ -,"
        " starting with a letter or digit. Idempotency key, forever.",
        examples=["campaign-42-image-7"],
    ),
]
TwinId = Annotated[int, Field(ge=0, le=MAX_TWIN_ID, description="The twin's token id.")]
Ref = Annotated[
    str,
    Field(
        min_length=1,
        max_length=256,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="1-256 characters, any but control characters (U+0000-U+001F, U+007F).",
    ),
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _UsageFields(_Strict):
    twin_id: TwinId
    usage_type: Annotated[
        UsageType,
        Field(
            description="A name (" + ", ".join(t.api_name for t in UsageType) + ") "
            "or its number (0.." + str(max(UsageType)) + ")."
        ),
    ]
    quantity: Annotated[int, Field(description="Number of uses, 1..max_quantity.", examples=[1])]
    campaign_ref: Ref | None = None
    asset_ref: Ref | None = None

    @field_validator("usage_type", mode="plain")
    @classmethod
    def _usage_type(cls, value: Any) -> UsageType:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("usage type must be a name or a number")
        return UsageType.parse(value)


class UsageEventIn(_UsageFields):
    """One usage of a twin, as a brand reports it."""

    event_id: EventId
    used_at: AwareDatetime = Field(description="Time of use, RFC 3339 with a time zone.")


class UsageBatchIn(_Strict):
    """Up to 1,000 usage events in one request; answered per event."""

    events: list[UsageEventIn] = Field(min_length=1, max_length=MAX_BATCH_EVENTS)


class UsageDataIn(_UsageFields):
    """The ``data`` of a usage CloudEvent."""


class CloudEventIn(_Strict):
    """A usage event in the CloudEvents 1.0 JSON format; ``id`` is the event id, ``time`` the
    time of use."""

    specversion: Literal["1.0"]
    type: Literal["dev.twinbridge.usage.v1"]
    source: str = Field(min_length=1, max_length=512)
    id: EventId
    time: AwareDatetime
    datacontenttype: Literal["application/json"] | None = None
    subject: str | None = Field(default=None, max_length=512)
    data: UsageDataIn


CloudEventBatchIn = Annotated[list[CloudEventIn], Field(min_length=1, max_length=MAX_BATCH_EVENTS)]


def _shape(body: Any) -> str | None:
    if isinstance(body, list):
        return "cloudevent_batch"
    if not isinstance(body, dict):
        return None
    if "events" in body:
        return "batch"
    if "specversion" in body:
        return "cloudevent"
    return "event"


UsageBody = Annotated[
    Annotated[UsageEventIn, Tag("event")]
    | Annotated[UsageBatchIn, Tag("batch")]
    | Annotated[CloudEventIn, Tag("cloudevent")]
    | Annotated[CloudEventBatchIn, Tag("cloudevent_batch")],
    Discriminator(
        _shape,
        custom_error_type="body_shape",
        custom_error_message='expected a usage event, {"events": [...]}, a CloudEvent '
        "or an array of CloudEvents",
    ),
]
USAGE_BODY: Final[TypeAdapter[Any]] = TypeAdapter(UsageBody)


_CODE_DESCRIPTION: Final = (
    "What became of the usage, from the one vocabulary (README: usage codes): `paid` once "
    "settled, the ledger's outcome once rejected; absent while it is on its way or held."
)


class WaitingOut(BaseModel):
    """Why an accepted usage is not settled yet."""

    code: Literal["waiting_for_chain_clock"]
    sentence: str = Field(
        examples=["settles once the chain's clock passes 2026-12-05T16:00:40Z (in about 40 s)"]
    )
    until: datetime = Field(description="The time the chain's clock must pass (its used_at).")


class UsageEventOut(BaseModel):
    """A stored usage and where it is: accepted → submitted → settled, or rejected; held when its
    batches kept reverting (``error`` says why). Times are RFC 3339, amounts base-unit strings."""

    event_id: str
    usage_id: int
    status: Literal["accepted", "submitted", "settled", "rejected", "held"]
    twin_id: int
    usage_type: str
    quantity: int
    used_at: datetime
    campaign_ref: str | None = None
    asset_ref: str | None = None
    received_at: datetime
    code: UsageCode | None = Field(default=None, description=_CODE_DESCRIPTION)
    sentence: str | None = Field(default=None, description="The code in a sentence.")
    outcome_code: int | None = Field(
        default=None, description="The ledger's outcome number (0 paid), once settled or rejected."
    )
    tx_hash: str | None = Field(default=None, description="Settlement transaction.")
    block_number: int | None = None
    log_index: int | None = None
    amount: str | None = Field(
        default=None, description="Royalty charged, payment-token base units (decimal string)."
    )
    paid_from_escrow: str | None = Field(
        default=None, description="Of `amount`, what the brand's escrow paid (base units)."
    )
    recorded_as_debt: str | None = Field(
        default=None,
        description="Of `amount`, what the escrow fell short of: the brand's debt to the twin.",
    )
    waiting: WaitingOut | None = Field(
        default=None, description="An accepted usage dated after the chain's clock waits for it."
    )
    error: str | None = Field(
        default=None, description="Why settling failed, if held (the last attempt's error)."
    )


class UsageAnswerOut(UsageEventOut):
    """An event stored now (202, ``replayed`` false) or before with the same body (200,
    ``replayed`` true): the usage as it stands, as ``GET /v1/usage-events/{event_id}`` answers."""

    replayed: bool


class UsageRefusalOut(BaseModel):
    """An event refused at the door: nothing was stored, so its id stays free for a corrected
    body."""

    event_id: str
    status: Literal["refused"]
    code: UsageCode = Field(description="Why, from the one vocabulary (README: usage codes).")
    sentence: str = Field(description="Why, for this event, in a sentence.")


class BatchResultOut(BaseModel):
    """One answer per event, in the order sent."""

    results: list[UsageAnswerOut | UsageRefusalOut]


class UsageEventPageOut(BaseModel):
    """A brand's usage events, newest first."""

    items: list[UsageEventOut]
    next: str | None = Field(description="The next page's URL (path and query), null at the end.")


class BrandOut(BaseModel):
    """The brand an API key belongs to."""

    name: str
    address: str = Field(description="The brand's on-chain address (escrow and licenses).")


class HealthOut(BaseModel):
    status: Literal["ok"]


class ReadyOut(BaseModel):
    status: Literal["ready", "unavailable"]
    checks: dict[str, str]
