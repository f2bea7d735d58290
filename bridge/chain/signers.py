"""The attester and relayer keys: encrypted keystore v3 files, raw keys only on local dev chains."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Final

from eth_account import Account
from eth_account.signers.local import LocalAccount
from pydantic import SecretStr

from bridge.errors import SigningKeyError

if TYPE_CHECKING:
    from bridge.settings import Settings

DEV_CHAIN_IDS: Final = frozenset({31337, 1337})
"""Anvil/Hardhat and Ganache/geth --dev: chains whose keys guard nothing."""


def load_signer(
    role: str,
    *,
    chain_id: int,
    keystore: Path | None = None,
    password: str | None = None,
    private_key: str | None = None,
) -> LocalAccount:
    """The ``role`` key from a keystore file (decrypted with ``password``) or a raw private key.

    Raises:
        SigningKeyError: when neither or both are given, the keystore cannot be read or decrypted,
            or a raw key is offered for a chain that is not a local dev chain.
    """
    if (keystore is None) == (private_key is None):
        raise SigningKeyError(role, "give exactly one of a keystore file or a raw private key")
    if private_key is not None:
        if chain_id not in DEV_CHAIN_IDS:
            raise SigningKeyError(
                role,
                f"a raw private key is refused on chain {chain_id}; raw keys are for local dev "
                f"chains ({', '.join(map(str, sorted(DEV_CHAIN_IDS)))}), use a keystore file",
            )
        try:
            account: LocalAccount = Account.from_key(private_key)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(role, f"invalid private key ({type(exc).__name__})") from None
        return account
    assert keystore is not None  # noqa: S101 - checked above
    if password is None:
        raise SigningKeyError(role, f"no password for keystore {keystore}")
    try:
        encrypted = json.loads(keystore.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SigningKeyError(role, f"cannot read keystore {keystore}: {exc}") from exc
    try:
        key = Account.decrypt(encrypted, password)
    except (ValueError, KeyError, TypeError) as exc:
        raise SigningKeyError(role, f"cannot decrypt keystore {keystore}: {exc}") from None
    decrypted: LocalAccount = Account.from_key(key)
    return decrypted


def read_password(*, password_file: Path | None, password: str | None) -> str | None:
    """The keystore password from a file (first line, newline stripped) or a given value."""
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    return password


def signers_from_settings(
    settings: Settings, *, chain_id: int
) -> tuple[LocalAccount, LocalAccount]:
    """The attester and relayer keys the settings name; with no relayer key of its own, the
    relayer is the attester (one key for both, as on a dev chain).

    Raises:
        SigningKeyError: as ``load_signer``.
    """

    def raw(value: SecretStr | None) -> str | None:
        return None if value is None else value.get_secret_value()

    password = read_password(
        password_file=settings.keystore_password_file,
        password=raw(settings.keystore_password),
    )

    attester = load_signer(
        "attester",
        chain_id=chain_id,
        keystore=settings.attester_keystore,
        password=password,
        private_key=raw(settings.attester_private_key),
    )
    if settings.relayer_keystore is None and settings.relayer_private_key is None:
        return attester, attester
    relayer = load_signer(
        "relayer",
        chain_id=chain_id,
        keystore=settings.relayer_keystore,
        password=password,
        private_key=raw(settings.relayer_private_key),
    )
    return attester, relayer
