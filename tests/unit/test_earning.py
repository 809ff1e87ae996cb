from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from loyalty.domain.coupons import PricedLine
from loyalty.domain.earning import kept_after_refunds, points_for_lines
from loyalty.domain.money import parse_amount
from loyalty.domain.program import Program


def line(amount: str, category: str = "default", currency: str = "CNY") -> PricedLine:
    return PricedLine(sku="s", category=category, amount=parse_amount(amount, currency))


def test_points_floor_the_sum_not_each_line() -> None:
    program = Program(points_per_unit=Decimal(1))
    # 0.6 + 0.6 = 1.2 -> 1 point (flooring each line would give 0)
    assert points_for_lines([line("0.60"), line("0.60")], program) == 1


def test_category_multipliers_exclude_and_boost() -> None:
    program = Program(category_multipliers={"tobacco": Decimal(0), "featured": Decimal(2)})
    lines = [line("100.00", "tobacco"), line("50.00", "featured"), line("10.50")]
    assert points_for_lines(lines, program) == 0 + 100 + 10


def test_fractional_rates_are_exact() -> None:
    # 0.1 points per yuan on 0.30 x 3 lines: exactly 0.09 -> 0, never 0.09000000000000001 games
    program = Program(points_per_unit=Decimal("0.1"), category_multipliers={"x": Decimal("1.5")})
    assert points_for_lines([line("33.33", "x")], program) == 4  # 33.33 x 1.5 x 0.1 = 4.9995
    assert points_for_lines([line("100.00", "x")], program) == 15


def test_zero_decimal_currency() -> None:
    program = Program(currency="JPY", points_per_unit=Decimal("0.01"))
    assert points_for_lines([line("1999", currency="JPY")], program) == 19


def test_full_refund_claws_back_everything() -> None:
    assert kept_after_refunds(123, 10000, 10000) == 0
    assert kept_after_refunds(123, 10000, 20000) == 0  # beyond the total counts as full
    assert kept_after_refunds(123, 10000, 0, cancelled=True) == 0


@given(
    earned=st.integers(min_value=0, max_value=10**7),
    total=st.integers(min_value=1, max_value=10**9),
    cuts=st.lists(st.integers(min_value=0, max_value=10**9), max_size=8),
)
def test_partial_refunds_never_drift(earned: int, total: int, cuts: list[int]) -> None:
    """Whatever the split, the clawbacks add up to what the cumulative rule says, and never below zero."""
    refunds = [c % (total + 1) for c in cuts]
    refunded = 0
    kept = earned
    clawed = 0
    for amount in refunds:
        refunded = min(refunded + amount, total)
        new_kept = kept_after_refunds(earned, total, refunded)
        assert 0 <= new_kept <= kept
        clawed += kept - new_kept
        kept = new_kept
    assert clawed == earned - kept_after_refunds(earned, total, refunded)
    assert kept == earned * (total - refunded) // total
