"""The brand endpoints the dashboard's brand view reads: ``GET /v1/brand`` and the brand's usage
events newest first, paged; and the dashboard page itself."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import update

from bridge.store.models import UsageEvent, UsageStatus

from .conftest import BRAND_ADDRESS, OTHER_ADDRESS, TWIN, Api, register_brand

URL = "/v1/usage-events"


def _report(api: Api, n: int, key: str | None = None) -> None:
    auth = {"Authorization": f"Bearer {key or api.key}"}
    events = [
        {
            "event_id": f"e-{i}",
            "twin_id": TWIN,
            "usage_type": "video",
            "quantity": i,
            "used_at": "2026-03-01T11:00:00Z",
        }
        for i in range(1, n + 1)
    ]
    response = api.client.post(URL, json={"events": events}, headers=auth)
    assert response.status_code == 200, response.text


def _without_received_at(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k != "received_at"} for item in items]


def test_brand_of_the_key(api: Api) -> None:
    response = api.client.get("/v1/brand", headers=api.auth)
    assert response.status_code == 200
    assert response.json() == {"name": "Atelier", "address": BRAND_ADDRESS}


@pytest.mark.parametrize("path", ["/v1/brand", URL])
@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer tb_live_nope"}], ids=["missing", "unknown"]
)
def test_brand_endpoints_without_a_valid_key_are_401(
    api: Api, path: str, headers: dict[str, str]
) -> None:
    response = api.client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["type"] == "urn:twin-bridge:problem:unauthorized"


def test_usage_events_newest_first_in_pages(api: Api) -> None:
    _report(api, 5)
    tx = "0x" + "cd" * 32
    with api.store.session() as session:
        session.execute(
            update(UsageEvent)
            .where(UsageEvent.event_id == "e-4")
            .values(
                status=UsageStatus.SETTLED, tx_hash=tx, block_number=77, log_index=2, amount=900
            )
        )
        session.commit()
    first = api.client.get(URL, params={"limit": 2}, headers=api.auth)
    assert first.status_code == 200
    body = first.json()
    assert body["next"] == f"{URL}?limit=2&cursor=4"
    assert _without_received_at(body["items"]) == [
        {
            "event_id": "e-5",
            "usage_id": 5,
            "status": "accepted",
            "twin_id": TWIN,
            "usage_type": "video",
            "quantity": 5,
            "used_at": "2026-03-01T11:00:00Z",
        },
        {
            "event_id": "e-4",
            "usage_id": 4,
            "status": "settled",
            "twin_id": TWIN,
            "usage_type": "video",
            "quantity": 4,
            "used_at": "2026-03-01T11:00:00Z",
            "tx_hash": tx,
            "block_number": 77,
            "log_index": 2,
            "amount": "900",
        },
    ]
    second = api.client.get(body["next"], headers=api.auth).json()
    assert [i["event_id"] for i in second["items"]] == ["e-3", "e-2"]
    assert second["next"] == f"{URL}?limit=2&cursor=2"
    last = api.client.get(second["next"], headers=api.auth).json()
    assert [i["event_id"] for i in last["items"]] == ["e-1"]
    assert last["next"] is None


def test_usage_events_are_the_brands_own(api: Api) -> None:
    _report(api, 2)
    _, other_key = register_brand(api.store, "Other", OTHER_ADDRESS)
    assert api.client.get(URL, headers={"Authorization": f"Bearer {other_key}"}).json() == {
        "items": [],
        "next": None,
    }
    body = api.client.get(URL, headers=api.auth).json()
    assert [i["event_id"] for i in body["items"]] == ["e-2", "e-1"]
    assert body["next"] is None


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 501}, {"cursor": 0}, {"cursor": "x"}], ids=str
)
def test_usage_events_bad_paging_is_422(api: Api, params: dict[str, Any]) -> None:
    response = api.client.get(URL, params=params, headers=api.auth)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_dashboard_is_served_at_the_root_with_its_assets(api: Api) -> None:
    page = api.client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/web/app.js"></script>' in page.text
    script = api.client.get("/web/app.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert api.client.get("/web/style.css").status_code == 200
    assert api.client.get("/web/missing.js").status_code == 404


@pytest.mark.parametrize("path", ["/v1/audit", "/v1/audit/csv?table=usages"])
def test_audit_without_a_chain_is_503_saying_so(api: Api, path: str) -> None:
    response = api.client.get(path)
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:twin-bridge:problem:audit-unavailable"
    assert body["detail"] == "this bridge has no chain configured to audit"


def test_audit_csv_of_an_unknown_table_is_422(api: Api) -> None:
    response = api.client.get("/v1/audit/csv", params={"table": "secrets"})
    assert response.status_code == 422


def test_brand_directory_is_public_by_name(api: Api) -> None:
    register_brand(api.store, "Maison", OTHER_ADDRESS)
    response = api.client.get("/v1/brands")
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {"name": "Atelier", "address": BRAND_ADDRESS},
            {"name": "Maison", "address": OTHER_ADDRESS},
        ]
    }
