"""Earning and clawback rules. Exact rational arithmetic; results are whole points (floored).

How multipliers combine (one rule, for earning and for the checkout quote's preview alike):

    points = floor( Σ over lines [ amount × points_per_unit × category multiplier × campaign multiplier ]
                    × tier multiplier × birthday multiplier )

The category multiplier is the program's for the line's category (0 excludes it). Of the campaigns running when
the order was paid that match the line (its category or sku, and the member's tier), the best one applies:
campaigns do not stack with each other, they multiply with everything else. Line amounts are what the buyer paid:
after the member price, coupons and points.
"""

from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

from pydantic import BaseModel, ConfigDict

from loyalty.domain.coupons import PricedLine
from loyalty.domain.money import currency_exponent
from loyalty.domain.program import Program
from loyalty.domain.tiers import Tier


class Earning(BaseModel):
    """Points an order earns, and the figures that explain them (a ledger entry's detail)."""

    model_config = ConfigDict(frozen=True)

    points: int
    detail: dict[str, Any]


def earn(
    lines: list[PricedLine],
    program: Program,
    *,
    at: datetime | None,
    tier: Tier | None = None,
    birthday: bool = False,
) -> Earning:
    scale = 10 ** currency_exponent(program.currency)
    base = Fraction(0)
    with_lines = Fraction(0)
    campaigns: set[str] = set()
    for line in lines:
        amount = Fraction(line.amount, scale) * Fraction(program.points_per_unit)
        base += amount
        campaign = None
        if at is not None:
            campaign = program.best_campaign(line.sku, line.category, tier.name if tier else None, at)
        if campaign is not None:
            campaigns.add(campaign.id)
        boost = campaign.multiplier if campaign is not None else Decimal(1)
        with_lines += amount * Fraction(program.multiplier(line.category)) * Fraction(boost)
    birthday_multiplier = program.birthday.multiplier if birthday and program.birthday else Decimal(1)
    tier_multiplier = tier.multiplier if tier else Decimal(1)
    points = int(with_lines * Fraction(tier_multiplier) * Fraction(birthday_multiplier) // 1)
    detail: dict[str, Any] = {"base": int(base // 1), "lines": int(with_lines // 1)}
    if tier is not None and tier_multiplier != 1:
        detail["tier"] = {"name": tier.name, "multiplier": str(tier_multiplier)}
    if campaigns:
        detail["campaigns"] = sorted(campaigns)
    if birthday_multiplier != 1:
        detail["birthday"] = str(birthday_multiplier)
    return Earning(points=points, detail=detail)


def kept_after_refunds(earned: int, total: int, refunded: int, *, cancelled: bool = False) -> int:
    """Points a member keeps from an order that earned `earned` on `total`, after refunds totalling `refunded`.

    Defined cumulatively, floor(P x (T - R) / T), so any number of partial refunds in any order lands on the
    same figure; a full refund (or a cancellation) keeps nothing. Refunds beyond the total count as full.
    """
    if cancelled or earned <= 0:
        return 0
    if total <= 0:
        return earned if refunded <= 0 else 0
    remaining = max(total - refunded, 0)
    return earned * remaining // total
