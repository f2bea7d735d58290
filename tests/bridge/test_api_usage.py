"""The usage API on SQLite with the fake ledger: auth, rate limit, idempotency, refusals,
problem details, batches, status and metrics."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from bridge.domain.codec import Outcome
from bridge.domain.usage import VOCABULARY, UsageCode, split_payment
from bridge.store.models import UsageEvent, UsageStatus
from bridge.store.settlement import record_chain_head

from .conftest import BRAND_ADDRESS, NOW, OTHER_ADDRESS, TWIN, Api, register_brand
from .fakes import FakeLicense

URL = "/v1/usage-events"
PROBLEM = "application/problem+json"


def event(event_id: str = "e-1", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": event_id,
        "twin_id": TWIN,
        "usage_type": "campaign_image",
        "quantity": 2,
        "used_at": "2026-03-01T11:00:00Z",
    }
    body.update(changes)
    return body


def state(
    event_id: str = "e-1", usage_id: int = 1, *, replayed: bool | None = None, **changes: Any
) -> dict[str, Any]:
    """The event of ``event(event_id)`` as it stands once accepted, and ``replayed`` when it is a
    POST's answer (without ``received_at``: ``shown`` checks it against the store)."""
    body: dict[str, Any] = {
        "event_id": event_id,
        "usage_id": usage_id,
        "status": "accepted",
        "twin_id": TWIN,
        "usage_type": "campaign_image",
        "quantity": 2,
        "used_at": "2026-03-01T11:00:00Z",
        **changes,
    }
    if replayed is not None:
        body["replayed"] = replayed
    return body


def shown(api: Api, data: dict[str, Any], brand_id: int | None = None) -> dict[str, Any]:
    """An answer (an event, a batch's results or a page's items) with each event's ``received_at``
    checked, exactly, against the time the store received it, and left out."""
    if "results" in data or "items" in data:
        key = "results" if "results" in data else "items"
        return {**data, key: [shown(api, item, brand_id) for item in data[key]]}
    if "received_at" not in data:
        return data
    with api.store.session() as session:
        stored = session.scalar(
            select(UsageEvent.created_at).where(
                UsageEvent.brand_id == (brand_id or api.brand.id),
                UsageEvent.event_id == data["event_id"],
            )
        )
    assert stored is not None
    assert data["received_at"] == stored.isoformat().replace("+00:00", "Z")
    return {k: v for k, v in data.items() if k != "received_at"}


def stored_count(api: Api) -> int:
    with api.store.session() as session:
        return session.scalar(select(func.count()).select_from(UsageEvent)) or 0


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:twin-bridge:problem:{slug}"
    assert body["status"] == status
    return body


# ---------------------------------------------------------------- auth and rate limit


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer tb_live_unknown"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer "},
    ],
    ids=["missing", "unknown", "basic", "empty"],
)
def test_post_without_valid_key_is_401_with_one_answer(api: Api, headers: dict[str, str]) -> None:
    response = api.client.post(URL, json=event(), headers=headers)
    body = problem(response, 401, "unauthorized")
    assert body == {
        "type": "urn:twin-bridge:problem:unauthorized",
        "title": "Unauthorized",
        "status": 401,
        "detail": "a valid API key is required: Authorization: Bearer <key>",
        "instance": URL,
    }
    assert response.headers["www-authenticate"] == "Bearer"
    assert stored_count(api) == 0


def test_key_of_one_brand_differs_by_a_character_is_401(api: Api) -> None:
    wrong = api.key[:-1] + ("A" if api.key[-1] != "A" else "B")
    response = api.client.get(f"{URL}/e-1", headers={"Authorization": f"Bearer {wrong}"})
    unknown = api.client.get(f"{URL}/e-1", headers={"Authorization": "Bearer tb_live_x"})
    assert response.status_code == unknown.status_code == 401
    assert response.content == unknown.content


def test_rate_limit_answers_429_with_retry_after(make_api: Callable[..., Api]) -> None:
    api = make_api(rate_limit_per_s=0.5, rate_limit_burst=2)
    for _ in range(2):
        assert api.client.get(f"{URL}/none", headers=api.auth).status_code == 404
    response = api.client.get(f"{URL}/none", headers=api.auth)
    body = problem(response, 429, "rate-limited")
    assert response.headers["retry-after"] == "2"
    assert body["detail"] == ("rate limit of 0.5 requests/s (burst 2) exceeded; retry in 2 s")


