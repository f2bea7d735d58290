"""Brand API keys: random 256-bit tokens with a recognisable prefix; only their hash is stored.

A key carries 256 bits of entropy, so a plain SHA-256 is as strong as a salted slow hash here
(salts and work factors defend low-entropy passwords) and lets the store find a brand by an index.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

API_KEY_PREFIX: Final = "tb_live_"
_SECRET_BYTES: Final = 32


def new_api_key() -> str:
    """A fresh API key, ``tb_live_`` followed by 43 URL-safe characters."""
    return API_KEY_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def hash_api_key(key: str) -> str:
    """The hex SHA-256 of ``key``: what the store keeps."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, stored_hash: str) -> bool:
    """Whether ``key`` hashes to ``stored_hash``, compared in constant time."""
    return hmac.compare_digest(hash_api_key(key), stored_hash)
