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
from loyalty.domain.orders import OrderCancelled, OrderEvent, OrderPaid, OrderRefunded, OrderState, OrderWallet
from loyalty.domain.points import Move, grant, hold, repay_first, spend_draws
from loyalty.domain.points_payment import PointsPayment, points_as_payment, returned_lots
from loyalty.domain.program import Program
from loyalty.domain.tiers import MemberTier, TierChange, qualifying_day, upgrade, window_total
from loyalty.domain.wallet import (
    WalletBalance,
    WalletMove,
    WalletRules,
    bonus_for,
    bonus_lot,
    check_top_up,
    settle_order,
    split,
)

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
    wallet: WalletMove | None = None  # what the event does to the member's wallet (a top-up, or paying with it)
    # What the event adds to the member's savings (coupons, points, member_price, bonus; minor units), counted in the
    # local month the order was paid.
    savings_month: str | None = None
    savings: dict[str, int] = {}

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
    wallet: WalletBalance | None = None,
    wallet_lots: list[Lot] | None = None,
) -> Settlement:
    """Apply a new (not duplicate) event. `lots` is needed only when points must come back from available or
    be spent; `member_tier` only when the program has tiers (it sets the earning multiplier and decides
    upgrades); `coupons` only for a payment that used coupons (those found for its codes); `wallet` only for an
    order that touches the member's wallet (a top-up, or a payment with `wallet_used`); `wallet_lots` (the bonus
    lots) only when bonus may be taken (a payment drawing bonus, a top-up's refund)."""
    member_tier = member_tier or MemberTier()
    wallet = wallet or WalletBalance()
    order = state.model_copy(deep=True)
    order.version = state.version + 1
    reference = order.order_id
    if isinstance(event, OrderPaid):
        if event.data.paid_at > now + FUTURE_SKEW:
            raise InvalidInput("paid_at is in the future", field="data.paid_at")
        _record_payment(order, event, program, member_tier, balance, coupons or {}, birthday, wallet)
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

    wallet_move = _wallet_move(state, order, event, program, reference, now, wallet, wallet_lots or [])
    savings = _savings(state, order)
    if order.top_up:  # a top-up earns no points: only the wallet (and a top-up tier metric) move
        move = Move()
    else:
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
        move += Move(entries=payment.entries)
    result = Settlement(
        order=order,
        move=move,
        wallet=wallet_move,
        savings_month=_month(order.paid_at, program.timezone) if savings else None,
        savings=savings,
        **_coupon_moves(state, order, event, program),
    )
    return _qualify(result, state, event, program, member_tier)


def _wallet_move(
    state: OrderState,
    order: OrderState,
    event: OrderEvent,
    program: Program,
    reference: str,
    now: datetime,
    wallet: WalletBalance,
    lots: list[Lot],
) -> WalletMove | None:
    """A top-up's refunds take back its principal and forfeit its bonus in proportion; a purchase's give back what
    it drew from the wallet in proportion (all of it on cancellation)."""
    if order.wallet is None:
        return None
    part = order.wallet
    part.principal_back = order.refunded_share(part.principal)
    part.bonus_back = order.refunded_share(part.bonus)
    kind = "top_up" if order.top_up else "order"
    rules, paid_at = program.wallet or WalletRules(), order.paid_at or now
    return settle_order(
        state.wallet if state.paid else None,
        part,
        top_up=order.top_up,
        balance=wallet,
        lots=lots,
        new_lot=lambda bonus: bonus_lot(
            bonus, earned_at=paid_at, reference=order.order_id, rules=rules, timezone=program.timezone
        ),
        reason=f"{kind}.{event.type.split('.', 1)[1]}",
        reference=reference,
        at=now,
        detail={"order_id": order.order_id},
    )


def _savings(state: OrderState, order: OrderState) -> dict[str, int]:
    """What the order saved its member (an order cancelled or refunded in full saved nothing), less what it had
    already counted: the change to add to the member's savings."""
    saved: dict[str, int] = {}
    if not (order.cancelled or order.refunded_in_full or order.top_up):
        bonus = order.wallet.bonus - order.wallet.bonus_back if order.wallet else 0
        figures = {
            "coupons": order.discount,
            "points": order.points_offset,
            "member_price": order.member_discount,
            "bonus": bonus,
        }
        saved = {name: value for name, value in figures.items() if value}
    order.saved = saved
    names = set(saved) | set(state.saved)
    changes = {name: saved.get(name, 0) - state.saved.get(name, 0) for name in sorted(names)}
    return {name: change for name, change in changes.items() if change}


def _month(at: datetime | None, timezone: str) -> str:
    assert at is not None
    return qualifying_day(at, timezone)[:7]


def _coupon_moves(state: OrderState, order: OrderState, event: OrderEvent, program: Program) -> dict[str, Any]:
    """Coupons are used by the payment and given back by a cancellation, or a full refund if the program says so;
    a payment that arrives after its order was already cancelled never takes them at all."""
    give_back = bool(order.coupons) and (
        order.cancelled or (program.refund_returns.coupons == "full_refund" and order.refunded_in_full)
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
    elif program.tier_metric == "top_up":  # what the member keeps paid in: a top-up's principal less its refunds
        part = order.wallet
        contribution = part.principal - part.principal_back if order.top_up and part else 0
    elif order.top_up:  # money paid in is not yet spent: it counts as spend (and earns points) when it is used
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
    wallet: WalletBalance,
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
    order.paid = True
    order.member_id = member_id
    order.currency = currency
    order.total = _amount(data.total, currency, "data.total")
    order.paid_at = data.paid_at
    order.activates_at = data.paid_at + timedelta(days=program.pending_days)
    if data.top_up:  # money paid into the wallet, with the bonus of the plan in force when it was paid
        bonus, plan = bonus_for(program.wallet, order.total, data.paid_at, currency)
        check_top_up(program.wallet, wallet, order.total, bonus, currency)
        order.top_up = True
        order.wallet = OrderWallet(principal=order.total, bonus=bonus)
        order.earning = {"top_up_plan": plan} if plan else {}
        return
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
    if data.wallet_used is not None:
        if program.wallet is None:
            raise InvalidInput("this program has no wallet", field="data.wallet_used")
        used = _amount(data.wallet_used, currency, "data.wallet_used")
        if used > order.total:
            raise InvalidInput("wallet_used is more than the order's total", field="data.wallet_used")
        if order.cancelled or order.refunded_in_full:  # undone before its payment arrived: draws nothing
            order.wallet = OrderWallet()
        else:
            principal, bonus = split(program.wallet.draw, wallet, used, currency, field="data.wallet_used")
            order.wallet = OrderWallet(principal=principal, bonus=bonus)
    earning = earn(
        lines,
        program,
        at=data.paid_at,
        tier=tier,
        birthday=is_birthday(birthday, data.paid_at, program.timezone),
    )
    order.earned = earning.points
    order.earning = earning.detail


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