def test_rate_limit_is_per_brand(make_api: Callable[..., Api]) -> None:
    api = make_api(rate_limit_per_s=0.5, rate_limit_burst=1)
    _, other_key = register_brand(api.store, "Other", OTHER_ADDRESS)
    assert api.client.get(f"{URL}/x", headers=api.auth).status_code == 404
    assert api.client.get(f"{URL}/x", headers=api.auth).status_code == 429
    other = {"Authorization": f"Bearer {other_key}"}
    assert api.client.get(f"{URL}/x", headers=other).status_code == 404


# ---------------------------------------------------------------- single events


def test_single_event_is_accepted_and_stored_before_the_answer(api: Api) -> None:
    response = api.client.post(URL, json=event(), headers=api.auth)
    assert response.status_code == 202
    assert shown(api, response.json()) == state(replayed=False)
    assert response.headers["location"] == f"{URL}/e-1"
    with api.store.session() as session:
        row = session.scalars(select(UsageEvent)).one()
    assert (row.id, row.brand_id, row.event_id) == (1, api.brand.id, "e-1")
    assert (row.twin_id, row.usage_type, row.quantity) == (TWIN, 0, 2)
    assert row.used_at == datetime(2026, 3, 1, 11, 0, tzinfo=UTC)
    assert row.status is UsageStatus.ACCEPTED
    assert api.chain.calls == [(BRAND_ADDRESS, TWIN, 0, int(row.used_at.timestamp()))]


def test_usage_type_by_number_and_by_name_are_the_same_body(api: Api) -> None:
    first = api.client.post(URL, json=event(usage_type="video"), headers=api.auth)
    again = api.client.post(URL, json=event(usage_type=1), headers=api.auth)
    assert first.status_code == 202
    assert again.status_code == 200
    assert shown(api, again.json()) == state(usage_type="video", replayed=True)


def test_repeat_answers_the_event_as_it_stands_and_stores_once(api: Api) -> None:
    api.client.post(URL, json=event("a"), headers=api.auth)
    api.client.post(URL, json=event("b"), headers=api.auth)
    response = api.client.post(URL, json=event("a"), headers=api.auth)
    assert response.status_code == 200
    assert shown(api, response.json()) == state("a", replayed=True)
    assert response.headers["location"] == f"{URL}/a"
    assert stored_count(api) == 2


def test_repeat_of_a_settled_event_answers_its_settlement(api: Api) -> None:
    """A replay is not a bare "duplicate": it answers what ``GET`` answers now, here settled
    with the transaction and how it was paid."""
    api.client.post(URL, json=event(), headers=api.auth)
    with api.store.session() as session:
        session.execute(
            update(UsageEvent).values(
                status=UsageStatus.SETTLED,
                tx_hash="0x" + "ab" * 32,
                block_number=12,
                log_index=3,
                amount=1_000_000,
                paid_from_escrow=400_000,
                recorded_as_debt=600_000,
            )
        )
        session.commit()
    response = api.client.post(URL, json=event(), headers=api.auth)
    settled = state(
        status="settled",
        code="paid",
        sentence="paid",
        outcome_code=0,
        tx_hash="0x" + "ab" * 32,
        block_number=12,
        log_index=3,
        amount="1000000",
        paid_from_escrow="400000",
        recorded_as_debt="600000",
    )
    assert (response.status_code, shown(api, response.json())) == (
        200,
        {**settled, "replayed": True},
    )
    assert shown(api, api.client.get(f"{URL}/e-1", headers=api.auth).json()) == settled
    batch = api.client.post(URL, json={"events": [event()]}, headers=api.auth)
    assert shown(api, batch.json()) == {"results": [{**settled, "replayed": True}]}


def test_a_refused_event_id_is_not_kept(api: Api) -> None:
    """Refused at the door, nothing is stored: the brand may fix the body and send the same id
    again (202); once stored, another body under it is a 409."""
    refused = api.client.post(URL, json=event(twin_id=99), headers=api.auth)
    assert problem(refused, 422, "usage-refused")["code"] == "unknown_twin"
    assert stored_count(api) == 0
    fixed = api.client.post(URL, json=event(), headers=api.auth)
    assert (fixed.status_code, shown(api, fixed.json())) == (202, state(replayed=False))
    other = api.client.post(URL, json=event(quantity=3), headers=api.auth)
    assert problem(other, 409, "event-id-conflict")["code"] == "event_id_conflict"
    assert stored_count(api) == 1


