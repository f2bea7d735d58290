"""schemathesis against the bridge's own OpenAPI schema: the real app on a real store (SQLite and
PostgreSQL) with a real chain (anvil with the benchmark world: the ledger, 20 licensed twins, three
brands), cases generated from the schema, both valid (positive) and invalid (negative). Every
answer must be a non-5xx status the operation documents, with the content type and body schema it
declares.

The operations are grouped in classes; each class gets ``examples`` positive and ``examples``
negative cases: 25 in ``make test`` (the short pass), ``TWIN_BRIDGE_FUZZ_EXAMPLES`` (default 1,000)
in ``make fuzz``. Each run writes its counts to ``build/fuzz/api-<backend>-<class>-<pass>.json``.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bridge.api import create_app
from bridge.chain.client import Web3ChainClient
from bridge.chain.views import Web3LicenseView
from bridge.intake.ingest import Ingestor
from bridge.intake.owner_actions import ActionVerifier
from bridge.settings import Settings
from bridge.store.repository import Store
from bridge.testing import AnvilChain

from .conftest import register_brand

pytestmark = pytest.mark.integration

SHORT_EXAMPLES = 25
LONG_EXAMPLES = int(os.environ.get("TWIN_BRIDGE_FUZZ_EXAMPLES", "1000"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CLASSES: dict[str, tuple[str, ...]] = {
    "usage-write": ("POST /v1/usage-events",),
    "usage-read": (
        "GET /v1/usage-events",
        "GET /v1/usage-events/{event_id}",
        "GET /v1/brand",
        "GET /v1/brand/limits",
        "GET /v1/offers",
    ),
    "action-write": ("POST /v1/owner-actions", "POST /v1/offers/{twin_id}/{version}/accept"),
    "escrow": (
        "GET /v1/brand/escrow",
        "POST /v1/brand/escrow/deposit",
        "POST /v1/brand/escrow/withdrawal-request",
        "POST /v1/brand/escrow/withdrawal",
    ),
    "action-read": (
        "GET /v1/owner-actions/types",
        "GET /v1/owner-actions/{action_id}",
        "GET /v1/accounts/{address}/nonce",
    ),
    "ledger-read": (
        "GET /v1/twins",
        "GET /v1/twins/{twin_id}",
        "GET /v1/twins/{twin_id}/earnings",
        "GET /v1/payees/{address}/earnings",
        "GET /v1/payees/{address}/payouts",
        "GET /v1/usages",
        "GET /v1/brands/{address}/account",
        "GET /v1/brands",
    ),
    "audit": ("GET /v1/audit", "GET /v1/audit/csv"),
    "status": (
        "GET /v1/index/status",
        "GET /v1/token",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    ),
}
"""The operations of each class; every operation of the schema must be in exactly one, so a new
operation fails the run until it is classified here."""
LICENSED = "licensed"
RUNS: dict[str, tuple[str, ...]] = {
    "usage-write": ("positive", "negative", LICENSED),
    "status": ("positive",),  # no input: nothing to make invalid, one case per operation
}
"""The runs of a class other than positive and negative cases."""
NOT_FUZZED = {
    "audit": "each case audits the ledger from block 0 (seconds each)",
}
"""Classes left out of the generated runs, with the reason."""


def operation_class(label: str) -> str:
    found = [name for name, labels in CLASSES.items() if label in labels]
    assert len(found) == 1, f"{label} must belong to exactly one class, not {found}"
    return found[0]


@pytest.fixture(scope="module")
def anvil_world(anvil: AnvilChain) -> AnvilChain:
    return anvil


@dataclass
class Target:
    schema: Any
    key: str
    licensed: list[tuple[int, int]]
    """(twin, usage type) pairs the brand holds a license for."""
    now: datetime
    """The chain's time, also the API's clock."""


def _licensed(target: Target, body: Any, pick: tuple[int, int], age_s: int) -> Any:
    """``body`` (any of the four shapes) with every event's twin, type and time of use made
    licensed and its quantity in range: the ingestor stores it, whatever its strings hold."""
    twin, usage_type = pick
    used_at = (target.now - timedelta(seconds=age_s)).isoformat()

    def usage(fields: dict[str, Any]) -> dict[str, Any]:
        quantity = fields.get("quantity")
        ok = isinstance(quantity, int) and not isinstance(quantity, bool) and 0 < quantity <= 1000
        return {
            **fields,
            "twin_id": twin,
            "usage_type": usage_type,
            "quantity": quantity if ok else 1,
        }

    def event(item: Any) -> Any:
        if not isinstance(item, dict):
            return item
        if "specversion" in item:
            data = item.get("data")
            return {
                **item,
                "time": used_at,
                "data": usage(data) if isinstance(data, dict) else data,
            }
        return {**usage(item), "used_at": used_at}

    if isinstance(body, list):
        return [event(item) for item in body]
    if isinstance(body, dict) and isinstance(body.get("events"), list):
        return {**body, "events": [event(item) for item in body["events"]]}
    return event(body)


@pytest.fixture
def target(anvil_world: AnvilChain, store: Store, tmp_path: Path) -> Target:
    """The app on the store and the anvil ledger, with one registered brand of the world."""
    ledger = anvil_world.world.ledger.address
    settings = Settings(
        data_dir=tmp_path / "data",
        rpc_url=anvil_world.url,
        ledger_address=ledger,
        rate_limit_per_s=10_000,
        rate_limit_burst=10_000,
        action_rate_limit_per_s=10_000,
    )
    licenses = Web3LicenseView.connect(anvil_world.url, ledger, ttl=settings.license_cache_ttl_s)
    chain_now = datetime.fromtimestamp(anvil_world.w3.eth.get_block("latest")["timestamp"], UTC)
    app = create_app(
        settings,
        store=store,
        chain=licenses,
        ingestor=Ingestor(settings=settings, licenses=licenses, clock=lambda: chain_now),
        actions=ActionVerifier(Web3ChainClient([anvil_world.url]), ledger),
    )
    _, key = register_brand(store, "Atelier", anvil_world.world.brands[0])
    licensed = [
        (twin, usage_type)
        for (twin, brand), plan in sorted(anvil_world.world.licenses.items())
        if brand == 0
        for usage_type in plan.prices
    ]
    return Target(schemathesis.openapi.from_asgi("/openapi.json", app), key, licensed, chain_now)


def test_every_operation_belongs_to_one_class(target: Target) -> None:
    labels = [op.ok().label for op in target.schema.get_all_operations()]
    assert "POST /v1/usage-events" in labels
    assert "POST /v1/owner-actions" in labels
    assert sorted(labels) == sorted(label for group in CLASSES.values() for label in group)


def _run(target: Target, cls: str, run: str, examples: int) -> Counter[str]:
    """``examples`` cases of the class's operations; ``run`` is a generation mode, or
    ``licensed``: positive usage bodies made licensed so that they are stored."""
    operations = [
        op.ok()
        for op in target.schema.get_all_operations()
        if operation_class(op.ok().label) == cls
    ]
    assert operations, f"no operation in class {cls}"
    mode = schemathesis.GenerationMode("positive" if run == LICENSED else run)
    cases = st.one_of([op.as_strategy(generation_mode=mode) for op in operations])
    if run == LICENSED:

        def make_licensed(drawn: tuple[Any, tuple[int, int], int]) -> Any:
            case, pick, age_s = drawn
            case.body = _licensed(target, case.body, pick, age_s)
            return case

        cases = st.tuples(cases, st.sampled_from(target.licensed), st.integers(0, 1800)).map(
            make_licensed
        )
    seen: Counter[str] = Counter()
    auth = {"Authorization": f"Bearer {target.key}"}

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        derandomize=False,
    )
    @given(case=cases)
    def check(case: Any) -> None:
        response = case.call(headers=auth)  # the brand's key (bad keys: test_hostile_inputs)
        case.validate_response(response, checks=CHECKS)
        seen[f"{case.operation.label} {response.status_code}"] += 1

    check()
    return seen


@pytest.mark.parametrize(
    "length",
    [
        pytest.param("short", id="short"),
        pytest.param("long", id="long", marks=pytest.mark.fuzz),
    ],
)
@pytest.mark.parametrize("cls", [name for name in CLASSES if name not in NOT_FUZZED])
def test_schemathesis_finds_no_server_error_and_no_schema_violation(
    target: Target, cls: str, length: str, backend: str
) -> None:
    examples = SHORT_EXAMPLES if length == "short" else LONG_EXAMPLES
    names = RUNS.get(cls, ("positive", "negative"))
    runs = {name: _run(target, cls, name, examples) for name in names}
    counts = {mode: sum(seen.values()) for mode, seen in runs.items()}
    out = Path("build/fuzz")
    out.mkdir(parents=True, exist_ok=True)
    (out / f"api-{backend}-{cls}-{length}.json").write_text(
        json.dumps({"cases": counts, "by_status": {m: dict(s) for m, s in runs.items()}}, indent=1)
    )
    for name, count in counts.items():
        if cls == "status":
            assert count >= 1, f"{cls} {name}: no case ran"
        else:
            assert count >= examples, f"{cls} {name}: {count} cases < {examples}"
    if LICENSED in runs:
        stored = (
            runs[LICENSED]["POST /v1/usage-events 202"]
            + runs[LICENSED]["POST /v1/usage-events 200"]
        )
        assert stored >= examples // 2, f"only {stored} licensed cases were taken: {runs[LICENSED]}"
