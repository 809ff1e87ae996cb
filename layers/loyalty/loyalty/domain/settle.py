"""How one order event changes an order and its member's points. Pure: state and time come in, changes go out.

Every event is settled cumulatively: the event adds a fact to the order (payment, a refund, cancellation),
then the points the member should hold from the order are recomputed from all its facts and the
difference is credited or clawed back. Events may therefore arrive in any order, or twice, and the
order always ends at the same figure.
"""

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict

from loyalty.domain.coupons import Coupon, NotApplicable, member_priced, normalise_code, priced_lines
from loyalty.domain.earning import earn, kept_after_refunds
from loyalty.domain.engagement import is_birthday
from loyalty.domain.errors import InsufficientPoints, InvalidInput, Retryable
from loyalty.domain.expiry import expires_at
from loyalty.domain.ledger import Balance, Draw, LedgerEntry, Lot, draw
from loyalty.domain.money import normalise_currency, parse_amount
from loyalty.domain.orders import OrderCancelled, OrderEvent, OrderPaid, OrderRefunded, OrderState
from loyalty.domain.points import Move, grant, hold, repay_first, spend_draws
from loyalty.domain.points_payment import PointsPayment, points_as_payment, returned_lots
from loyalty.domain.program import Program
from loyalty.domain.tiers import MemberTier, TierChange, qualifying_day, upgrade, window_total

# How far ahead of our clock a payment's time may be (platform clocks drift); beyond it the event is refused.
FUTURE_SKEW = timedelta(days=1)


class Settlement(BaseModel):
    """The whole effect of one event; the store writes it as one transaction."""

    model_config = ConfigDict(frozen=True)

    order: OrderState  # the new state, version already incremented
    # What the event does to the member's points: earned, held, clawed back, used as payment or given back.
    # None while the order's payment is not yet known (nothing to credit to whom).
    move: Move | None = None
    coupons_used: list[str] = []  # codes to mark used by this order (the write requires them available)
    coupons_returned: dict[str, datetime] = {}  # codes to give back, with their expiry
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


# Where an order refunded cumulatively (a platform that reports "refunded so far") keeps that figure.
CUMULATIVE = "~cumulative"


def is_duplicate(state: OrderState, event: OrderEvent, currency: str = "CNY") -> bool:
    """Whether the order already has this event's fact. A cumulative refund is new only if it raises the total."""
    if isinstance(event, OrderPaid):
        return state.paid
    if isinstance(event, OrderRefunded):
        if event.data.cumulative:
            return _amount(event.data.amount, state.currency or currency, "data.amount") <= state.refunds.get(
                CUMULATIVE, 0
            )
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
    coupons: dict[str, Coupon] | None = None,
    birthday: date | None = None,
) -> Settlement:
    """Apply a new (not duplicate) event. `lots` is needed only when points must come back from available or
    be spent; `member_tier` only when the program has tiers (it sets the earning multiplier and decides
    upgrades); `coupons` only for a payment that used coupons (those found for its codes)."""
    member_tier = member_tier or MemberTier()
    order = state.model_copy(deep=True)
    order.version = state.version + 1
    reference = order.order_id
    if isinstance(event, OrderPaid):
        if event.data.paid_at > now + FUTURE_SKEW:
            raise InvalidInput("paid_at is in the future", field="data.paid_at")
        _record_payment(order, event, program, member_tier, balance, coupons or {}, birthday)
    elif isinstance(event, OrderRefunded):
        amount = _amount(event.data.amount, program.currency, "amount")
        if event.data.cumulative:  # refunded so far: only ever rises, whatever order the events come in
            order.refunds[CUMULATIVE] = max(amount, order.refunds.get(CUMULATIVE, 0))
        else:
            order.refunds[event.data.refund_id] = amount
        reference = event.data.refund_id
    elif isinstance(event, OrderCancelled):
        order.cancelled = True
    if not order.paid:
        return Settlement(order=order)

    target = kept_after_refunds(order.earned, order.total, order.refunded, cancelled=order.cancelled)
    delta = target - state.credited
    order.credited = target
    detail: dict[str, object] = {"order_id": order.order_id, "earned": order.earned, "kept": target}
    if order.earning:
        detail["earning"] = order.earning
    payment = points_as_payment(state, order, event, program, reference, now)
    if delta >= 0:
        move = _credit(order, delta, event.type, reference, now, balance, detail, program, payment, lots)
    else:
        move = _clawback(order, -delta, event.type, reference, now, program, lots, detail, payment, balance)
    result = Settlement(
        order=order, move=move + Move(entries=payment.entries), **_coupon_moves(state, order, event, program)
    )
    return _qualify(result, state, event, program, member_tier)