def test_repeat_is_a_duplicate_even_after_the_time_window_passed(api: Api) -> None:
    assert api.client.post(URL, json=event(), headers=api.auth).status_code == 202
    api.clock.now = NOW + timedelta(days=40)
    api.chain.licenses.clear()  # the license is gone and the usage is now 35+ days old
    response = api.client.post(URL, json=event(), headers=api.auth)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["replayed"]) == ("accepted", True)


def test_same_event_id_with_another_body_is_409(api: Api) -> None:
    api.client.post(URL, json=event(), headers=api.auth)
    response = api.client.post(URL, json=event(quantity=3), headers=api.auth)
    body = problem(response, 409, "event-id-conflict")
    sentence = "event id 'e-1' was used before with a different body"
    assert (body["detail"], body["sentence"]) == (sentence, sentence)
    assert body["event_id"] == "e-1"
    assert body["code"] == "event_id_conflict"
    assert stored_count(api) == 1


def test_same_event_id_of_two_brands_are_two_usages(api: Api) -> None:
    api.chain.grant(
        OTHER_ADDRESS,
        TWIN,
        FakeLicense(frozenset({0}), 0, int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())),
    )
    other, other_key = register_brand(api.store, "Other", OTHER_ADDRESS)
    api.client.post(URL, json=event(), headers=api.auth)
    response = api.client.post(URL, json=event(), headers={"Authorization": f"Bearer {other_key}"})
    assert shown(api, response.json(), other.id) == state(usage_id=2, replayed=False)


def test_cloudevent_shape_is_accepted(api: Api) -> None:
    cloud = {
        "specversion": "1.0",
        "type": "dev.twinbridge.usage.v1",
        "source": "/brands/atelier/dam",
        "id": "ce-1",
        "time": "2026-03-01T12:00:00+01:00",
        "datacontenttype": "application/json",
        "data": {"twin_id": TWIN, "usage_type": "video", "quantity": 1, "asset_ref": "img-9"},
    }
    response = api.client.post(URL, json=cloud, headers=api.auth)
    assert response.status_code == 202, response.text
    status = shown(api, api.client.get(f"{URL}/ce-1", headers=api.auth).json())
    assert status["used_at"] == "2026-03-01T11:00:00Z"
    assert (status["usage_type"], status["asset_ref"]) == ("video", "img-9")
    batch = api.client.post(URL, json=[cloud, {**cloud, "id": "ce-2"}], headers=api.auth)
    assert shown(api, batch.json()) == {
        "results": [
            {**status, "replayed": True},
            {**status, "event_id": "ce-2", "usage_id": 2, "replayed": False},
        ]
    }


# ---------------------------------------------------------------- refusals


DAY = 86400


@pytest.mark.parametrize(
    ("changes", "code", "sentence"),
    [
        (
            {"twin_id": 99},
            "unknown_twin",
            Outcome.UNKNOWN_TWIN.description,
        ),
        ({"twin_id": 8}, "no_license", Outcome.NO_LICENSE.description),
        (
            {"usage_type": "print"},
            "usage_type_not_licensed",
            Outcome.USAGE_TYPE_NOT_LICENSED.description,
        ),
        (
            {"used_at": "2026-01-31T23:59:59Z"},
            "license_not_started",
            Outcome.LICENSE_NOT_STARTED.description,
        ),
        (
            {"used_at": "2026-01-25T11:59:59Z"},
            "used_at_too_old",
            "used_at 2026-01-25T11:59:59+00:00 is more than 35 days in the past",
        ),
        (
            {"used_at": "2026-03-01T12:05:01Z"},
            "used_at_in_future",
            "used_at 2026-03-01T12:05:01+00:00 is more than 5 minutes in the future",
        ),
        ({"quantity": 0}, "quantity_out_of_range", "quantity 0 is outside 1..1000000"),
        ({"quantity": -5}, "quantity_out_of_range", "quantity -5 is outside 1..1000000"),
        (
            {"quantity": 1_000_001},
            "quantity_out_of_range",
            "quantity 1000001 is outside 1..1000000",
        ),
    ],
)
def test_refused_at_the_door_with_a_code_and_a_sentence(
    api: Api, changes: dict[str, Any], code: str, sentence: str
) -> None:
    response = api.client.post(URL, json=event(**changes), headers=api.auth)
    body = problem(response, 422, "usage-refused")
    assert (body["code"], body["sentence"], body["event_id"]) == (code, sentence, "e-1")
    assert body["detail"] == sentence
    assert stored_count(api) == 0


def test_time_window_edges_are_accepted(api: Api) -> None:
    api.chain.grant(BRAND_ADDRESS, TWIN, FakeLicense(frozenset({0}), 0, 2**40))
    oldest = (NOW - timedelta(days=35)).isoformat()
    latest = (NOW + timedelta(minutes=5)).isoformat()
    assert (
        api.client.post(URL, json=event("old", used_at=oldest), headers=api.auth).json()["status"]
        == "accepted"
    )
    assert (
        api.client.post(URL, json=event("new", used_at=latest), headers=api.auth).json()["status"]
        == "accepted"
    )


def test_paused_and_revoked_are_refused(api: Api) -> None:
    api.chain.paused_since[TWIN] = int(datetime(2026, 3, 1, 10, tzinfo=UTC).timestamp())
    paused = api.client.post(URL, json=event("p"), headers=api.auth)
    assert problem(paused, 422, "usage-refused")["code"] == "twin_paused"
    before_pause = api.client.post(
        URL, json=event("q", used_at="2026-03-01T09:00:00Z"), headers=api.auth
    )
    assert before_pause.status_code == 202
    api.chain.paused_since.clear()
    license = api.chain.licenses[(BRAND_ADDRESS.lower(), TWIN)]
    api.chain.licenses[(BRAND_ADDRESS.lower(), TWIN)] = FakeLicense(
        license.usage_types, license.valid_from, license.valid_until, revoked_at=0
    )
    revoked = api.client.post(URL, json=event("r"), headers=api.auth)
    assert problem(revoked, 422, "usage-refused")["sentence"] == Outcome.LICENSE_REVOKED.description


def test_a_twin_with_only_a_waiting_offer_is_refused_as_offer_not_accepted(api: Api) -> None:
    """The owner offered the brand a license it has not accepted: nothing is payable yet."""
    license = api.chain.licenses[(BRAND_ADDRESS.lower(), TWIN)]
    api.chain.licenses[(BRAND_ADDRESS.lower(), TWIN)] = FakeLicense(
        license.usage_types, license.valid_from, license.valid_until, accepted=False
    )
    response = api.client.post(URL, json=event(), headers=api.auth)
    body = problem(response, 422, "usage-refused")
    assert (body["code"], body["sentence"]) == (
        "offer_not_accepted",
        "the brand had not accepted the license offered for this twin",
    )
    assert stored_count(api) == 0


def test_a_usage_above_the_brands_limit_per_usage_is_refused_at_the_door(api: Api) -> None:
    """Price x quantity above the brand's spending limit per usage: the ledger would reject it
    (``OverUsageLimit``), so the door refuses it; at the limit it is accepted."""
    license = api.chain.licenses[(BRAND_ADDRESS.lower(), TWIN)]
    api.chain.licenses[(BRAND_ADDRESS.lower(), TWIN)] = FakeLicense(
        license.usage_types, license.valid_from, license.valid_until, price=2_500
    )
    api.chain.per_usage_limits[BRAND_ADDRESS.lower()] = 10_000
    over = api.client.post(URL, json=event("over", quantity=5), headers=api.auth)
    body = problem(over, 422, "usage-refused")
    assert (body["code"], body["sentence"]) == (
        "over_usage_limit",
        "the usage cost more than the brand's spending limit per usage: "
        "5 x 2500 = 12500 is above 10000",
    )
    at_limit = api.client.post(URL, json=event("at", quantity=4), headers=api.auth)
    assert at_limit.status_code == 202, at_limit.text
    assert stored_count(api) == 1


def test_a_brand_that_attests_itself_is_refused_at_the_door(api: Api) -> None:
    """The brand named its own attester on the ledger: the bridge's attester cannot settle its
    usages, so the door refuses them, saying how they settle instead; nothing is stored."""
    attester = "0x" + "a7" * 20
    api.chain.own_attesters[BRAND_ADDRESS.lower()] = attester
    response = api.client.post(URL, json=event(), headers=api.auth)
    body = problem(response, 422, "usage-refused")
    assert (body["code"], body["sentence"]) == (
        "brand_attests_itself",
        f"the brand named its own attester {attester} on the ledger, which takes its usages "
        "signed by that attester only: settle them with `twin-bridge brand settle`",
    )
    assert stored_count(api) == 0


