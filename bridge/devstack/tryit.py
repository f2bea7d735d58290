"""The "try it" text ``twin-bridge dev`` prints once the stack is up: two ``curl`` commands that
report a licensed usage as a demo brand and read its settlement."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from bridge.chain.deploy import LEDGER
from bridge.devstack.options import DevError

WEEK: Final = 7 * 24 * 3600


def _licensed_now(
    brands: list[dict[str, Any]], models: list[dict[str, Any]], now: int
) -> tuple[dict[str, Any], int, str]:
    """A (brand, twin id, usage type) the demo licenses now and for at least another week."""
    by_address = {brand["address"]: brand for brand in brands}
    for model in models:
        for lic in model.get("licenses", []):
            if lic["brand"] in by_address and lic["valid_from"] <= now < lic["valid_until"] - WEEK:
                return by_address[lic["brand"]], model["twin_ids"][0], sorted(lic["prices"])[0]
    raise DevError("the demo has no license valid now: delete the data directory to reseed")


def _shell(api_url: str, brand: Mapping[str, Any], twin_id: int, usage_type: str) -> str:
    fields = f'"twin_id":{twin_id},"usage_type":"{usage_type}","quantity":1'
    # single-quoted JSON, with the shell's $EVENT and the current time spliced in
    body = (
        '\'{"event_id":"\'"$EVENT"\'",'
        + fields
        + ',"used_at":"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'"}\''
    )
    return "\n".join(
        [
            f"  KEY={brand['api_key']}   # {brand['name']}",
            "  EVENT=try-$(date +%s)",
            f"  curl -s -w '\\n' -X POST {api_url}/v1/usage-events \\",
            '       -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\',
            f"       -d {body}",
            "  sleep 3",
            f"  curl -s -w '\\n' {api_url}/v1/usage-events/$EVENT"
            ' -H "Authorization: Bearer $KEY"',
        ]
    )


def try_it(
    api_url: str, brands: list[dict[str, Any]], models: list[dict[str, Any]]
) -> dict[str, Any]:
    """The two ``curl`` commands that report a licensed usage as a demo brand and read its
    settlement, and what they send (for programs that do the same without a shell)."""
    brand, twin_id, usage_type = _licensed_now(brands, models, int(time.time()))
    return {
        "brand": brand["name"],
        "api_key": brand["api_key"],
        "report": {
            "method": "POST",
            "url": f"{api_url}/v1/usage-events",
            "json": {"twin_id": twin_id, "usage_type": usage_type, "quantity": 1},
            "note": "plus event_id and used_at (now, RFC 3339)",
        },
        "status": {"method": "GET", "url": f"{api_url}/v1/usage-events/{{event_id}}"},
        "shell": _shell(api_url, brand, twin_id, usage_type),
    }


def waiting_lines(info: Mapping[str, Any]) -> list[tuple[str, bool]]:
    """What the demo left waiting (``dev.json``'s ``waiting``), in words; none when it has none."""
    waiting = info.get("waiting") or {}
    if not waiting:
        return []
    names = {brand["address"]: brand["name"] for brand in info.get("brands", [])}
    offer, grant = waiting["offer"], waiting["role_grant"]
    ready = datetime.fromtimestamp(grant["executable_from"], UTC)
    lines = [
        ("Waiting:", True),
        (
            f"  offer     {offer['model']} offers twin {offer['twin_id']} to "
            f"{names.get(offer['brand'], offer['brand'])} (version {offer['version']}): not "
            "payable until the brand accepts it",
            False,
        ),
        (
            f"  role      {grant['role']} for {grant['account']}: scheduled by the admin, "
            f"executable from {ready:%H:%M:%S} UTC",
            False,
        ),
    ]
    for brand, limits in waiting["spending_limits"].items():
        lines.append(
            (
                f"  limits    {names.get(brand, brand)} pays at most {limits['per_usage']:,} per "
                f"usage and {limits['per_period']:,} per period (token base units): dearer "
                "usages are rejected",
                False,
            )
        )
    return [*lines, ("", False)]


def ready_lines(info: Mapping[str, Any], dev_json: str, log_dir: str) -> list[tuple[str, bool]]:
    """What the stack prints once it is up, from its ``dev.json``: (line, bold) pairs."""
    return [
        ("", False),
        (f"Twin Bridge dev stack is up. Details: {dev_json}", True),
        (f"  API       {info['api_url']}  (OpenAPI at {info['docs_url']})", False),
        (f"  dashboard {info['dashboard_url']}  (models, brands, auditors)", False),
        (f"  chain     {info['rpc_url']}  (chain id {info['chain_id']})", False),
        (f"  ledger    {info['contracts'][LEDGER]}", False),
        (f"  logs      {log_dir}", False),
        ("", False),
        *waiting_lines(info),
        ("Try it: report a usage as a brand, then read its settlement:", True),
        (info["try_it"]["shell"], False),
        ("", False),
        (
            'The README\'s examples run as written after `eval "$(twin-bridge dev env)"` in '
            "another terminal (with .venv/bin on the PATH).",
            False,
        ),
        ("Ctrl-C stops everything; the next start resumes the same chain and data.", False),
    ]
