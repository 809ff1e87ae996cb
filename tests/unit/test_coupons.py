"""The checkout quote: exact to the minor unit, and a precise reason whenever a coupon does not apply."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.domain.coupons import (
    Coupon,
    NotApplicable,
    PointsOffset,
    PricedLine,
    Quote,
    Terms,
    allocate,
    new_code,
    normalise_code,
    quote,
)

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)


def coupon(code: str, terms: Terms, member: str = "m1", **extra: object) -> Coupon:
    fields: dict[str, object] = {
        "coupon_id": f"cpn_{code}",
        "code": code,
        "template_id": f"tpl_{code}",
        "member_id": member,
        "terms": terms,
        "claimed_at": NOW - timedelta(days=1),
        "expires_at": NOW + timedelta(days=7),
        **extra,
    }
    return Coupon.model_validate(fields)


def line(amount: int, category: str = "tea", sku: str = "s1") -> PricedLine:
    return PricedLine(sku=sku, category=category, amount=amount)


def price(
    lines: list[PricedLine],
    coupons: list[Coupon],
    points: int = 0,
    offset: PointsOffset | None = None,
    available: int = 10**9,
    combine: bool = True,
    exponent: int = 2,
) -> Quote:
    return quote(
        lines,
        [c.code for c in coupons],
        {c.code: c for c in coupons},
        member_id="m1",
        points=points,
        available=available,
        offset=offset,
        combine=combine,
        exponent=exponent,
        at=NOW,
    )


def test_amount_off_over_a_threshold() -> None:
    full_reduction = coupon("A", Terms(kind="amount_off", amount=2000, min_spend=19900))  # 满199减20
    result = price([line(15000), line(5000)], [full_reduction])
    assert result.subtotal == 20000 and result.payable == 18000
    assert [ln.amount for ln in result.lines] == [13500, 4500]
    with pytest.raises(NotApplicable) as refused:
        price([line(19899)], [full_reduction])
    assert (refused.value.reason, refused.value.field) == ("below_minimum", "coupon_codes[0]")


def test_percent_off_rounds_down_and_respects_its_cap() -> None:
    tenth = coupon("P", Terms(kind="percent_off", percent=Decimal("15"), max_discount=1000))
    assert price([line(3333)], [tenth]).discounts[0].amount == 499  # 499.95 -> 499
    assert price([line(100000)], [tenth]).discounts[0].amount == 1000


def test_scope_limits_what_a_coupon_takes_off_and_what_its_threshold_counts() -> None:
    tea_only = coupon("T", Terms(kind="amount_off", amount=1000, min_spend=5000, categories=["tea"]))
    result = price([line(6000, "tea"), line(9000, "cakes")], [tea_only])
    assert [ln.amount for ln in result.lines] == [5000, 9000]
    with pytest.raises(NotApplicable) as below:
        price([line(4000, "tea"), line(9000, "cakes")], [tea_only])
    assert below.value.reason == "below_minimum"
    with pytest.raises(NotApplicable) as scope:
        price([line(9000, "cakes")], [tea_only])
    assert scope.value.reason == "out_of_scope"


@pytest.mark.parametrize(
    ("the_coupon", "reason"),
    [
        (coupon("X", Terms(kind="amount_off", amount=100), member="m2"), "not_this_members"),
        (coupon("X", Terms(kind="amount_off", amount=100), status="used", order_id="o1"), "already_used"),
        (coupon("X", Terms(kind="amount_off", amount=100), expires_at=NOW), "expired"),
        (coupon("X", Terms(kind="amount_off", amount=100), valid_from=NOW + timedelta(hours=1)), "not_yet_valid"),
    ],
)
def test_why_a_coupon_does_not_apply(the_coupon: Coupon, reason: str) -> None:
    with pytest.raises(NotApplicable) as refused:
        price([line(1000)], [the_coupon])
    assert refused.value.reason == reason and refused.value.field == "coupon_codes[0]"


def test_unknown_and_repeated_codes() -> None:
    with pytest.raises(NotApplicable) as unknown:
        quote(
            [line(100)],
            ["NOPE"],
            {},
            member_id="m1",
            points=0,
            available=0,
            offset=None,
            combine=True,
            exponent=2,
            at=NOW,
        )
    assert unknown.value.reason == "unknown_code"
    once = coupon("A", Terms(kind="amount_off", amount=100))
    with pytest.raises(NotApplicable) as twice:
        price([line(1000)], [once, once])
    assert (twice.value.reason, twice.value.field) == ("duplicate_code", "coupon_codes[1]")


def test_one_coupon_of_a_kind_and_the_programs_count_per_order() -> None:
    first = coupon("A", Terms(kind="amount_off", amount=100))
    twin = coupon("B", Terms(kind="amount_off", amount=100), template_id="tpl_A")
    with pytest.raises(NotApplicable) as same:
        price([line(10000)], [first, twin])
    assert (same.value.reason, same.value.field) == ("same_template", "coupon_codes[1]")
    other = coupon("C", Terms(kind="percent_off", percent=Decimal(5)))
    with pytest.raises(NotApplicable) as many:
        quote(
            [line(10000)],
            ["A", "C"],
            {"A": first, "C": other},
            member_id="m1",
            points=0,
            available=0,
            offset=None,
            combine=True,
            exponent=2,
            at=NOW,
            max_coupons=1,
        )
    assert (many.value.reason, many.value.field) == ("too_many_coupons", "coupon_codes[1]")


def test_points_pay_at_the_programs_rate_up_to_its_share() -> None:
    offset = PointsOffset(points_per_unit=20, max_share=Decimal("0.5"))  # 20 points = 1 yuan, at most half
    result = price([line(10000)], [], points=400, offset=offset)
    assert (result.points_used, result.points_offset, result.payable) == (400, 2000, 8000)
    capped = price([line(10000)], [], points=5000, offset=offset)
    assert (capped.points_used, capped.points_offset, capped.points_max) == (1000, 5000, 1000)
    odd = price([line(10000)], [], points=7, offset=offset)  # 7 points = 35 fen exactly (1 point = 5 fen)
    assert (odd.points_used, odd.points_offset) == (7, 35)
    thirds = price([line(10000)], [], points=10, offset=PointsOffset(points_per_unit=30))  # 10 points = 33.3 fen
    assert (thirds.points_used, thirds.points_offset) == (10, 33)


def test_points_refusals() -> None:
    with pytest.raises(NotApplicable) as short:
        price([line(10000)], [], points=500, offset=PointsOffset(points_per_unit=20), available=499)
    assert (short.value.reason, short.value.field) == ("insufficient_points", "points")
    with pytest.raises(NotApplicable) as disabled:
        price([line(10000)], [], points=1)
    assert disabled.value.reason == "disabled"
    cheap = coupon("A", Terms(kind="amount_off", amount=100))
    with pytest.raises(NotApplicable) as alone:
        price([line(10000)], [cheap], points=20, offset=PointsOffset(points_per_unit=20), combine=False)
    assert alone.value.reason == "no_combine"


def test_codes_are_typed_loosely() -> None:
    code = new_code()
    assert normalise_code(code.lower().replace("-", " ")) == code


amounts = st.integers(min_value=0, max_value=10**9)
terms = st.one_of(
    st.builds(
        Terms,
        kind=st.just("amount_off"),
        amount=st.integers(1, 10**8),
        min_spend=st.integers(0, 10**6),
        categories=st.lists(st.sampled_from(["tea", "cakes", "gifts"]), max_size=2),
    ),
    st.builds(
        Terms,
        kind=st.just("percent_off"),
        percent=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2),
        max_discount=st.one_of(st.none(), st.integers(1, 10**8)),
        min_spend=st.integers(0, 10**6),
        skus=st.lists(st.sampled_from(["s1", "s2", "s3"]), max_size=2),
    ),
)


@given(
    lines=st.lists(
        st.builds(line, amounts, st.sampled_from(["tea", "cakes", "gifts"]), st.sampled_from(["s1", "s2", "s3"])),
        min_size=1,
        max_size=8,
    ),
    coupon_terms=st.lists(terms, max_size=3),
    points=st.integers(0, 10**8),
    per_unit=st.integers(1, 1000),
    share=st.decimals(min_value=Decimal("0.0001"), max_value=Decimal(1), places=4),
    exponent=st.sampled_from([0, 2, 3]),
)
def test_every_quote_adds_up_exactly(
    lines: list[PricedLine],
    coupon_terms: list[Terms],
    points: int,
    per_unit: int,
    share: Decimal,
    exponent: int,
) -> None:
    coupons = [coupon(f"C{n}", t) for n, t in enumerate(coupon_terms)]
    offset = PointsOffset(points_per_unit=per_unit, max_share=share)
    try:
        result = price(lines, coupons, points=points, offset=offset, exponent=exponent)
    except NotApplicable as refused:
        assert refused.reason in ("below_minimum", "out_of_scope")
        return
    subtotal = sum(ln.amount for ln in lines)
    discounts = sum(d.amount for d in result.discounts)
    assert result.subtotal == subtotal
    assert result.payable == subtotal - discounts - result.points_offset
    assert result.payable == sum(ln.amount for ln in result.lines)
    assert all(0 <= after.amount <= before.amount for before, after in zip(lines, result.lines, strict=True))
    # Points: never more than asked, and worth exactly the offset (rounded down to a whole minor unit).
    assert result.points_used <= points
    used, paid, scale = result.points_used, result.points_offset, 10**exponent
    assert used * scale >= paid * per_unit  # the points are worth at least what they pay
    assert used == 0 or (used - 1) * scale < paid * per_unit  # and one point fewer would not be
    assert result.points_offset <= Fraction(subtotal - discounts) * Fraction(share)
    for found, terms_ in zip(result.discounts, coupon_terms, strict=True):
        if terms_.kind == "amount_off":
            assert found.amount <= terms_.amount
        elif terms_.max_discount is not None:
            assert found.amount <= terms_.max_discount


@given(amount=st.integers(0, 10**6), weights=st.lists(st.integers(0, 10**6), min_size=1, max_size=20))
def test_allocation_sums_exactly_and_never_exceeds_a_weight(amount: int, weights: list[int]) -> None:
    amount = min(amount, sum(weights))
    shares = allocate(amount, weights)
    assert sum(shares) == (amount if sum(weights) else 0)
    assert all(0 <= share <= weight for share, weight in zip(shares, weights, strict=True))