def test_chain_down_is_503_and_nothing_stored(api: Api) -> None:
    api.chain.down = True
    response = api.client.post(URL, json=event(), headers=api.auth)
    body = problem(response, 503, "chain-unavailable")
    assert body["detail"] == "the license check could not reach the chain; retry later"
    assert response.headers["retry-after"] == "5"
    assert stored_count(api) == 0


# ---------------------------------------------------------------- malformed requests


@pytest.mark.parametrize(
    ("body", "pointer", "error_type"),
    [
        (event(colour="red"), "/colour", "extra_forbidden"),
        (event(quantity="2"), "/quantity", "int_type"),
        (event(quantity=2.0), "/quantity", "int_type"),
        (event(twin_id=True), "/twin_id", "int_type"),
        (event(used_at="2026-03-01T11:00:00"), "/used_at", "timezone_aware"),
        (event(used_at=1772362800), "/used_at", "datetime_type"),
        (event(usage_type="hologram"), "/usage_type", "value_error"),
        (event(usage_type=6), "/usage_type", "value_error"),
        (event(event_id="has space"), "/event_id", "string_pattern_mismatch"),
        (event(event_id="x" * 129), "/event_id", "string_pattern_mismatch"),
        (event(twin_id=2**63), "/twin_id", "less_than_equal"),
        ({"events": [event(), event("b", extra=1)]}, "/events/1/extra", "extra_forbidden"),
        ({"events": []}, "/events", "too_short"),
        ([1], "/0", "model_type"),
        (42, "", "body_shape"),
    ],
)
def test_malformed_body_is_422_with_pointers(
    api: Api, body: Any, pointer: str, error_type: str
) -> None:
    response = api.client.post(URL, json=body, headers=api.auth)
    problem_body = problem(response, 422, "validation")
    assert problem_body["title"] == "Invalid request"
    assert [(e["pointer"], e["type"]) for e in problem_body["errors"]] == [(pointer, error_type)]
    assert stored_count(api) == 0


def test_missing_field_is_named(api: Api) -> None:
    body = event()
    del body["twin_id"]
    response = api.client.post(URL, json=body, headers=api.auth)
    problem_body = problem(response, 422, "validation")
    assert problem_body["errors"] == [
        {"pointer": "/twin_id", "type": "missing", "detail": "Field required"}
    ]
    assert problem_body["detail"] == "1 error(s); first at '/twin_id': Field required"


def test_invalid_json_is_400(api: Api) -> None:
    response = api.client.post(
        URL, content=b'{"event_id": ', headers={**api.auth, "content-type": "application/json"}
    )
    assert problem(response, 400, "malformed-json")["detail"].startswith("the body is not JSON")


def test_oversized_body_is_413(make_api: Callable[..., Api]) -> None:
    api = make_api(max_body_bytes=300)
    response = api.client.post(
        URL, json={"events": [event(str(i)) for i in range(5)]}, headers=api.auth
    )
    body = problem(response, 413, "body-too-large")
    assert body["detail"] == "the body is larger than 300 bytes"


def test_oversized_streamed_body_without_length_is_413(make_api: Callable[..., Api]) -> None:
    api = make_api(max_body_bytes=100)

    def chunks() -> Any:
        yield b'{"events": ['
        yield b" " * 200

    response = api.client.post(URL, content=chunks(), headers=api.auth)
    problem(response, 413, "body-too-large")


def test_batch_larger_than_the_setting_is_422(make_api: Callable[..., Api]) -> None:
    api = make_api(max_batch_events=3)
    response = api.client.post(
        URL, json={"events": [event(str(i)) for i in range(4)]}, headers=api.auth
    )
    assert problem(response, 422, "batch-too-large")["detail"] == (
        "4 events in one batch; at most 3"
    )


def test_batch_of_1001_is_422(api: Api) -> None:
    response = api.client.post(
        URL, json={"events": [event(str(i)) for i in range(1001)]}, headers=api.auth
    )
    body = problem(response, 422, "validation")
    assert [(e["pointer"], e["type"]) for e in body["errors"]] == [("/events", "too_long")]


# ---------------------------------------------------------------- batches


