"""Token amounts as people read them: base units scaled by the token's decimals, with its symbol."""

from __future__ import annotations

from decimal import Decimal


def token_number(amount: int, decimals: int) -> str:
    """Base units as a number of tokens, two decimals at least (more when finer): ``1,234.50``."""
    value = Decimal(amount).scaleb(-decimals)
    if value == round(value, 2):
        return f"{value:,.2f}"
    return f"{value:,.{decimals}f}".rstrip("0")


def token_amount(amount: int, symbol: str, decimals: int) -> str:
    """Base units with the token's symbol: ``1,234.50 mUSD``."""
    return f"{token_number(amount, decimals)} {symbol}"
