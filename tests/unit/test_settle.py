from datetime import UTC, datetime
from decimal import Decimal

import pytest

from loyalty.domain.errors import InsufficientPoints, InvalidInput
from loyalty.domain.ledger import Balance, Lot
from loyalty.domain.orders import OrderState
from loyalty.domain.points import Move, spend
from loyalty.domain.program import Program
from loyalty.domain.settle import Settlement, activate, is_duplicate, settle
from tests.helpers import cancelled, event_model, paid, refunded

NOW = datetime(2026, 11, 10, tzinfo=UTC)
PAID_AT = "2026-11-01T10:00:00Z"


def lot(lot_id: str, remaining: int) -> Lot:
    return Lot(
        lot_id=lot_id, remaining=remaining, granted=remaining, earned_at=NOW, source="purchase", reference=lot_id
    )


def moved(settlement: Settlement) -> Move:
    assert settlement.move is not None
    return settlement.move


def new_lot(settlement: Settlement) -> Lot | None:
    return moved(settlement).lots[0] if moved(settlement).lots else None


def the_lot(settlement: Settlement) -> Lot:
    found = new_lot(settlement)
    assert found is not None
    return found


def test_payment_inside_the_return_window_is_pending() -> None:
    program = Program(pending_days=14)
    result = settle(
        OrderState(order_id="o1"), event_model(paid("o1", total="88.80")), program, now=NOW, balance=Balance(), lots=[]
    )
    assert (moved(result).available, moved(result).pending) == (0, 88)
    assert new_lot(result) is None
    assert result.due_at == datetime(2026, 11, 15, 10, tzinfo=UTC)
    assert moved(result).entries[0].pending == 88


def test_a_late_payment_whose_window_closed_is_available_at_once() -> None:
    program = Program(pending_days=7)
    result = settle(OrderState(order_id="o1"), event_model(paid("o1")), program, now=NOW, balance=Balance(), lots=[])
    assert (moved(result).available, moved(result).pending) == (100, 0)
    assert the_lot(result).remaining == 100
    assert result.due_at is None


def test_currency_must_be_the_programs() -> None:
    with pytest.raises(InvalidInput) as error:
        settle(
            OrderState(order_id="o1"),
            event_model(paid("o1", currency="USD")),
            Program(),
            now=NOW,
            balance=Balance(),
            lots=[],
        )
    assert error.value.field == "data.currency"


def test_refund_takes_pending_points_first() -> None:
    program = Program(pending_days=30)
    first = settle(OrderState(order_id="o1"), event_model(paid("o1")), program, now=NOW, balance=Balance(), lots=[])
    second = settle(
        first.order, event_model(refunded("o1", "r1", "25.00")), program, now=NOW, balance=Balance(pending=100), lots=[]
    )
    assert (moved(second).available, moved(second).pending, moved(second).draws) == (0, -25, [])
    assert second.order.credited == 75


def test_refund_of_available_points_draws_the_orders_own_lot_first() -> None:
    program = Program()
    first = settle(OrderState(order_id="o1"), event_model(paid("o1")), program, now=NOW, balance=Balance(), lots=[])
    lots = [lot("0-older", 50), the_lot(first)]
    second = settle(
        first.order,
        event_model(refunded("o1", "r1", "40.00")),
        program,
        now=NOW,
        balance=Balance(available=150),
        lots=lots,
    )
    assert [(d.lot_id, d.take) for d in moved(second).draws] == [(the_lot(first).lot_id, 40)]
    assert moved(second).available == -40


@pytest.mark.parametrize(("policy", "available", "debt"), [("stop_at_zero", -30, 0), ("allow_negative", -100, 70)])
def test_clawback_beyond_the_balance_follows_the_policy(policy: str, available: int, debt: int) -> None:
    program = Program.model_validate({"clawback": policy})
    first = settle(OrderState(order_id="o1"), event_model(paid("o1")), program, now=NOW, balance=Balance(), lots=[])
    # The member spent 70 of the 100 points; 30 are left in the order's lot.
    left = the_lot(first).model_copy(update={"remaining": 30})
    second = settle(
        first.order, event_model(cancelled("o1")), program, now=NOW, balance=Balance(available=30), lots=[left]
    )
    assert (moved(second).available, moved(second).debt) == (available, debt)
    assert moved(second).reads == "all"


def test_debt_is_repaid_by_the_next_points() -> None:
    program = Program()
    result = settle(
        OrderState(order_id="o2"),
        event_model(paid("o2", total="50.00")),
        program,
        now=NOW,
        balance=Balance(available=-70, debt=70),
        lots=[],
    )
    assert (moved(result).available, moved(result).debt, new_lot(result)) == (50, -50, None)
    result = settle(
        OrderState(order_id="o3"),
        event_model(paid("o3", total="100.00")),
        program,
        now=NOW,
        balance=Balance(available=-20, debt=20),
        lots=[],
    )
    assert the_lot(result).remaining == 80


def test_refund_before_payment_is_recorded_and_settled_on_payment() -> None:
    program = Program()
    early = settle(
        OrderState(order_id="o1"),
        event_model(refunded("o1", "r1", "50.00")),
        program,
        now=NOW,
        balance=Balance(),
        lots=[],
    )
    assert early.move is None and early.order.refunds == {"r1": 5000}
    result = settle(early.order, event_model(paid("o1")), program, now=NOW, balance=Balance(), lots=[])
    assert moved(result).available == 50


def test_duplicates_are_recognised() -> None:
    state = OrderState(order_id="o1", paid=True, refunds={"r1": 1}, cancelled=False)
    assert is_duplicate(state, event_model(paid("o1")))
    assert is_duplicate(state, event_model(refunded("o1", "r1", "1")))
    assert not is_duplicate(state, event_model(refunded("o1", "r2", "1")))
    assert not is_duplicate(state, event_model(cancelled("o1")))


def test_activation_waits_for_the_window_and_happens_once() -> None:
    program = Program(pending_days=14, points_per_unit=Decimal(2))
    first = settle(OrderState(order_id="o1"), event_model(paid("o1")), program, now=NOW, balance=Balance(), lots=[])
    assert activate(first.order, program, now=NOW, balance=Balance(pending=200)) is None
    later = datetime(2026, 11, 15, 10, tzinfo=UTC)
    done = activate(first.order, program, now=later, balance=Balance(pending=200))
    assert done is not None and (moved(done).available, moved(done).pending) == (200, -200) and done.due_at is None
    assert activate(done.order, program, now=later, balance=Balance(available=200)) is None


def test_spending_never_overdraws_and_goes_oldest_expiring_first() -> None:
    lots = [lot("2027-12-31", 30), lot("2027-06-30", 20), lot("~never", 100)]
    move = spend(Balance(available=150), lots, 60, reason="redemption", reference="r1", at=NOW)
    assert [(d.lot_id, d.take) for d in move.draws] == [("2027-06-30", 20), ("2027-12-31", 30), ("~never", 10)]
    with pytest.raises(InsufficientPoints):
        spend(Balance(available=150), lots, 151, reason="redemption", reference="r2", at=NOW)