def test_batch_answers_per_item_in_order(api: Api) -> None:
    api.client.post(URL, json=event("seen"), headers=api.auth)
    batch = [
        event("new-1"),
        event("seen"),
        event("bad-twin", twin_id=99),
        event("new-2", usage_type="video", quantity=5),
        event("new-1"),
        event("new-2", quantity=6),
        event("seen", quantity=9),
        event("old", used_at="2025-01-01T00:00:00Z"),
    ]
    response = api.client.post(URL, json={"events": batch}, headers=api.auth)
    assert response.status_code == 200
    new_2 = state("new-2", 3, usage_type="video", quantity=5)
    assert shown(api, response.json()) == {
        "results": [
            state("new-1", 2, replayed=False),
            state("seen", 1, replayed=True),
            {
                "event_id": "bad-twin",
                "status": "refused",
                "code": "unknown_twin",
                "sentence": "the twin does not exist",
            },
            {**new_2, "replayed": False},
            state("new-1", 2, replayed=True),
            {
                "event_id": "new-2",
                "status": "refused",
                "code": "event_id_conflict",
                "sentence": "event id 'new-2' was used before with a different body",
            },
            {
                "event_id": "seen",
                "status": "refused",
                "code": "event_id_conflict",
                "sentence": "event id 'seen' was used before with a different body",
            },
            {
                "event_id": "old",
                "status": "refused",
                "code": "used_at_too_old",
                "sentence": "used_at 2025-01-01T00:00:00+00:00 is more than 35 days in the past",
            },
        ]
    }
    assert stored_count(api) == 3


def test_batch_of_1000_is_stored_in_one_request(api: Api) -> None:
    batch = [event(f"ev-{i}", quantity=i + 1) for i in range(1000)]
    response = api.client.post(URL, json={"events": batch}, headers=api.auth)
    results = response.json()["results"]
    assert [r["usage_id"] for r in results] == list(range(1, 1001))
    assert {r["status"] for r in results} == {"accepted"}
    assert stored_count(api) == 1000
    assert len(api.chain.calls) == 1  # one license check per (twin, type, second)


# ---------------------------------------------------------------- status


def test_status_of_an_accepted_event(api: Api) -> None:
    api.client.post(URL, json=event(campaign_ref="spring-26"), headers=api.auth)
    response = api.client.get(f"{URL}/e-1", headers=api.auth)
    assert response.status_code == 200
    assert shown(api, response.json()) == state(campaign_ref="spring-26")


def test_an_accepted_event_dated_after_the_chains_clock_says_it_waits(api: Api) -> None:
    """The worker records the head it reads; an accepted usage used after that block's time
    waits for the chain's clock, and says so (no chain call per GET)."""
    later = "2026-03-01T12:04:00Z"
    api.client.post(URL, json=event("early"), headers=api.auth)
    with api.store.session() as session:
        record_chain_head(
            session, relayer=OTHER_ADDRESS, block_number=7, block_time=NOW - timedelta(seconds=20)
        )
    ahead = api.client.post(URL, json=event("ahead", used_at=later), headers=api.auth)
    waiting = {
        "code": "waiting_for_chain_clock",
        "sentence": f"settles once the chain's clock passes {later} (in about 4 min)",
        "until": later,
    }
    expected = state("ahead", 2, used_at=later, waiting=waiting)
    assert shown(api, ahead.json()) == {**expected, "replayed": False}
    assert shown(api, api.client.get(f"{URL}/ahead", headers=api.auth).json()) == expected
    assert shown(api, api.client.get(f"{URL}/early", headers=api.auth).json()) == state("early")
    with api.store.session() as session:
        record_chain_head(
            session, relayer=OTHER_ADDRESS, block_number=8, block_time=NOW + timedelta(minutes=3)
        )
    close = api.client.get(f"{URL}/ahead", headers=api.auth).json()["waiting"]["sentence"]
    assert close == f"settles once the chain's clock passes {later} (in about 60 s)"
    _set(api, status=UsageStatus.SUBMITTED)
    assert "waiting" not in api.client.get(f"{URL}/ahead", headers=api.auth).json()


def _set(api: Api, **values: Any) -> None:
    with api.store.session() as session:
        session.execute(update(UsageEvent).values(**values))
        session.commit()


def test_status_of_a_settled_event(api: Api) -> None:
    api.client.post(URL, json=event(), headers=api.auth)
    tx = "0x" + "ab" * 32
    _set(
        api,
        status=UsageStatus.SETTLED,
        tx_hash=tx,
        block_number=1234,
        log_index=3,
        amount=2**200,
        paid_from_escrow=2**200,
        recorded_as_debt=0,
    )
    body = shown(api, api.client.get(f"{URL}/e-1", headers=api.auth).json())
    assert body == state(
        status="settled",
        code="paid",
        sentence="paid",
        outcome_code=0,
        tx_hash=tx,
        block_number=1234,
        log_index=3,
        amount=str(2**200),
        paid_from_escrow=str(2**200),
        recorded_as_debt="0",
    )


