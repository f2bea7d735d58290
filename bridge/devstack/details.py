"""What ``<data_dir>/dev.json`` says about a running dev stack: where its parts listen, its
contracts and role holders, the demo's brands (with API keys) and models (with dev keys), and what
the demo left waiting (an offer, a brand's own spending limits, a scheduled role grant).

A restart that reuses the chain keeps the brands, models and payees of the previous ``dev.json``;
a fresh seed registers the demo's brands in the bridge's database with new API keys."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from eth_account.signers.local import LocalAccount

from bridge.chain.ledger import role_name
from bridge.devstack.datadir import read_dev_json
from bridge.devstack.demo import (
    ATTESTER,
    DEPLOYER,
    PAUSER,
    REGISTRAR,
    RELAYER,
    Demo,
    DemoModel,
    dev_account,
)
from bridge.devstack.deployment import DevDeployment
from bridge.devstack.options import DEV_CHAIN_ID, DevError, DevOptions
from bridge.devstack.tryit import try_it
from bridge.domain.usage import UsageType
from bridge.intake.api_keys import hash_api_key, new_api_key
from bridge.settings import Settings
from bridge.store import migrate
from bridge.store.repository import Store, create_brand, list_brands

NOTE = (
    "local dev stack; every key here is a well-known anvil dev key, public by design: never send "
    "real value to these addresses"
)


def saved_brands(options: DevOptions) -> list[dict[str, Any]]:
    """The brands (with their API keys) of the previous ``dev.json``."""
    brands = (read_dev_json(options.dev_json) or {}).get("brands")
    if not isinstance(brands, list):
        raise DevError(
            f"{options.dev_json} lost its brands; delete {options.data_dir} to start over"
        )
    return brands


def register_brands(settings: Settings, demo: Demo, options: DevOptions) -> list[dict[str, Any]]:
    """Registers the demo's brands in the bridge's database with new API keys."""
    url = settings.resolved_database_url
    migrate.upgrade(url)
    store = Store.from_url(url)
    try:
        with store.session() as session:
            known = {brand.address for brand in list_brands(session)}
            out = []
            for name, account in demo.brands:
                if account.address in known:
                    raise DevError(
                        f"the bridge database {url} already has brand {account.address}: "
                        f"it belongs to an earlier chain; delete {options.data_dir} to start over"
                    )
                out.append(_register(session, name, account))
    finally:
        store.close()
    return out


def _register(session: Any, name: str, account: LocalAccount) -> dict[str, Any]:
    key = new_api_key()
    create_brand(session, name=name, address=account.address, api_key_hash=hash_api_key(key))
    return {
        "name": name,
        "address": account.address,
        "api_key": key,
        "private_key": account.key.hex(),
    }


def _model(model: DemoModel) -> dict[str, Any]:
    return {
        "name": model.name,
        "address": model.account.address,
        "private_key": model.account.key.hex(),
        "twin_ids": [model.twin_id],
        "licenses": [
            {
                "brand": lic.brand,
                "valid_from": lic.valid_from,
                "valid_until": lic.valid_until,
                "max_uses": lic.max_uses,
                "prices": {UsageType(t).api_name: p for t, p in lic.prices.items()},
            }
            for lic in model.licenses
        ],
        "payees": [{"account": a, "bps": b} for a, b in model.payees],
    }


def _waiting(demo: Demo) -> dict[str, Any]:
    """What the demo left waiting, for the API and the dashboard to show."""
    offer, grant = demo.pending_offer, demo.pending_grant
    return {
        "offer": {
            "model": offer.model,
            "twin_id": offer.twin_id,
            "brand": offer.license.brand,
            "version": offer.version,
            "terms_hash": "0x" + offer.terms_hash.hex(),
            "prices": {UsageType(t).api_name: p for t, p in offer.license.prices.items()},
        },
        "role_grant": {
            "role": role_name(grant.role_id),
            "account": grant.account,
            "operation_id": "0x" + grant.operation_id.hex(),
            "executable_from": grant.ready_at,
        },
        "spending_limits": {
            brand: {"per_usage": per_usage, "per_period": per_period}
            for brand, (per_usage, per_period) in demo.limits.items()
        },
    }


def _roles() -> dict[str, str]:
    return {
        "admin": dev_account(DEPLOYER).address,
        "registrar": dev_account(REGISTRAR).address,
        "attester": dev_account(ATTESTER).address,
        "relayer": dev_account(RELAYER).address,
        "pauser": dev_account(PAUSER).address,
    }


def _bridge_keys() -> dict[str, str]:
    """The keys the stack's worker signs and relays with (``doctor --dev`` checks them)."""
    return {
        "attester": dev_account(ATTESTER).key.hex(),
        "relayer": dev_account(RELAYER).key.hex(),
    }


def _database_url(options: DevOptions) -> str:
    """The bridge database of the stack (``audit --against-db``), its password hidden."""
    from sqlalchemy.engine import make_url

    url = Settings(data_dir=options.data_dir).resolved_database_url
    return make_url(url).render_as_string(hide_password=True)


def dev_details(
    options: DevOptions,
    deployment: DevDeployment,
    brands: list[dict[str, Any]],
    demo: Demo | None,
) -> dict[str, Any]:
    """``dev.json``'s content (without ``ready``); models and payees come from ``demo`` after a
    seed, else from the previous ``dev.json``."""
    previous = read_dev_json(options.dev_json) or {}
    if demo is not None:
        models = [_model(model) for model in demo.models]
        payees = {"agency": demo.agency.address, "photographer": demo.photographer.address}
        waiting = _waiting(demo)
    else:
        models, payees = previous.get("models", []), previous.get("payees", {})
        waiting = previous.get("waiting", {})
    return {
        "note": NOTE,
        "pid": os.getpid(),
        "started_at": datetime.now(UTC).isoformat(),
        "api_url": options.api_url,
        "docs_url": f"{options.api_url}/docs",
        "dashboard_url": f"{options.api_url}/",
        "rpc_url": options.rpc_url,
        "chain_id": DEV_CHAIN_ID,
        "data_dir": str(options.data_dir),
        "contracts": deployment.contracts,
        "deployment": str(options.deployment_file),
        "roles": _roles(),
        "bridge_keys": _bridge_keys(),
        "database_url": _database_url(options),
        "brands": brands,
        "models": models,
        "payees": payees,
        "waiting": waiting,
        "try_it": try_it(options.api_url, brands, models),
    }
