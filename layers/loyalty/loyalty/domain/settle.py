"""How one order event changes an order and its member's points. Pure: state and time come in, changes go out.

Every event is settled cumulatively: the event adds a fact to the order (payment, a refund, cancellation),
then the points the member should hold from the order are recomputed from all its facts and the
difference is credited or clawed back. Events may therefore arrive in any order, or twice, and the
order always ends at the same figure.
"""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict

from loyalty.domain.earning import kept_after_refunds, points_for_lines
from loyalty.domain.errors import InvalidInput
from loyalty.domain.expiry import expires_at
from loyalty.domain.ledger import Balance, Draw, LedgerEntry, Lot, credit, draw
from loyalty.domain.money import normalise_currency, parse_amount
from loyalty.domain.orders import OrderCancelled, OrderEvent, OrderPaid, OrderRefunded, OrderState
from loyalty.domain.program import Program
from loyalty.domain.tiers import MemberTier, TierChange, qualifying_day, rank, upgrade, window_total

# How far ahead of our clock a payment's time may be (platform clocks drift); beyond it the event is refused.
FUTURE_SKEW = timedelta(days=1)


class Settlement(BaseModel):
    """The whole effect of one event; the store writes it as one transaction."""

    model_config = ConfigDict(frozen=True)

    order: OrderState  # the new state, version already incremented
    available: int = 0  # change to member.available
    pending: int = 0  # change to member.pending
    debt: int = 0  # change to member.debt
    new_lot: Lot | None = None
    draws: list[Draw] = []
    entry: LedgerEntry | None = None  # None while the order's payment is not yet known
    # What of the member's balance this was computed from, so the write can require it unchanged:
    # "debt" for a credit (debt is repaid first), "all" for a clawback from available points.
    reads: Literal["nothing", "debt", "all"] = "nothing"
    # The tier metric: what to add on which day (program time zone), and any tier decision it led to.
    qualifying_day: str | None = None
    qualifying: int = 0
    tier_change: TierChange | None = None
    tier_rev: int | None = None  # the member's tier state this was decided on, when tiers are in play

    @property
    def due_at(self) -> datetime | None:
        """When the order next needs the activation run, or None to leave the due index."""
        order = self.order
        return order.activates_at if order.pending > 0 and not order.activated else None

    @property
    def touches_member(self) -> bool:
        return self.entry is not None


def is_duplicate(state: OrderState, event: OrderEvent) -> bool:
    if isinstance(event, OrderPaid):
        return state.paid
    if isinstance(event, OrderRefunded):
        return event.data.refund_id in state.refunds
    return state.cancelled


def settle(
    state: OrderState,
    event: OrderEvent,
    program: Program,
    *,
    now: datetime,
    balance: Balance,
    lots: list[Lot],
    member_tier: MemberTier | None = None,
) -> Settlement:
    """Apply a new (not duplicate) event. `lots` is needed only when points must come back from available;
    `member_tier` only when the program has tiers (it sets the earning multiplier and decides upgrades)."""
    member_tier = member_tier or MemberTier()
    order = state.model_copy(deep=True)
    order.version = state.version + 1
    reference = order.order_id
    if isinstance(event, OrderPaid):
        if event.data.paid_at > now + FUTURE_SKEW:
            raise InvalidInput("paid_at is in the future", field="data.paid_at")
        _record_payment(order, event, program, _multiplier(program, member_tier))
    elif isinstance(event, OrderRefunded):
        order.refunds[event.data.refund_id] = _amount(event.data.amount, program.currency, "amount")
        reference = event.data.refund_id
    elif isinstance(event, OrderCancelled):
        order.cancelled = True
    if not order.paid:
        return Settlement(order=order)

    target = kept_after_refunds(order.earned, order.total, order.refunded, cancelled=order.cancelled)
    delta = target - state.credited
    order.credited = target
    detail: dict[str, object] = {"order_id": order.order_id, "earned": order.earned, "kept": target}
    if delta >= 0:
        result = _credit(order, delta, event.type, reference, now, balance, detail, program)
    else:
        result = _clawback(order, -delta, event.type, reference, now, program, lots, detail)
    return _qualify(result, state, event, program, member_tier)


def _qualify(
    result: Settlement, state: OrderState, event: OrderEvent, program: Program, member_tier: MemberTier
) -> Settlement:
    """Move the order's contribution to the tier metric, and upgrade the member if a payment lifts it enough."""
    order = result.order
    assert order.paid_at is not None
    if order.cancelled:
        contribution = 0
    elif program.tier_metric == "spend":
        contribution = max(order.total - order.refunded, 0)
    else:
        contribution = order.credited
    order.qualified = contribution
    day = qualifying_day(order.paid_at, program.timezone)
    delta = contribution - state.qualified
    change = None
    if program.tiers and isinstance(event, OrderPaid):
        metric = dict(member_tier.qualifying)
        metric[day] = metric.get(day, 0) + delta
        total = window_total(metric, order.paid_at, program.tier_window_days, program.timezone)
        change = upgrade(
            program.tiers,
            member_tier,
            total,
            order.paid_at,
            metric=program.tier_metric,
            exponent=program.exponent,
            valid_days=program.tier_valid_days,
        )
    return result.model_copy(
        update={
            "order": order,
            "qualifying_day": day,
            "qualifying": delta,
            "tier_change": change,
            "tier_rev": member_tier.rev if program.tiers else None,
        }
    )


