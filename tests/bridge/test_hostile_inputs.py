"""Hand-picked hostile inputs against the real app on SQLite and PostgreSQL: each gets a clear 4xx
problem+json and stores nothing (every table's row count is compared before and after), or, where
the input is valid, is stored verbatim and read back unchanged. The brand API checks licenses with
the fake ledger (``fakes.FakeLicenseView``); forged and replayed owner-action signatures run
against the ledger on anvil, where a refusal must also cost the relayer nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select, table
from web3 import Web3

from bridge.api import create_app
from bridge.chain.client import Web3ChainClient
from bridge.chain.signers import load_signer
from bridge.devstack.demo import dev_account
from bridge.domain import eip712
from bridge.intake.ingest import Ingestor
from bridge.intake.owner_actions import ActionVerifier
from bridge.settings import Settings
from bridge.settlement.worker import SettlementWorker, WorkerConfig
from bridge.store.repository import Store
from bridge.testing import AnvilChain
from bridge.testing.world import FIRST_MODEL_ACCOUNT

from .conftest import BRAND_ADDRESS, OTHER_ADDRESS, TWIN, Clock, register_brand
from .fakes import FakeLicenseView

USAGE = "/v1/usage-events"
ACTIONS = "/v1/owner-actions"
PROBLEM = "application/problem+json"
LIMIT = 1024 * 1024
ACTION_LIMIT = 64 * 1024
SQL = "'; DROP TABLE usage_events; --"


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


def rows(store: Store) -> dict[str, int]:
    """Every table of the store with its row count."""
    with store.engine.connect() as conn:
        names = inspect(conn).get_table_names()
        return {
            name: int(conn.scalar(select(func.count()).select_from(table(name))) or 0)
            for name in names
        }


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["type"] == f"urn:twin-bridge:problem:{slug}"
    assert body["status"] == status
    assert body["title"]
    assert body["detail"]
    return body


@dataclass
class Hostile:
    client: TestClient
    store: Store
    key_a: str
    key_b: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key_a}"}

    def json_headers(self) -> dict[str, str]:
        return {**self.auth, "Content-Type": "application/json"}


@pytest.fixture
def hostile(store: Store, license_view: FakeLicenseView, tmp_path: Path) -> Iterator[Hostile]:
    """The API on the backend's store: brand A (the conftest's licensed brand) and brand B, both
    licensed for twin 7."""
    settings = Settings(data_dir=tmp_path / "data", rate_limit_per_s=1000, rate_limit_burst=1000)
    assert settings.max_body_bytes == LIMIT
    license_view.grant(OTHER_ADDRESS, TWIN, license_view.licenses[(BRAND_ADDRESS.lower(), TWIN)])
    ingestor = Ingestor(settings=settings, licenses=license_view, clock=Clock())
    app = create_app(settings, store=store, chain=license_view, ingestor=ingestor)
    _, key_a = register_brand(store, "Atelier", BRAND_ADDRESS)
    _, key_b = register_brand(store, "Boutique", OTHER_ADDRESS)
    with TestClient(app) as client:
        yield Hostile(client, store, key_a, key_b)


# ---------------------------------------------------------------- sizes and shapes


def _streamed(size: int) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        yield b'{"events": ['
        for _ in range(size // 1024):
            yield b" " * 1024
        yield b"]}"

    return chunks


@pytest.mark.parametrize("path", [USAGE, ACTIONS])
def test_oversized_bodies_are_413_declared_or_streamed(hostile: Hostile, path: str) -> None:
    before = rows(hostile.store)
    limit = LIMIT if path == USAGE else ACTION_LIMIT
    big = b'{"events": [' + b" " * (limit + 1) + b"]}"
    declared = hostile.client.post(path, content=big, headers=hostile.json_headers())
    assert problem(declared, 413, "body-too-large")["detail"] == (
        f"the body is larger than {limit} bytes"
    )
    streamed = hostile.client.post(path, content=_streamed(limit * 2)(), headers=hostile.auth)
    problem(streamed, 413, "body-too-large")
    # a small declared length does not let a large body through
    lying = hostile.client.post(
        path, content=big, headers={**hostile.json_headers(), "Content-Length": "10"}
    )
    problem(lying, 413, "body-too-large")
    assert rows(hostile.store) == before


CONTENT_LENGTHS = [
    ("abc", "Content-Length must be a number of bytes, not 'abc'"),
    ("-1", "Content-Length must be a number of bytes, not '-1'"),
    ("1e2", "Content-Length must be a number of bytes, not '1e2'"),
    ("١٢", "Content-Length must be a number of bytes, not 'Ù¡Ù¢'"),  # latin-1 on the wire
    ("5", "Content-Length says 5 bytes, the body has {size}"),
    ("400", "Content-Length says 400 bytes, the body has {size}"),
]


def test_bogus_content_length_is_400(hostile: Hostile, subtests: pytest.Subtests) -> None:
    before = rows(hostile.store)
    body = (
        b'{"event_id": "cl-1", "twin_id": 7, "usage_type": 0, "quantity": 1, '
        b'"used_at": "2026-03-01T11:00:00Z"}'
    )
    for path in (USAGE, ACTIONS):
        for length, detail in CONTENT_LENGTHS:
            with subtests.test(path=path, length=length):
                headers = [
                    (b"authorization", f"Bearer {hostile.key_a}".encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", length.encode()),
                ]
                response = _raw_post(hostile, path, body, headers)
                answer = problem(response, 400, "bad-content-length")
                assert answer["detail"] == detail.format(size=len(body))
                assert rows(hostile.store) == before


def _raw_post(hostile: Hostile, path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> Any:
    """A POST whose headers reach the app exactly as given (no client fixes the length)."""

    async def send() -> httpx.Response:
        messages: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": headers,
            "client": ("127.0.0.1", 1234),
            "server": ("testserver", 80),
        }
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send_message(message: dict[str, Any]) -> None:
            messages.append(message)

        await hostile.client.app(scope, receive, send_message)  # type: ignore[arg-type]
        start = next(m for m in messages if m["type"] == "http.response.start")
        content = b"".join(
            m.get("body", b"") for m in messages if m["type"] == "http.response.body"
        )
        return httpx.Response(
            start["status"],
            headers=[(k.decode(), v.decode()) for k, v in start["headers"]],
            content=content,
        )

    return asyncio.run(send())


NESTED: dict[str, Callable[[int], bytes]] = {
    "arrays": lambda depth: b"[" * depth + b"]" * depth,
    "objects": lambda depth: b'{"a":' * depth + b"1" + b"}" * depth,
    "events": lambda depth: b'{"events": [' + b"[" * depth + b"]" * depth + b"]}",
}


def test_deeply_nested_json_is_400(hostile: Hostile, subtests: pytest.Subtests) -> None:
    before = rows(hostile.store)
    for path in (USAGE, ACTIONS):
        for name, nest in NESTED.items():
            with subtests.test(path=path, nesting=name):
                body = nest(10_000)
                assert len(body) < ACTION_LIMIT
                response = hostile.client.post(path, content=body, headers=hostile.json_headers())
                detail = problem(response, 400, "malformed-json")["detail"]
                assert detail.startswith(
                    "the body is not JSON: Invalid JSON: recursion limit exceeded at line 1 column "
                ), detail
                assert rows(hostile.store) == before


# ---------------------------------------------------------------- numbers

E_1 = '{"event_id": "n-1", "twin_id": %s, "usage_type": %s, "quantity": %s, "used_at": "%s"}'
NOW_ISO = "2026-03-01T11:00:00Z"


def _raw_event(
    *, twin: str = "7", kind: str = "0", quantity: str = "1", at: str = NOW_ISO
) -> bytes:
    return (E_1 % (twin, kind, quantity, at)).encode()


NUMBERS = [
    (_raw_event(quantity=str(2**256)), 422, "usage-refused", "quantity_out_of_range"),
    (_raw_event(quantity=str(2**64)), 422, "usage-refused", "quantity_out_of_range"),
    (_raw_event(quantity="1000001"), 422, "usage-refused", "quantity_out_of_range"),
    (_raw_event(quantity="0"), 422, "usage-refused", "quantity_out_of_range"),
    (_raw_event(quantity="-0"), 422, "usage-refused", "quantity_out_of_range"),
    (_raw_event(quantity="-1"), 422, "usage-refused", "quantity_out_of_range"),
    (_raw_event(quantity=str(-(2**255))), 422, "usage-refused", "quantity_out_of_range"),
    (_raw_event(quantity="1e308"), 422, "validation", "/quantity"),
    (_raw_event(quantity="1e309"), 422, "validation", "/quantity"),
    (_raw_event(quantity="-0.0"), 422, "validation", "/quantity"),
    (_raw_event(quantity="1.0"), 422, "validation", "/quantity"),
    (_raw_event(quantity='"1"'), 422, "validation", "/quantity"),
    (_raw_event(quantity="true"), 422, "validation", "/quantity"),
    # the parser reads these non-JSON tokens as floats; the strict integer refuses them
    (_raw_event(quantity="NaN"), 422, "validation", "/quantity"),
    (_raw_event(quantity="Infinity"), 422, "validation", "/quantity"),
    (_raw_event(quantity="-Infinity"), 422, "validation", "/quantity"),
    (_raw_event(twin=str(2**256)), 422, "validation", "/twin_id"),
    (_raw_event(twin=str(2**63)), 422, "validation", "/twin_id"),
    (_raw_event(twin="-1"), 422, "validation", "/twin_id"),
    (_raw_event(twin="7.0"), 422, "validation", "/twin_id"),
    (_raw_event(kind=str(2**256)), 422, "validation", "/usage_type"),
    (_raw_event(kind="-1"), 422, "validation", "/usage_type"),
    (_raw_event(kind="6"), 422, "validation", "/usage_type"),
    (_raw_event(at="9999-12-31T23:59:59Z"), 422, "usage-refused", "used_at_in_future"),
    (_raw_event(at="0001-01-01T00:00:00Z"), 422, "usage-refused", "used_at_too_old"),
    (_raw_event(at="2026-03-01T11:00:00"), 422, "validation", "/used_at"),
    (_raw_event(at="275760-09-13T00:00:00Z"), 422, "validation", "/used_at"),
]


def test_huge_odd_zero_and_negative_numbers_are_refused(
    hostile: Hostile, subtests: pytest.Subtests
) -> None:
    before = rows(hostile.store)
    for body, status, slug, pointer_or_reason in NUMBERS:
        with subtests.test(body=body.decode()[:120]):
            response = hostile.client.post(USAGE, content=body, headers=hostile.json_headers())
            answer = problem(response, status, slug)
            if slug == "usage-refused":
                assert answer["code"] == pointer_or_reason
                assert answer["event_id"] == "n-1"
            else:
                assert [e["pointer"] for e in answer["errors"]] == [pointer_or_reason]
            assert rows(hostile.store) == before


# ---------------------------------------------------------------- strings

CONTROL = ["\x00", "\x01", "\t", "\n", "\r", "\x1b[31m", "\x7f"]


BAD_EVENT_IDS = [
    *(f"e{c}1" for c in CONTROL),
    "é",
    "e-😀",
    "e\u202e1",  # right-to-left override
    "e\ufeff1",  # zero-width no-break space
    "a b",
    "../etc/passwd",
    "%00",
    "-leading-dash",
    "",
    "a" * 129,
    SQL,
]


def test_control_unicode_and_sql_in_event_ids_are_422(
    hostile: Hostile, subtests: pytest.Subtests
) -> None:
    before = rows(hostile.store)
    for event_id in BAD_EVENT_IDS:
        with subtests.test(event_id=event_id):
            response = hostile.client.post(USAGE, json=event(event_id), headers=hostile.auth)
            answer = problem(response, 422, "validation")
            assert [e["pointer"] for e in answer["errors"]] == ["/event_id"]
            cloud = {
                "specversion": "1.0",
                "type": "dev.twinbridge.usage.v1",
                "source": "urn:brand",
                "id": event_id,
                "time": NOW_ISO,
                "data": {"twin_id": TWIN, "usage_type": 0, "quantity": 1},
            }
            answer = problem(
                hostile.client.post(USAGE, json=cloud, headers=hostile.auth), 422, "validation"
            )
            assert [e["pointer"] for e in answer["errors"]] == ["/id"]
            assert rows(hostile.store) == before


BAD_REFS = [*(f"ref{c}x" for c in CONTROL), "", "r" * 257]


def test_control_characters_in_refs_are_422(hostile: Hostile, subtests: pytest.Subtests) -> None:
    before = rows(hostile.store)
    for field in ("campaign_ref", "asset_ref"):
        for value in BAD_REFS:
            with subtests.test(field=field, value=value):
                body = event("r-1", **{field: value})
                answer = problem(
                    hostile.client.post(USAGE, json=body, headers=hostile.auth), 422, "validation"
                )
                assert [e["pointer"] for e in answer["errors"]] == [f"/{field}"]
                assert rows(hostile.store) == before


STORED_VERBATIM = [
    SQL,
    "Robert'); DROP TABLE brands;--",
    "1 OR 1=1",
    '" OR ""="',
    "\\'; SELECT pg_sleep(5); --",
    "Été ☀️ 東京 مرحبا 😀",
    "e\u202eb\ufeffc",
    "%s %d {0} ${x}",
    "r" * 256,
]


def test_sql_looking_and_unicode_refs_are_stored_verbatim_and_tables_intact(
    hostile: Hostile, subtests: pytest.Subtests
) -> None:
    before = rows(hostile.store)
    for n, value in enumerate(STORED_VERBATIM):
        with subtests.test(value=value):
            body = event(f"s-{n}", campaign_ref=value, asset_ref=value)
            accepted = hostile.client.post(USAGE, json=body, headers=hostile.auth)
            assert accepted.status_code == 202, accepted.text
            status = hostile.client.get(f"{USAGE}/s-{n}", headers=hostile.auth)
            assert status.status_code == 200
            assert (status.json()["campaign_ref"], status.json()["asset_ref"]) == (value, value)
            cloud = {
                "specversion": "1.0",
                "type": "dev.twinbridge.usage.v1",
                "source": value,
                "subject": value,
                "id": f"c-{n}",
                "time": NOW_ISO,
                "data": {"twin_id": TWIN, "usage_type": 0, "quantity": 1, "campaign_ref": value},
            }
            answer = hostile.client.post(USAGE, json=cloud, headers=hostile.auth)
            assert answer.status_code == 202, answer.text
            usages = before["usage_events"] + 2 * (n + 1)
            assert rows(hostile.store) == {**before, "usage_events": usages}


SQL_ELSEWHERE = [
    ("POST", USAGE, event("q-1", usage_type=SQL), 422, "validation"),
    ("POST", USAGE, event("q-1", used_at=SQL), 422, "validation"),
    ("POST", USAGE, event("q-1", twin_id=SQL), 422, "validation"),
    ("POST", USAGE, event("q-1", quantity=SQL), 422, "validation"),
    ("POST", USAGE, {"events": SQL}, 422, "validation"),
    ("POST", USAGE, {SQL: 1}, 422, "validation"),
    ("POST", USAGE, SQL, 422, "validation"),
    ("GET", f"{USAGE}/{SQL}", None, 422, "validation"),
    ("GET", f"{USAGE}/x' OR '1'='1", None, 422, "validation"),
    (
        "POST",
        ACTIONS,
        {"type": SQL, "signer": SQL, "message": {}, "signature": SQL},
        422,
        "validation",
    ),
    ("POST", ACTIONS, {"type": "Payout", "payee": SQL, "twinIds": []}, 422, "validation"),
    ("GET", f"/v1/accounts/{SQL}/nonce", None, 422, "validation"),
    ("GET", f"{ACTIONS}/1; DROP TABLE owner_actions", None, 422, "validation"),
]


def test_sql_looking_strings_in_other_fields_are_refused_and_tables_intact(
    hostile: Hostile, subtests: pytest.Subtests
) -> None:
    before = rows(hostile.store)
    for method, path, body, status, slug in SQL_ELSEWHERE:
        with subtests.test(method=method, path=path, body=body):
            response = hostile.client.request(method, path, json=body, headers=hostile.auth)
            problem(response, status, slug)
            assert rows(hostile.store) == before


# ---------------------------------------------------------------- media types and headers


WRONG_CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/xml",
    "application/jsonx",
    "text/json",
    "",
]


def test_wrong_content_types_are_415(hostile: Hostile, subtests: pytest.Subtests) -> None:
    before = rows(hostile.store)
    body = orjson.dumps(event("ct-1"))
    for path in (USAGE, ACTIONS):
        for content_type in WRONG_CONTENT_TYPES:
            with subtests.test(path=path, content_type=content_type):
                response = hostile.client.post(
                    path, content=body, headers={**hostile.auth, "Content-Type": content_type}
                )
                assert problem(response, 415, "unsupported-media-type")["detail"] == (
                    f"the body must be JSON (application/json), not {content_type!r}"
                )
                assert rows(hostile.store) == before


def test_json_content_types_are_taken(hostile: Hostile) -> None:
    json_types = [
        "application/json",
        "application/json; charset=utf-8",
        "application/cloudevents+json",
    ]
    for n, content_type in enumerate(json_types):
        response = hostile.client.post(
            USAGE,
            content=orjson.dumps(event(f"ct-{n}")),
            headers={**hostile.auth, "Content-Type": content_type},
        )
        assert response.status_code == 202, (content_type, response.text)


AUTHORIZATIONS = [
    None,
    "",
    "Bearer",
    "Bearer ",
    "Bearer  ",
    "Basic dXNlcjpwYXNz",
    "Token {key}",
    "Bearer {key}x",
    "Bearer {key_prefix}",
    "Bearer {key} {key}",
    f"Bearer {SQL}",
    "Bearer " + "k" * 10_000,
]


def test_missing_or_invalid_authorization_is_401_and_stores_nothing(
    hostile: Hostile, subtests: pytest.Subtests
) -> None:
    assert hostile.client.post(USAGE, json=event("a-0"), headers=hostile.auth).status_code == 202
    before = rows(hostile.store)
    for method in ("POST", "GET"):
        for authorization in AUTHORIZATIONS:
            with subtests.test(method=method, authorization=(authorization or "")[:40]):
                headers = {}
                if authorization is not None:
                    headers["Authorization"] = authorization.format(
                        key=hostile.key_a, key_prefix=hostile.key_a[:-1]
                    )
                if method == "POST":
                    response = hostile.client.post(USAGE, json=event("a-1"), headers=headers)
                else:
                    response = hostile.client.get(f"{USAGE}/a-0", headers=headers)
                answer = problem(response, 401, "unauthorized")
                assert answer["detail"] == (
                    "a valid API key is required: Authorization: Bearer <key>"
                )
                assert response.headers["www-authenticate"] == "Bearer"
                assert rows(hostile.store) == before


# ---------------------------------------------------------------- brands apart


def test_brand_a_key_cannot_read_brand_b_events(hostile: Hostile) -> None:
    auth_b = {"Authorization": f"Bearer {hostile.key_b}"}
    stored = hostile.client.post(USAGE, json=event("b-secret-1"), headers=auth_b)
    assert stored.status_code == 202
    assert hostile.client.get(f"{USAGE}/b-secret-1", headers=auth_b).status_code == 200

    other = hostile.client.get(f"{USAGE}/b-secret-1", headers=hostile.auth)
    unknown = hostile.client.get(f"{USAGE}/b-secret-2", headers=hostile.auth)
    answer = problem(other, 404, "not-found")
    assert answer["detail"] == "no usage event 'b-secret-1' for this brand"
    # word for word the answer for an id nobody used
    assert {**problem(unknown, 404, "not-found"), "detail": "", "instance": ""} == {
        **answer,
        "detail": "",
        "instance": "",
    }
    assert other.headers.keys() == unknown.headers.keys()
    # nor does it list them
    listed = hostile.client.get(USAGE, headers=hostile.auth)
    assert listed.status_code == 200
    assert listed.json() == {"items": [], "next": None}
    assert [e["event_id"] for e in hostile.client.get(USAGE, headers=auth_b).json()["items"]] == [
        "b-secret-1"
    ]
    # brand A reporting B's event id gets its own usage, B's stays untouched
    mine = hostile.client.post(USAGE, json=event("b-secret-1", quantity=5), headers=hostile.auth)
    assert mine.status_code == 202
    theirs = hostile.client.get(f"{USAGE}/b-secret-1", headers=auth_b).json()
    assert theirs["quantity"] == 2
    assert mine.json()["usage_id"] != theirs["usage_id"]


# ---------------------------------------------------------------- forged and replayed signatures

RELAYER_KEY = "0x" + keccak(text="twin-bridge hostile input test relayer").hex()
NEW_OWNER = Web3.to_checksum_address("0x" + "0e" * 20)


Anvil = AnvilChain


@pytest.fixture(scope="module")
def anvil(anvil: AnvilChain) -> AnvilChain:
    anvil.fund(Account.from_key(RELAYER_KEY).address)
    return anvil


@dataclass
class Relay:
    anvil: Anvil
    store: Store
    client: TestClient

    @property
    def ledger(self) -> Any:
        return self.anvil.world.ledger

    def now(self) -> int:
        return int(self.anvil.w3.eth.get_block("latest")["timestamp"])

    def sign(
        self,
        kind: str,
        message: dict[str, Any],
        key: LocalAccount,
        *,
        signer: str | None = None,
        chain_id: int | None = None,
        ledger: str | None = None,
    ) -> dict[str, Any]:
        data = eip712.typed_data(
            kind,
            message,
            chain_id=self.anvil.w3.eth.chain_id if chain_id is None else chain_id,
            ledger=ledger or self.ledger.address,
        )
        signature = Account.sign_typed_data(key.key, full_message=data).signature
        return {
            "type": kind,
            "signer": signer or key.address,
            "message": message,
            "signature": "0x" + bytes(signature).hex(),
        }

    def relayer_nonce(self) -> int:
        return int(self.anvil.w3.eth.get_transaction_count(Account.from_key(RELAYER_KEY).address))

    def worker(self) -> SettlementWorker:
        client = Web3ChainClient([self.anvil.url], timeout=5, backoff=0)
        chain_id = client.chain_id()
        key = "0x" + self.anvil.world.attester.key.hex()
        return SettlementWorker(
            store=self.store,
            chain=client,
            attester=load_signer("attester", chain_id=chain_id, private_key=key),
            relayer=load_signer("relayer", chain_id=chain_id, private_key=RELAYER_KEY),
            config=WorkerConfig(ledger=self.ledger.address, confirmations=1, max_age=timedelta(0)),
        )


@pytest.fixture
def relay(anvil: Anvil, store: Store, tmp_path: Path) -> Iterator[Relay]:
    settings = Settings(
        data_dir=tmp_path / "data", rpc_url=anvil.url, ledger_address=anvil.world.ledger.address
    )
    verifier = ActionVerifier(Web3ChainClient([anvil.url]), anvil.world.ledger.address)
    app = create_app(settings, store=store, actions=verifier)
    with anvil.snapshot(), TestClient(app) as client:
        yield Relay(anvil, store, client)


def _message(relay: Relay, kind: str, twin: int, nonce: int, deadline: int) -> dict[str, Any]:
    brand = relay.anvil.world.brands[0]  # licensed on every twin
    owner = dev_account(FIRST_MODEL_ACCOUNT).address  # the first twin's first owner
    body: dict[str, Any] = {"owner": owner, "twinId": twin, "nonce": nonce, "deadline": deadline}
    if kind == "OfferLicense":
        body["terms"] = {
            "brand": Web3.to_checksum_address("0x" + "b7" * 20),
            "validFrom": 0,
            "validUntil": relay.now() + 90 * 24 * 3600,
            "maxUses": 0,
            "purposeHash": "0x" + "aa" * 32,
            "consentHash": "0x" + "bb" * 32,
            "prices": [{"usageType": 1, "price": 4_000_000}],
        }
    elif kind == "RevokeLicense":
        body["brand"] = brand
        body["version"] = relay.ledger.functions.licenseVersionCount(twin, brand).call() - 1
    elif kind == "SetTwinPaused":
        body["paused"] = nonce % 2 == 0
    else:
        body["payees"] = [{"account": Web3.to_checksum_address("0x" + "a9" * 20), "bps": 1_000}]
    return body


@pytest.mark.integration
@pytest.mark.parametrize("kind", ["OfferLicense", "RevokeLicense", "SetTwinPaused", "SetPayees"])
def test_forged_and_replayed_owner_actions_are_4xx_and_cost_no_gas(relay: Relay, kind: str) -> None:
    """Each signed owner action, once relayed, cannot be replayed under another chain id, another
    ledger, its used nonce, a passed deadline, nor by a signer who no longer owns the twin, nor
    under another owner's name (the message names its owner); a forged signature is refused too.
    Nothing is stored and the relayer sends nothing."""
    twin = relay.anvil.world.twin_ids[0]
    model = dev_account(FIRST_MODEL_ACCOUNT)
    assert relay.ledger.functions.ownerOf(twin).call() == model.address
    deadline = relay.now() + 3600
    first = relay.sign(kind, _message(relay, kind, twin, 0, deadline), model)
    accepted = relay.client.post(ACTIONS, json=first)
    assert accepted.status_code == 202, accepted.text
    assert relay.worker().run_until_idle() >= 2  # sent, then confirmed
    assert relay.client.get(f"{ACTIONS}/{accepted.json()['id']}").json()["status"] == "confirmed"
    assert relay.ledger.functions.nonces(model.address).call() == 1
    sent = relay.relayer_nonce()
    before = rows(relay.store)
    ledger = relay.ledger.address
    other_ledger = relay.anvil.world.token.address
    stranger = dev_account(FIRST_MODEL_ACCOUNT + 1)
    # signed by the owner before the twin left the wallet, sent after
    presigned = relay.sign(kind, _message(relay, kind, twin, 1, deadline), model)

    def refused(body: dict[str, Any], status: int, slug: str, detail: str) -> None:
        answer = problem(relay.client.post(ACTIONS, json=body), status, slug)
        assert answer["detail"] == detail

    bad_signature = (
        f"the signature is not {model.address}'s over this {kind} message (EIP-712 domain "
        f"TwinLedger v2, chain 31337, ledger {ledger})"
    )
    fresh = _message(relay, kind, twin, 1, deadline)
    refused(relay.sign(kind, fresh, model, chain_id=1), 401, "bad-signature", bad_signature)
    refused(relay.sign(kind, fresh, model, chain_id=11155111), 401, "bad-signature", bad_signature)
    refused(
        relay.sign(kind, fresh, model, ledger=other_ledger), 401, "bad-signature", bad_signature
    )
    refused(
        relay.sign(kind, fresh, stranger, signer=model.address), 401, "bad-signature", bad_signature
    )
    refused(
        {**relay.sign(kind, fresh, model), "signature": "0x" + "11" * 65},
        401,
        "bad-signature",
        bad_signature,
    )
    refused(
        relay.sign(kind, _message(relay, kind, twin, 0, deadline + 1), model),
        409,
        "nonce-used",
        f"nonce 0 of {model.address} was used already; the next is 1",
    )
    # the owner's signature sent as another account's action (the message names the owner)
    refused(
        relay.sign(kind, fresh, model, signer=stranger.address),
        422,
        "signer-mismatch",
        f"the {kind} message names owner {model.address}, not the signer {stranger.address}",
    )
    past = relay.now() - 1
    refused(
        relay.sign(kind, _message(relay, kind, twin, 1, past), model),
        422,
        "deadline-passed",
        f"the signature's deadline {past} is not after the chain's time {relay.now()}",
    )
    # the very same signed action again: its stored, confirmed state, no second action
    again = relay.client.post(ACTIONS, json=first)
    assert again.status_code == 200
    assert again.json()["id"] == accepted.json()["id"]
    assert again.json()["status"] == "confirmed"

    transfer = relay.ledger.functions.transferFrom(model.address, NEW_OWNER, twin).transact(
        {"from": model.address}
    )
    assert relay.anvil.w3.eth.wait_for_transaction_receipt(transfer)["status"] == 1
    refused(
        presigned,
        403,
        "not-owner",
        f"{model.address} does not own twin {twin} (its owner is {NEW_OWNER})",
    )

    assert rows(relay.store) == before
    assert relay.worker().run_until_idle() == 0
    assert relay.relayer_nonce() == sent
    assert relay.ledger.functions.nonces(model.address).call() == 1
