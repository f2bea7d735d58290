"""``twin-bridge dev env``: the shell environment of a running dev stack, as ``export`` lines for
``eval "$(twin-bridge dev env)"``, so that the README's examples run as written against it.

It names the stack's API (``TWIN_BRIDGE_API_URL``, which the ``brand`` and ``model`` commands
read) and chain (``RPC``), acts as one demo brand (``KEY`` and ``TWIN_BRIDGE_API_KEY``: its API
key; ``BRAND``: its address; its keystore for its own transactions) and one demo model (its
keystore for the signed owner actions), and keeps ``TWIN_BRIDGE_DATA_DIR`` so that every later
command finds the same stack. The keystores hold anvil's well-known dev keys, public by design, and
are written into ``<data_dir>/keys/`` the first time with a password file beside them."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final

from bridge.devstack.datadir import read_dev_json, require_running_stack, write_json
from bridge.devstack.options import DevError, DevOptions

EXAMPLE_BRAND: Final = "Nordic Thread"
"""The demo brand the README's examples act as: the demo leaves it an offer to accept."""
EXAMPLE_TWIN: Final = 11
"""The twin whose model the README's examples act as: licensed to the example brand for a year,
with no cap on uses."""
PASSWORD: Final = "twin-bridge-dev"  # noqa: S105 - guards public dev keys only
"""The dev keystores' password: they hold public dev keys, so it guards nothing."""
SCRYPT_N: Final = 2**12
"""A cheap scrypt cost: the keys are public, and each command decrypts its key again."""
NOTE: Final = (
    "anvil's well-known dev keys, public by design: never send real value to these addresses"
)


@dataclass(frozen=True)
class KeyFiles:
    """The keystores ``dev env`` wrote for the example brand and model, and their password."""

    brand: Path
    model: Path
    password: Path


def running_details(options: DevOptions) -> dict[str, Any]:
    """``dev.json`` of the stack running from ``options.data_dir``.

    Raises:
        DevError: no stack runs there, or it is not ready yet (``require_running_stack``).
    """
    require_running_stack(options.data_dir)
    info = read_dev_json(options.dev_json)
    if info is None:  # the stack replaced it meanwhile
        raise DevError(f"cannot read {options.dev_json}: try again")
    return info


def _example_parties(info: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The example brand and the model owning the example twin, from ``dev.json``."""
    brand = next((b for b in info.get("brands", []) if b["name"] == EXAMPLE_BRAND), None)
    model = next((m for m in info.get("models", []) if EXAMPLE_TWIN in m["twin_ids"]), None)
    if brand is None or model is None:
        raise DevError(
            f"dev.json has no brand {EXAMPLE_BRAND!r} or no model of twin {EXAMPLE_TWIN}: "
            "delete the data directory to seed the demo again"
        )
    return brand, model


def _keystore(path: Path, private_key: str) -> None:
    """Writes the keystore of ``private_key`` to ``path`` unless it holds that key already."""
    from eth_account import Account

    account = Account.from_key(private_key)
    held = read_dev_json(path) or {}
    if str(held.get("address", "")).lower() == account.address[2:].lower():
        return
    write_json(path, Account.encrypt(account.key, PASSWORD, kdf="scrypt", iterations=SCRYPT_N))


def write_key_files(
    options: DevOptions, brand: Mapping[str, Any], model: Mapping[str, Any]
) -> KeyFiles:
    """The keystores of ``brand`` and ``model`` (dev keys) and their password file, written into
    ``<data_dir>/keys/`` when missing."""
    keys = options.keys_dir
    keys.mkdir(mode=0o700, exist_ok=True)
    files = KeyFiles(keys / "brand.json", keys / "model.json", keys / "password")
    if not files.password.exists():
        files.password.write_text(PASSWORD + "\n", encoding="utf-8")
        files.password.chmod(0o600)
    _keystore(files.brand, str(brand["private_key"]))
    _keystore(files.model, str(model["private_key"]))
    return files


def env_lines(options: DevOptions) -> list[str]:
    """The ``export`` lines (and comments) of the stack running from ``options.data_dir``.

    Raises:
        DevError: as ``running_details``, or ``dev.json`` lacks the example brand or model.
    """
    options = replace(options, data_dir=options.data_dir.resolve())
    info = running_details(options)
    brand, model = _example_parties(info)
    files = write_key_files(options, brand, model)
    data_dir = options.data_dir
    exports = [
        ("TWIN_BRIDGE_DATA_DIR", str(data_dir), "the stack's data directory"),
        ("TWIN_BRIDGE_API_URL", info["api_url"], "its API (the brand and model commands read it)"),
        ("RPC", info["rpc_url"], f"its chain (id {info['chain_id']})"),
        ("BRAND", brand["address"], f"the demo brand {brand['name']}"),
        ("KEY", brand["api_key"], f"{brand['name']}'s API key"),
        ("TWIN_BRIDGE_API_KEY", brand["api_key"], "the same, for the brand commands"),
        ("TWIN_BRIDGE_BRAND_KEYSTORE", str(files.brand), f"{brand['name']}'s key"),
        ("TWIN_BRIDGE_BRAND_PASSWORD_FILE", str(files.password), "its password"),
        (
            "TWIN_BRIDGE_MODEL_KEYSTORE",
            str(files.model),
            f"the key of {model['name']}, who owns twin {EXAMPLE_TWIN}",
        ),
        ("TWIN_BRIDGE_MODEL_PASSWORD_FILE", str(files.password), "its password"),
    ]
    return [
        f"# the Twin Bridge dev stack running from {data_dir}; its keys are {NOTE}",
        *(f"export {name}={shlex.quote(value)}   # {what}" for name, value, what in exports),
    ]
