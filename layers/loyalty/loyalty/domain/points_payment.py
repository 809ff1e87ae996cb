"""Points used as payment for an order: spent by its payment, given back by its cancellation or (in proportion, if
the program says so) its refunds, to lots like those they were spent from. Pure; settle.py composes it."""

from datetime import datetime

from pydantic import BaseModel

from loyalty.domain.ledger import LedgerEntry, Lot, given_back
from loyalty.domain.orders import OrderEvent, OrderPaid, OrderState
from loyalty.domain.program import Program


class PointsPayment(BaseModel):
    """What an event moves of the points an order used as payment: spent now (its payment) or given back."""

    spent: int = 0
    given_back: int = 0
    entries: list[LedgerEntry] = []

    @property
    def net(self) -> int:
        return self.given_back - self.spent


def points_as_payment(
    state: OrderState, order: OrderState, event: OrderEvent, program: Program, reference: str, now: datetime
) -> PointsPayment:
    """Points used as payment are spent by the payment and given back by a cancellation (all) or refunds (in
    proportion to the amount refunded, if the program says so), cumulatively like earned points."""
    proportional = program.refund_returns.points == "proportional" and order.refunded > 0
    target = order.refunded_share(order.points_used) if order.cancelled or proportional else 0
    target = max(target, state.points_returned)  # what was given back stays given back, whatever the policy now
    order.points_returned = target
    spent = order.points_used if isinstance(event, OrderPaid) else 0
    given_back = target - state.points_returned
    entries = []
    if spent:
        entries.append(
            LedgerEntry(
                points=-spent,
                reason="points.used",
                reference=order.order_id,
                at=now,
                detail={"order_id": order.order_id, "paid": order.points_offset},
            )
        )
    if given_back:
        entries.append(
            LedgerEntry(
                points=given_back,
                reason="points.returned",
                reference=reference,
                at=now,
                detail={"order_id": order.order_id, "of_used": order.points_used},
            )
        )
    return PointsPayment(spent=spent, given_back=given_back, entries=entries)


def returned_lots(order: OrderState, amount: int, *, already: int) -> list[Lot]:
    """Lots for `amount` points given back: last spent, first back (reverse of the spend), each keeping the
    expiry and earning date of the lot it came from. `already` is what earlier events gave back."""
    drawn = sum(d.take for d in order.spent)
    skip = max(already - (order.points_used - drawn), 0)  # points never drawn (netted at payment) count first
    return given_back(order.spent, amount, skip=skip, reference=order.order_id)
