"""Earning and clawback rules. Exact rational arithmetic; results are whole points (floored)."""

from decimal import Decimal
from fractions import Fraction

from loyalty.domain.coupons import PricedLine
from loyalty.domain.money import currency_exponent
from loyalty.domain.program import Program


def points_for_lines(lines: list[PricedLine], program: Program, tier_multiplier: Decimal = Decimal(1)) -> int:
    """points = floor( sum over lines of line.amount x multiplier(line.category) x points_per_unit
    x the member's tier multiplier ). Line amounts are what the buyer paid: after coupons and points."""
    scale = 10 ** currency_exponent(program.currency)
    total = Fraction(0)
    for line in lines:
        amount = Fraction(line.amount, scale)
        total += amount * Fraction(program.multiplier(line.category)) * Fraction(program.points_per_unit)
    return int(total * Fraction(tier_multiplier) // 1)


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
