"""``BrandCache``: the brand of an API key hash is kept for its TTL, then read again."""

from __future__ import annotations

from datetime import UTC, datetime

from bridge.api.deps import BrandCache
from bridge.store.repository import BrandRecord

BRAND = BrandRecord(id=1, name="Atelier", address="0x" + "11" * 20, created_at=datetime.now(UTC))


def test_a_brand_is_kept_for_the_ttl_then_forgotten() -> None:
    now = [100.0]
    cache = BrandCache(ttl=10, clock=lambda: now[0])
    assert cache.get("h" * 64) is None
    cache.put("h" * 64, (BRAND, "h" * 64))
    now[0] = 109.9
    assert cache.get("h" * 64) == (BRAND, "h" * 64)
    assert cache.get("x" * 64) is None
    now[0] = 110.0
    assert cache.get("h" * 64) is None
