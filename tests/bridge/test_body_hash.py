"""The body hash that makes a repeated event a duplicate or a conflict must never change: a brand's
event stored by an earlier version of the bridge is compared with the hash of its repeat. The hash
is SHA-256 of the event's canonical JSON, which ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` defined; orjson now writes it, and must write the same bytes."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.api.schemas import MAX_TWIN_ID
from bridge.domain.usage import UsageType
from bridge.intake.ingest import UsageReport


def _reference_hash(report: UsageReport) -> str:
    """The body hash as the bridge first defined it."""
    canonical = {
        "event_id": report.event_id,
        "twin_id": report.twin_id,
        "usage_type": int(report.usage_type),
        "quantity": report.quantity,
        "used_at": report.used_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "campaign_ref": report.campaign_ref,
        "asset_ref": report.asset_ref,
    }
    encoded = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode()).hexdigest()


_text = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=40)
_offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


@settings(max_examples=400, deadline=None)
@given(
    event_id=_text,
    twin_id=st.integers(min_value=0, max_value=MAX_TWIN_ID),
    usage_type=st.sampled_from(list(UsageType)),
    quantity=st.integers(min_value=-(2**70), max_value=2**70),
    used_at=st.datetimes(
        min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=_offsets
    ),
    campaign_ref=st.none() | _text,
    asset_ref=st.none() | _text,
)
def test_the_body_hash_is_the_one_json_dumps_defined(
    event_id: str,
    twin_id: int,
    usage_type: UsageType,
    quantity: int,
    used_at: datetime,
    campaign_ref: str | None,
    asset_ref: str | None,
) -> None:
    report = UsageReport(event_id, twin_id, usage_type, quantity, used_at, campaign_ref, asset_ref)
    assert report.body_hash == _reference_hash(report)


def test_known_hashes_stay_the_same() -> None:
    """Pinned values: escapes, non-ASCII, a big quantity (past orjson's 64 bits) and offsets."""
    at = datetime(2026, 11, 28, 9, 30, 15, 250, tzinfo=timezone(timedelta(hours=2)))
    plain = UsageReport("ev-1", 7, UsageType(0), 3, at)
    escaped = UsageReport(
        "ev-2", 2**63 - 1, UsageType(1), 2**65, at, 'quote " back \\ slash', "née ☃ \u2028 \x7f"
    )
    assert plain.canonical_json() == (
        b'{"asset_ref":null,"campaign_ref":null,"event_id":"ev-1","quantity":3,"twin_id":7,'
        b'"usage_type":0,"used_at":"2026-11-28T07:30:15.000250+00:00"}'
    )
    assert plain.body_hash == _reference_hash(plain)
    assert (
        escaped.canonical_json()
        == json.dumps(
            {
                "asset_ref": "née ☃ \u2028 \x7f",
                "campaign_ref": 'quote " back \\ slash',
                "event_id": "ev-2",
                "quantity": 2**65,
                "twin_id": 2**63 - 1,
                "usage_type": 1,
                "used_at": "2026-11-28T07:30:15.000250+00:00",
            },
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode()
    )
    assert escaped.body_hash == _reference_hash(escaped)
