"""The wallet's rules, pure: which plan a top-up earns, how a payment is split, what a refund concerns, and the
gift card codes."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.domain.cards import CODE_BITS, card_code, looks_like_a_code, normalise
from loyalty.domain.errors import Conflict, InvalidInput
from loyalty.domain.orders import OrderState
from loyalty.domain.program import Program
from loyalty.domain.wallet import (
    InsufficientBalance,
    WalletBalance,
    WalletRules,
    bonus_for,
    bonus_lot,
    check_top_up,
    lapse_bonus,
    split,
)

AT = datetime(2026, 11, 11, 12, tzinfo=UTC)


def rules(**extra: object) -> WalletRules:
    plans = [{"pay": "100.00", "bonus": "10.00"}, {"pay": "500.00", "bonus": "80.00"}]
    return WalletRules.model_validate({"top_up_plans": plans, **extra})


def test_a_top_up_earns_the_largest_plan_it_reaches() -> None:
    assert bonus_for(rules(), 9_999, AT, "CNY") == (0, None)
    assert bonus_for(rules(), 10_000, AT, "CNY") == (1_000, "100.00")
    assert bonus_for(rules(), 49_999, AT, "CNY") == (1_000, "100.00")
    assert bonus_for(rules(), 80_000, AT, "CNY") == (8_000, "500.00")
    assert bonus_for(None, 80_000, AT, "CNY") == (0, None)


def test_a_promotion_plan_counts_only_for_payments_in_its_window() -> None:
    double_eleven = {
        "pay": "100.00",
        "bonus": "30.00",
        "from": "2026-11-11T00:00:00+08:00",
        "until": "2026-11-12T00:00:00+08:00",
    }
    promo = WalletRules.model_validate({"top_up_plans": [{"pay": "100.00", "bonus": "10.00"}, double_eleven]})
    assert bonus_for(promo, 10_000, AT, "CNY")[0] == 3_000
    assert bonus_for(promo, 10_000, datetime(2026, 11, 12, tzinfo=UTC), "CNY")[0] == 1_000


def test_each_draw_order_splits_a_payment_without_overdrawing_either_part() -> None:
    wallet = WalletBalance(principal=7_000, bonus=3_000)
    assert split("principal_first", wallet, 8_000, "CNY") == (7_000, 1_000)
    assert split("bonus_first", wallet, 8_000, "CNY") == (5_000, 3_000)
    assert split("proportional", wallet, 1_001, "CNY") == (700, 301)
    with pytest.raises(InsufficientBalance, match=r"holds 100\.00, not 100\.01"):
        split("principal_first", wallet, 10_001, "CNY")


@given(
    principal=st.integers(min_value=0, max_value=10**9),
    bonus=st.integers(min_value=0, max_value=10**9),
    data=st.data(),
    order=st.sampled_from(["principal_first", "bonus_first", "proportional"]),
)
def test_a_split_always_adds_up_and_fits(principal: int, bonus: int, data: st.DataObject, order: str) -> None:
    amount = data.draw(st.integers(min_value=0, max_value=principal + bonus))
    p, b = split(order, WalletBalance(principal=principal, bonus=bonus), amount, "CNY")  # type: ignore[arg-type]
    assert p + b == amount and 0 <= p <= principal and 0 <= b <= bonus


@given(part=st.integers(min_value=0, max_value=10**9), total=st.integers(min_value=1, max_value=10**9), data=st.data())
def test_refunded_shares_never_exceed_the_part_and_a_full_refund_is_all_of_it(
    part: int, total: int, data: st.DataObject
) -> None:
    refunded = data.draw(st.integers(min_value=0, max_value=2 * total))

    def order(refunded: int, *, cancelled: bool = False) -> OrderState:
        return OrderState(order_id="o1", paid=True, total=total, refunds={"r1": refunded}, cancelled=cancelled)

    share = order(refunded).refunded_share(part)
    assert 0 <= share <= part
    assert order(total).refunded_share(part) == part
    assert order(0, cancelled=True).refunded_share(part) == part


def test_the_program_refuses_top_ups_below_its_minimum_and_past_its_maximum() -> None:
    bounded = rules(min_top_up="10.00", max_balance="1000.00")
    with pytest.raises(InvalidInput):
        check_top_up(bounded, WalletBalance(), 999, 0, "CNY")
    with pytest.raises(Conflict, match=r"at most 1000\.00"):
        check_top_up(bounded, WalletBalance(principal=90_000), 9_000, 1_001, "CNY")
    check_top_up(bounded, WalletBalance(principal=90_000), 9_000, 1_000, "CNY")
    with pytest.raises(InvalidInput):
        check_top_up(None, WalletBalance(), 1_000, 0, "CNY")


def test_wallet_amounts_must_be_exact_in_the_programs_currency() -> None:
    with pytest.raises(ValueError, match=r"wallet.top_up_plans.0.bonus"):
        Program.model_validate({"currency": "JPY", "wallet": {"top_up_plans": [{"pay": "1000", "bonus": "0.5"}]}})
    Program.model_validate({"currency": "JPY", "wallet": {"top_up_plans": [{"pay": "1000", "bonus": "50"}]}})


def test_card_codes_are_100_bits_grouped_and_read_as_typed() -> None:
    code = card_code(b"secret", "shp_1", "b1", 0)
    assert len(code) == 24 and code.count("-") == 4
    assert len(normalise(code)) * 5 == CODE_BITS
    assert card_code(b"secret", "shp_1", "b1", 0) == code  # derived: the same request answers the same codes
    assert len({card_code(b"secret", "shp_1", "b1", n) for n in range(1000)}) == 1000
    assert card_code(b"other", "shp_1", "b1", 0) != code and card_code(b"secret", "shp_2", "b1", 0) != code
    typed = code.lower().replace("-", " ").replace("0", "o").replace("1", "l")
    assert normalise(typed) == normalise(code) and looks_like_a_code(normalise(typed))
    assert not looks_like_a_code(normalise("AAAA-BBBB"))


def test_a_bonus_lot_expires_by_the_programs_bonus_expiry_and_lapses_whole() -> None:
    never = bonus_lot(1_000, earned_at=AT, reference="t1", rules=rules(), timezone="Asia/Shanghai")
    assert never.expires_at is None and lapse_bonus(never, datetime(2100, 1, 1, tzinfo=UTC)) is None
    yearly = rules(bonus_expiry={"policy": "end_of_next_year"})
    lot = bonus_lot(1_000, earned_at=AT, reference="t1", rules=yearly, timezone="Asia/Shanghai")
    assert lot.expires_at == datetime(2027, 12, 31, 15, 59, 59, tzinfo=UTC)  # 23:59:59 in Shanghai
    assert lapse_bonus(lot, lot.expires_at) is None  # valid through its last second
    move = lapse_bonus(lot, datetime(2027, 12, 31, 16, tzinfo=UTC))
    assert move is not None and move.bonus == -1_000 and move.version is None
    assert [d.take for d in move.draws] == [1_000] and move.entries[0].reason == "bonus.expired"
