"""Read queries over the indexer's tables (migrations 0005 and 0007) for the public read API.

Everything here is answered from what the indexer stored from confirmed ledger events; nothing asks
the chain. Amounts are exact integers (token base units); each figure keeps the event it came from
(``Source``: transaction, block, log index and block time). One module per resource: ``twins``
(twins and their licenses), ``usages`` (settled usages), ``earnings`` (twins' and payees'
royalties over time, a payee's payouts: ``payee_payouts``), ``accounts`` (brand accounts),
``offers`` (license offers and the ones waiting for a brand: ``pending_offers``), ``limits``
(a brand's spending limits and own attester: ``brand_limits``), ``roles`` (the access manager's
role holders: ``role_members``) and ``status`` (the indexer's cursor).
"""

from bridge.store.ledger_queries.accounts import (
    AccountChange,
    BrandAccount,
    BrandTotals,
    DebtEntry,
    brand_account,
)
from bridge.store.ledger_queries.common import (
    BPS_DENOMINATOR,
    Period,
    Source,
    usage_type_name,
)
from bridge.store.ledger_queries.earnings import (
    PayeeEarnings,
    PayeeEarningsRow,
    PayeeFlow,
    Payout,
    PayoutKey,
    TwinEarnings,
    TwinEarningsRow,
    payee_earnings,
    payee_payouts,
    period_of,
    twin_earnings,
)
from bridge.store.ledger_queries.limits import BrandLimits, LimitSetting, brand_limits
from bridge.store.ledger_queries.offers import (
    Offer,
    OfferPrice,
    PendingOffer,
    pair_offers,
    pending_offers,
)
from bridge.store.ledger_queries.roles import RoleMember, role_members
from bridge.store.ledger_queries.status import IndexStatus, index_status
from bridge.store.ledger_queries.twins import (
    License,
    LicenseState,
    LicenseVersion,
    Owner,
    PauseInterval,
    PauseState,
    Payee,
    Price,
    Revocation,
    Split,
    Twin,
    license_state,
    twin,
    twin_exists,
    twins_page,
)
from bridge.store.ledger_queries.usages import UsageFilter, UsageKey, usages_page

__all__ = [
    "BPS_DENOMINATOR",
    "AccountChange",
    "BrandAccount",
    "BrandLimits",
    "BrandTotals",
    "DebtEntry",
    "IndexStatus",
    "License",
    "LicenseState",
    "LicenseVersion",
    "LimitSetting",
    "Offer",
    "OfferPrice",
    "Owner",
    "PauseInterval",
    "PauseState",
    "Payee",
    "PayeeEarnings",
    "PayeeEarningsRow",
    "PayeeFlow",
    "Payout",
    "PayoutKey",
    "PendingOffer",
    "Period",
    "Price",
    "Revocation",
    "RoleMember",
    "Source",
    "Split",
    "Twin",
    "TwinEarnings",
    "TwinEarningsRow",
    "UsageFilter",
    "UsageKey",
    "brand_account",
    "brand_limits",
    "index_status",
    "license_state",
    "pair_offers",
    "payee_earnings",
    "payee_payouts",
    "pending_offers",
    "period_of",
    "role_members",
    "twin",
    "twin_earnings",
    "twin_exists",
    "twins_page",
    "usage_type_name",
    "usages_page",
]