def test_status_of_a_rejected_event_says_why(api: Api) -> None:
    api.client.post(URL, json=event(), headers=api.auth)
    _set(
        api,
        status=UsageStatus.REJECTED,
        reason_code=int(Outcome.USE_CAP_REACHED),
        tx_hash="0x" + "cd" * 32,
        block_number=9,
        log_index=0,
    )
    body = shown(api, api.client.get(f"{URL}/e-1", headers=api.auth).json())
    assert body == state(
        status="rejected",
        code="use_cap_reached",
        sentence="the license's cap on uses was reached",
        outcome_code=7,
        tx_hash="0x" + "cd" * 32,
        block_number=9,
        log_index=0,
    )


@pytest.mark.parametrize(
    ("number", "code", "sentence"),
    [
        (11, "offer_not_accepted", "the brand had not accepted the license offered for this twin"),
        (12, "over_usage_limit", "the usage cost more than the brand's spending limit per usage"),
        (13, "over_period_limit", "the usage would pass the brand's spending limit for the period"),
        (
            200,
            "unknown_outcome",
            "the ledger gave outcome code 200, which this bridge does not know (a discrepancy)",
        ),
    ],
)
def test_status_of_an_event_rejected_by_a_limit_or_an_unknown_code_says_why(
    api: Api, number: int, code: str, sentence: str
) -> None:
    api.client.post(URL, json=event(), headers=api.auth)
    _set(
        api,
        status=UsageStatus.REJECTED,
        reason_code=number,
        tx_hash="0x" + "cd" * 32,
        block_number=9,
        log_index=0,
    )
    response = api.client.get(f"{URL}/e-1", headers=api.auth)
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["outcome_code"], body["code"], body["sentence"]) == (
        "rejected",
        number,
        code,
        sentence,
    )


def test_status_of_a_held_event_gives_the_last_error(api: Api) -> None:
    api.client.post(URL, json=event(), headers=api.auth)
    _set(api, status=UsageStatus.HELD, settle_attempts=3, last_error="gas estimation reverted: x")
    body = shown(api, api.client.get(f"{URL}/e-1", headers=api.auth).json())
    assert body == state(status="held", error="gas estimation reverted: x")


def test_status_of_unknown_or_other_brands_event_is_404(api: Api) -> None:
    api.client.post(URL, json=event(), headers=api.auth)
    _, other_key = register_brand(api.store, "Other", OTHER_ADDRESS)
    response = api.client.get(f"{URL}/e-1", headers={"Authorization": f"Bearer {other_key}"})
    assert problem(response, 404, "not-found")["detail"] == "no usage event 'e-1' for this brand"


def test_status_path_must_be_an_event_id(api: Api) -> None:
    response = api.client.get(f"{URL}/bad%20id", headers=api.auth)
    body = problem(response, 422, "validation")
    assert [e["pointer"] for e in body["errors"]] == ["/path/event_id"]


# ---------------------------------------------------------------- health, metrics, docs


def test_metrics_count_events_by_status_and_code(api: Api) -> None:
    api.client.post(URL, json=event("a"), headers=api.auth)
    api.client.post(URL, json=event("a"), headers=api.auth)
    api.client.post(URL, json=event("b", twin_id=99), headers=api.auth)
    api.client.post(URL, json={"events": [event("c"), event("d", quantity=0)]}, headers=api.auth)
    text = api.client.get("/metrics").text
    assert 'twin_bridge_usage_events_total{code="",status="accepted"} 2.0' in text
    assert 'twin_bridge_usage_events_total{code="",status="replayed"} 1.0' in text
    assert 'twin_bridge_usage_events_total{code="unknown_twin",status="refused"} 1.0' in text
    assert (
        'twin_bridge_usage_events_total{code="quantity_out_of_range",status="refused"} 1.0' in text
    )
    assert (
        'twin_bridge_http_request_duration_seconds_count{method="POST",'
        'route="/v1/usage-events",status="202"} 1.0' in text
    )


def test_metrics_show_the_settlement_as_the_store_holds_it(api: Api) -> None:
    api.client.post(URL, json={"events": [event("a"), event("b"), event("c")]}, headers=api.auth)
    text = api.client.get("/metrics").text
    assert "twin_bridge_store_up 1.0" in text
    assert 'twin_bridge_usages{status="accepted"} 3.0' in text
    assert 'twin_bridge_usages{status="settled"} 0.0' in text
    assert 'twin_bridge_settlement_batches{status="confirmed"} 0.0' in text
    assert "twin_bridge_settlement_gas_used 0.0" in text
    assert "twin_bridge_settlement_gas_per_usage NaN" in text


def test_healthz_and_readyz(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {
        "status": "ready",
        "checks": {"store": "ok", "chain": "ok"},
    }
    api.chain.down = True
    response = api.client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"store": "ok", "chain": "unavailable: connection refused"},
    }


def test_openapi_documents_the_body_shapes(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    body = schema["paths"]["/v1/usage-events"]["post"]["requestBody"]["content"]
    refs = {s.get("$ref") for s in body["application/json"]["schema"]["oneOf"]}
    assert {
        "#/components/schemas/UsageEventIn",
        "#/components/schemas/UsageBatchIn",
        "#/components/schemas/CloudEventIn",
    } <= refs
    assert "UsageEventIn" in schema["components"]["schemas"]
    assert api.client.get("/docs").status_code == 200


def test_openapi_documents_the_answers_as_returned(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    answers = schema["paths"]["/v1/usage-events"]["post"]["responses"]
    ref = "#/components/schemas/"

    def refs(status: str) -> set[str]:
        found = answers[status]["content"]["application/json"]["schema"]
        return {s["$ref"].removeprefix(ref) for s in found.get("anyOf", [found])}

    assert refs("202") == {"UsageAnswerOut"}
    assert refs("200") == {"UsageAnswerOut", "BatchResultOut"}
    models = schema["components"]["schemas"]
    event = list(models["UsageEventOut"]["properties"])
    assert event == [
        "event_id", "usage_id", "status", "twin_id", "usage_type", "quantity", "used_at",
        "campaign_ref", "asset_ref", "received_at", "code", "sentence", "outcome_code", "tx_hash",
        "block_number", "log_index", "amount", "paid_from_escrow", "recorded_as_debt", "waiting",
        "error",
    ]  # fmt: skip
    assert list(models["UsageAnswerOut"]["properties"]) == [*event, "replayed"]
    assert list(models["UsageRefusalOut"]["properties"]) == [
        "event_id", "status", "code", "sentence"
    ]  # fmt: skip
    assert models["UsageCode"]["enum"] == [c.value for c in UsageCode]
    results = models["BatchResultOut"]["properties"]["results"]["items"]["anyOf"]
    assert {r["$ref"].removeprefix(ref) for r in results} == {"UsageAnswerOut", "UsageRefusalOut"}


def test_unknown_route_is_a_problem(api: Api) -> None:
    problem(api.client.get("/v2/nothing"), 404, "not-found")


# ---------------------------------------------------------------- the vocabulary


def test_the_readme_lists_every_usage_code_once_as_the_code_does() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("| code | where | outcome_code | sentence |\n|---|---|---:|---|\n")[1]
    rows = table.split("\n\n")[0].splitlines()
    assert rows == [
        f"| `{e.code.value}` | {', '.join(w.value for w in e.where)} | "
        f"{'' if e.outcome is None else int(e.outcome)} | {e.sentence} |"
        for e in VOCABULARY
    ]
    assert {e.code for e in VOCABULARY} == set(UsageCode)
    assert {e.outcome for e in VOCABULARY if e.outcome is not None} == set(Outcome)


def test_debts_belong_to_the_last_usages_that_cost_something() -> None:
    """Escrow pays in order until it runs out (one usage split), the rest is owed; a free usage
    after the shortfall owes nothing."""
    assert split_payment([10, 20, 0, 30], [15, 30]) == [(10, 0), (5, 15), (0, 0), (0, 30)]
    assert split_payment([10, 20], []) == [(10, 0), (20, 0)]
    assert split_payment([], []) == []


@pytest.mark.parametrize(
    ("amounts", "debts", "error"),
    [
        ([10], [5, 5], "2 debts for 1 usages that cost something"),
        ([10, 20], [25], "a debt of 25 for a usage of 20"),
        ([10, 20], [5, 10], "a usage after the first short one was not owed in full"),
    ],
)
def test_debts_that_cannot_be_these_usages_are_refused(
    amounts: list[int], debts: list[int], error: str
) -> None:
    with pytest.raises(ValueError, match=f"^{error}$"):
        split_payment(amounts, debts)