def _coupon_moves(state: OrderState, order: OrderState, event: OrderEvent, program: Program) -> dict[str, Any]:
    """Coupons are used by the payment and given back by a cancellation, or a full refund if the program says so;
    a payment that arrives after its order was already cancelled never takes them at all."""
    give_back = bool(order.coupons) and (
        order.cancelled or (program.refund_returns.coupons == "full_refund" and order.refunded >= order.total > 0)
    )
    if isinstance(event, OrderPaid):
        order.coupons_returned = give_back
        return {"coupons_used": [] if give_back else list(order.coupons)}
    if give_back and not state.coupons_returned:
        order.coupons_returned = True
        return {"coupons_returned": dict(order.coupons)}
    return {}


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
    detail: dict[str, object] = {"order_id": order.order_id}
    move = _grant_purchase(
        order, points, balance, program, "points.activated", order.order_id, now, detail=detail, pending=-points
    )
    return Settlement(order=order, move=move)


def _record_payment(
    order: OrderState,
    event: OrderPaid,
    program: Program,
    member_tier: MemberTier,
    balance: Balance,
    coupons: dict[str, Coupon],
    birthday: date | None,
) -> None:
    data = event.data
    if data.member_id is None:  # the service resolves a platform's customer to a member before settling
        raise InvalidInput("the order names no member", field="data.member_id")
    member_id = data.member_id
    try:
        currency = normalise_currency(data.currency)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="data.currency") from exc
    if currency != program.currency:
        raise InvalidInput(f"order currency {currency} is not the program's {program.currency}", field="data.currency")
    tier = program.tier_of(member_tier.tier)
    listed = priced_lines(list(data.lines), currency, "data.lines")
    lines = member_priced(listed, tier.discount_percent if tier else Decimal(0))
    order.member_discount = sum(line.amount for line in listed) - sum(line.amount for line in lines)
    if data.coupon_codes or data.points_used:
        codes = [normalise_code(code) for code in data.coupon_codes]
        try:
            priced = program.price(
                lines,
                codes,
                coupons,
                member_id=member_id,
                points=data.points_used,
                available=balance.available,
                at=data.paid_at,
            )
        except NotApplicable as exc:
            raise NotApplicable(exc.message, field=f"data.{exc.field}", reason=exc.reason) from exc
        if priced.points_used != data.points_used:
            raise NotApplicable(
                f"this order may use {priced.points_used} points as payment, not {data.points_used}",
                field="data.points_used",
                reason="over_cap",
            )
        lines = priced.lines
        order.coupons = {code: coupons[code].expires_at for code in codes}
        order.discount = sum(discount.amount for discount in priced.discounts)
        order.points_used = priced.points_used
        order.points_offset = priced.points_offset
    order.paid = True
    order.member_id = member_id
    order.currency = currency
    order.total = _amount(data.total, currency, "data.total")
    earning = earn(
        lines,
        program,
        at=data.paid_at,
        tier=tier,
        birthday=is_birthday(birthday, data.paid_at, program.timezone),
    )
    order.earned = earning.points
    order.earning = earning.detail
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
    payment: PointsPayment,
    lots: list[Lot],
) -> Move:
    # A late event counts at its own business time: a return window that closed already is closed.
    if order.activates_at is not None and order.activates_at > now and not order.activated:
        order.pending += points
        earned = hold(points, reason=reason, reference=reference, at=now, detail=detail)
    else:
        order.activated = True
        earned = _grant_purchase(order, points, balance, program, reason, reference, now, detail=detail)
    if payment.net < 0:  # the payment spends points: oldest-expiring lots first, never past the balance
        try:
            draws = spend_draws(balance, lots, -payment.net)
        except InsufficientPoints as exc:  # the quote checked the balance: the lots changed since they were read
            raise Retryable("the member's points changed while settling this order") from exc
        order.spent = draws
        return earned + Move(available=payment.net, draws=draws, reads="all")
    if payment.net > 0:
        repaid, back = repay_first(Balance(available=balance.available, debt=balance.debt + earned.debt), payment.net)
        returned = returned_lots(order, back, already=order.points_returned - payment.net)
        return earned + Move(available=payment.net, debt=-repaid, returned=returned, reads="debt")
    return earned


def _grant_purchase(
    order: OrderState,
    points: int,
    balance: Balance,
    program: Program,
    reason: str,
    reference: str,
    now: datetime,
    *,
    detail: dict[str, object] | None = None,
    pending: int = 0,
) -> Move:
    """An order's points becoming available: a purchase lot, earned (for expiry) when the order was paid, however
    late we hear of it."""
    earned_at = order.paid_at or order.activates_at
    assert earned_at is not None
    move = grant(
        balance,
        points,
        reason=reason,
        reference=reference,
        at=now,
        source="purchase",
        lot_reference=order.order_id,
        earned_at=earned_at,
        expires_at=expires_at(program.expiry_rule("purchase"), earned_at, program.timezone),
        detail=detail,
        pending=pending,
    )
    if move.lots:
        order.lot_sk = move.lots[0].lot_id
    return move


def _clawback(
    order: OrderState,
    points: int,
    reason: str,
    reference: str,
    now: datetime,
    program: Program,
    lots: list[Lot],
    detail: dict[str, object],
    payment: PointsPayment,
    balance: Balance,
) -> Move:
    """Take back from the order's pending points first, then available lots (its own first), then per policy.

    Points of the order that already lapsed unspent are not taken again: expiry removed them once. Points the
    same event gives back (used as payment) are set against the clawback before any lot is touched.
    """
    from_pending = min(points, order.pending)
    order.pending -= from_pending
    rest = points - from_pending
    lapsed = min(rest, order.expired - order.expiry_waived)
    if lapsed:
        order.expiry_waived += lapsed
        rest -= lapsed
        detail = {**detail, "already_expired": lapsed}
    offset = min(rest, payment.net)
    need, back = rest - offset, payment.net - offset
    draws: list[Draw] = []
    debt = 0
    forgiven = 0
    if need:
        draws, shortfall = draw(lots, need, first=order.lot_sk)
        if program.clawback == "allow_negative":
            debt = shortfall
        else:
            forgiven = shortfall
    taken = rest - forgiven
    if forgiven:
        detail = {**detail, "not_recovered": forgiven}
    if debt:
        detail = {**detail, "debt_added": debt}
    returned: list[Lot] = []
    if back:
        repaid, back = repay_first(balance, back)
        debt -= repaid
        returned = returned_lots(order, back, already=order.points_returned - payment.net)
    entry = LedgerEntry(points=-taken, pending=-from_pending, reason=reason, reference=reference, at=now, detail=detail)
    return Move(
        available=-taken + payment.net,
        pending=-from_pending,
        debt=debt,
        draws=draws,
        returned=returned,
        entries=[entry],
        reads="all" if need else ("debt" if back else "nothing"),
    )


def _amount(text: str, currency: str, field: str) -> int:
    try:
        return parse_amount(text, currency)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc
