"""Revert reasons in words: the ledger's custom errors (its own and OpenZeppelin's) decoded from
revert data with the compiled ABI."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from eth_abi.abi import decode
from eth_utils.address import is_hex_address, to_checksum_address
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from bridge.chain.toolchain import load_artifact

LEDGER = "TwinLedger"
_ERROR_STRING = keccak(text="Error(string)")[:4]
_PANIC = keccak(text="Panic(uint256)")[:4]


def _type(component: dict[str, Any]) -> str:
    kind = str(component["type"])
    if kind.startswith("tuple"):
        inner = ",".join(_type(c) for c in component["components"])
        return f"({inner}){kind[len('tuple') :]}"
    return kind


@lru_cache(maxsize=1)
def _errors() -> dict[bytes, tuple[str, list[str], list[str]]]:
    """Selector -> (name, argument names, argument types) of every error in the ledger's ABI."""
    table: dict[bytes, tuple[str, list[str], list[str]]] = {}
    abi: list[dict[str, Any]] = [dict(entry) for entry in load_artifact(LEDGER).abi]
    for entry in abi:
        if entry.get("type") != "error":
            continue
        inputs = list(entry.get("inputs", []))
        types = [_type(i) for i in inputs]
        signature = f"{entry['name']}({','.join(types)})"
        table[keccak(text=signature)[:4]] = (
            str(entry["name"]),
            [str(i.get("name") or f"arg{n}") for n, i in enumerate(inputs)],
            types,
        )
    return table


def _show(value: Any) -> str:
    if isinstance(value, bytes):
        return HexBytes(value).to_0x_hex()
    if isinstance(value, str) and len(value) == 42 and is_hex_address(value):
        return to_checksum_address(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return str(value)


def describe_revert(data: bytes | None) -> str | None:
    """``LicenseInvalidWindow(validFrom=0, validUntil=5)`` for the revert data of a ledger error,
    the reason of ``Error(string)``, ``Panic(0x11)``; None when the data says nothing known."""
    if not data or len(data) < 4:
        return None
    selector, body = bytes(data[:4]), bytes(data[4:])
    try:
        if selector == _ERROR_STRING:
            return str(decode(["string"], body)[0])
        if selector == _PANIC:
            return f"Panic({hex(decode(['uint256'], body)[0])})"
        known = _errors().get(selector)
        if known is None:
            return None
        name, names, types = known
        values = decode(types, body)
    except Exception:
        return None
    args = ", ".join(f"{n}={_show(v)}" for n, v in zip(names, values, strict=True))
    return f"{name}({args})"