def _multiplier(program: Program, member_tier: MemberTier) -> Decimal:
    return program.tiers[rank(program.tiers, member_tier.tier)].multiplier if program.tiers else Decimal(1)


def activate(state: OrderState, program: Program, *, now: datetime, balance: Balance) -> Settlement | None:
    """Pending points whose return window has closed become available. None if nothing is due."""
    if not state.paid or state.activated or state.activates_at is None or state.activates_at > now:
        return None
    order = state.model_copy(deep=True)
    order.version = state.version + 1
    order.activated = True
    points = state.pending
    order.pending = 0
    if points == 0:  # refunded or cancelled in full before activation: only leave the due index
        return Settlement(order=order)
    repaid, lot_points = credit(balance, points)
    lot = _lot(order, lot_points, program)
    order.lot_sk = lot.lot_id if lot else None
    entry = LedgerEntry(
        points=points,
        pending=-points,
        reason="points.activated",
        reference=order.order_id,
        at=now,
        detail={"order_id": order.order_id, "debt_repaid": repaid} if repaid else {"order_id": order.order_id},
    )
    return Settlement(
        order=order,
        available=points,
        pending=-points,
        debt=-repaid,
        new_lot=lot,
        entry=entry,
        reads="debt",
    )


def _record_payment(order: OrderState, event: OrderPaid, program: Program, tier_multiplier: Decimal) -> None:
    data = event.data
    try:
        currency = normalise_currency(data.currency)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="data.currency") from exc
    if currency != program.currency:
        raise InvalidInput(f"order currency {currency} is not the program's {program.currency}", field="data.currency")
    for index, line in enumerate(data.lines):
        _amount(line.amount, currency, f"data.lines[{index}].amount")
    order.paid = True
    order.member_id = data.member_id
    order.currency = currency
    order.total = _amount(data.total, currency, "data.total")
    order.earned = points_for_lines(list(data.lines), program, tier_multiplier)
    order.paid_at = data.paid_at
    order.activates_at = data.paid_at + timedelta(days=program.pending_days)


def _credit(
    order: OrderState,
    points: int,
    reason: str,
    reference: str,
    now: datetime,
    balance: Balance,
    detail: dict[str, object],
    program: Program,
) -> Settlement:
    # A late event counts at its own business time: a return window that closed already is closed.
    if order.activates_at is not None and order.activates_at > now and not order.activated:
        order.pending += points
        entry = LedgerEntry(points=0, pending=points, reason=reason, reference=reference, at=now, detail=detail)
        return Settlement(order=order, pending=points, entry=entry)
    order.activated = True
    repaid, lot_points = credit(balance, points)
    lot = _lot(order, lot_points, program)
    if lot:
        order.lot_sk = lot.lot_id
    if repaid:
        detail = {**detail, "debt_repaid": repaid}
    entry = LedgerEntry(points=points, pending=0, reason=reason, reference=reference, at=now, detail=detail)
    return Settlement(order=order, available=points, debt=-repaid, new_lot=lot, entry=entry, reads="debt")


def _clawback(
    order: OrderState,
    points: int,
    reason: str,
    reference: str,
    now: datetime,
    program: Program,
    lots: list[Lot],
    detail: dict[str, object],
) -> Settlement:
    """Take back from the order's pending points first, then available lots (its own first), then per policy.

    Points of the order that already lapsed unspent are not taken again: expiry removed them once.
    """
    from_pending = min(points, order.pending)
    order.pending -= from_pending
    rest = points - from_pending
    lapsed = min(rest, order.expired - order.expiry_waived)
    if lapsed:
        order.expiry_waived += lapsed
        rest -= lapsed
        detail = {**detail, "already_expired": lapsed}
    draws: list[Draw] = []
    debt = 0
    forgiven = 0
    if rest:
        draws, shortfall = draw(lots, rest, first=order.lot_sk)
        if program.clawback == "allow_negative":
            debt = shortfall
        else:
            forgiven = shortfall
    taken = rest - forgiven
    if forgiven:
        detail = {**detail, "not_recovered": forgiven}
    if debt:
        detail = {**detail, "debt_added": debt}
    entry = LedgerEntry(points=-taken, pending=-from_pending, reason=reason, reference=reference, at=now, detail=detail)
    return Settlement(
        order=order,
        available=-taken,
        pending=-from_pending,
        debt=debt,
        draws=draws,
        entry=entry,
        reads="all" if rest else "nothing",
    )


def _lot(order: OrderState, points: int, program: Program) -> Lot | None:
    if points <= 0:
        return None
    # Business time: points are earned when the order was paid, however late we hear of it.
    earned_at = order.paid_at or order.activates_at
    assert earned_at is not None
    expiry = expires_at(program.expiry_rule("purchase"), earned_at, program.timezone)
    return Lot(
        lot_id=Lot.make_id(expiry, earned_at, "purchase", order.order_id),
        remaining=points,
        granted=points,
        expires_at=expiry,
        earned_at=earned_at,
        source="purchase",
        reference=order.order_id,
    )


def _amount(text: str, currency: str, field: str) -> int:
    try:
        return parse_amount(text, currency)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc
