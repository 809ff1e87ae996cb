from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.domain.coupons import PricedLine, member_priced
from loyalty.domain.earning import earn, kept_after_refunds
from loyalty.domain.engagement import is_birthday
from loyalty.domain.money import parse_amount
from loyalty.domain.program import Program
from loyalty.domain.tiers import Tier


def line(amount: str, category: str = "default", currency: str = "CNY") -> PricedLine:
    return PricedLine(sku="s", category=category, amount=parse_amount(amount, currency))


def points_for_lines(lines: list[PricedLine], program: Program) -> int:
    """Points for lines with no campaign, tier or birthday in play."""
    return earn(lines, program, at=None).points


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


# ---------------------------------------------------------------- campaigns, tiers, birthdays: one rule

WEEKEND = {"id": "tea-weekend", "name": "Double tea", "multiplier": 2, "categories": ["tea"]}


def campaign(**changes: object) -> dict[str, object]:
    return WEEKEND | {"from": "2026-12-05T00:00:00+08:00", "until": "2026-12-06T23:59:59+08:00"} | changes


def test_the_best_matching_campaign_multiplies_with_category_tier_and_birthday() -> None:
    program = Program.model_validate(
        {
            "category_multipliers": {"tea": "1.5"},
            "campaigns": [campaign(), campaign(id="all", multiplier="1.2", categories=[])],
            "birthday": {"multiplier": 2},
        }
    )
    lines = [line("100.00", "tea"), line("100.00", "ware")]
    saturday = datetime(2026, 12, 5, 12, tzinfo=UTC)
    gold = Tier(name="gold", threshold=Decimal(0), multiplier=Decimal("1.5"))
    result = earn(lines, program, at=saturday, tier=gold, birthday=True)
    # tea: 100 x 1.5 (category) x 2 (its best campaign); ware: 100 x 1.2 (the store-wide one); then x 1.5 x 2
    assert result.points == (300 + 120) * 3
    assert result.detail == {
        "base": 200,
        "lines": 420,
        "tier": {"name": "gold", "multiplier": "1.5"},
        "campaigns": ["all", "tea-weekend"],
        "birthday": "2",
    }
    monday = datetime(2026, 12, 7, 12, tzinfo=UTC)
    assert earn(lines, program, at=monday).points == 250  # no campaign running: 150 + 100


def test_a_campaign_for_some_tiers_or_skus_passes_the_others_by() -> None:
    program = Program.model_validate({"campaigns": [campaign(tiers=["gold"], categories=[], skus=["s"])]})
    saturday = datetime(2026, 12, 5, 12, tzinfo=UTC)
    silver, gold = (Tier(name=name, threshold=Decimal(0)) for name in ("silver", "gold"))
    assert earn([line("10.00")], program, at=saturday, tier=silver).points == 10
    assert earn([line("10.00")], program, at=saturday, tier=gold).points == 20


def test_member_price_rounds_each_lines_discount_half_up() -> None:
    lines = [line("9.99"), line("0.05")]
    assert [p.amount for p in member_priced(lines, Decimal("5"))] == [949, 5]  # 49.95 -> 50 off; 0.25 -> 0 off
    assert member_priced(lines, Decimal(0)) == lines


@pytest.mark.parametrize(
    ("birthday", "paid", "expected"),
    [
        (date(1990, 12, 3), datetime(2026, 12, 2, 16, 30, tzinfo=UTC), True),  # 00:30 on 3 Dec in Shanghai
        (date(1990, 12, 3), datetime(2026, 12, 3, 16, 30, tzinfo=UTC), False),  # 00:30 on 4 Dec there
        (date(2000, 2, 29), datetime(2027, 2, 28, 4, tzinfo=UTC), True),  # kept on 28 Feb in other years
        (date(2000, 2, 29), datetime(2028, 2, 28, 4, tzinfo=UTC), False),  # a leap year has its own 29th
        (None, datetime(2026, 12, 3, tzinfo=UTC), False),
    ],
)
def test_a_birthday_is_a_local_day(birthday: date | None, paid: datetime, expected: bool) -> None:
    assert is_birthday(birthday, paid, "Asia/Shanghai") is expected
