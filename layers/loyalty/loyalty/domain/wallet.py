"""Stored value (储值): a member's wallet of principal (money the member paid in) and bonus (what the shop gave on
top, 赠额), kept apart because a refund returns principal and forfeits bonus. Pure: balances and rules in, moves out.

A wallet changes only through orders (a top-up is an order whose total is paid into the wallet; a purchase may pay
part of its total from it) and gift cards. Each change is one `WalletMove` written with its cause, so

    wallet.principal == Σ entry.principal   and   wallet.bonus == Σ entry.bonus

and neither figure is ever below zero: a payment the wallet cannot cover is refused, and a refund takes back only
what is left (the rest is recorded as not recovered). The bonus is also kept in lots, one per grant (a top-up's
bonus, a bonus gift card), so that it can expire by the program's `bonus_expiry`: bonus is drawn oldest-expiring lot
first, given back to lots like those it was drawn from, and `wallet.bonus == Σ lot.remaining`.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loyalty.domain.errors import Conflict, InvalidInput
from loyalty.domain.expiry import ExpiryRule, expires_at, is_expired
from loyalty.domain.ledger import BusinessTime, Draw, Lot, draw, given_back, lot_part
from loyalty.domain.money import format_amount, parse_amount
from loyalty.domain.orders import DecimalString, OrderWallet

DrawOrder = Literal["principal_first", "bonus_first", "proportional"]


class InsufficientBalance(Conflict):
    code = "insufficient_balance"


class TopUpPlan(BaseModel):
    """充100送10: a top-up of at least `pay` earns `bonus`. A plan with `from`/`until` is in force only for payments
    made in that window (a promotion); a payment is judged by the plans in force when it was paid."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True)

    pay: DecimalString
    bonus: DecimalString
    starts: BusinessTime | None = Field(default=None, alias="from")
    ends: BusinessTime | None = Field(default=None, alias="until")

    def in_force(self, at: datetime) -> bool:
        return (self.starts is None or self.starts <= at) and (self.ends is None or at < self.ends)


class WalletRules(BaseModel):
    """The program's `wallet`: its top-up plans, which part of the balance a payment draws first, and its bounds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    top_up_plans: list[TopUpPlan] = Field(default_factory=list, max_length=50)
    draw: DrawOrder = Field(
        default="principal_first",
        description="which part a wallet payment draws first: principal_first, bonus_first, or proportional "
        "(in proportion to the two balances, principal rounded down)",
    )
    min_top_up: DecimalString | None = Field(default=None, description="smallest top-up accepted")
    max_balance: DecimalString | None = Field(default=None, description="largest total (principal + bonus) allowed")
    bonus_expiry: ExpiryRule = Field(
        default_factory=ExpiryRule,
        description="when a grant of bonus lapses, as points do: end_of_next_year, days, or never (default)",
    )

    @model_validator(mode="after")
    def _bounds(self) -> "WalletRules":
        for plan in self.top_up_plans:
            if plan.starts and plan.ends and plan.ends <= plan.starts:
                raise ValueError("wallet.top_up_plans: until must be after from")
        return self

    def check_currency(self, currency: str) -> None:
        """Every amount must be exact in the program's currency (raises ValueError naming the field)."""
        for index, plan in enumerate(self.top_up_plans):
            for name in ("pay", "bonus"):
                _minor(getattr(plan, name), currency, f"wallet.top_up_plans.{index}.{name}")
        for name in ("min_top_up", "max_balance"):
            if getattr(self, name) is not None:
                _minor(getattr(self, name), currency, f"wallet.{name}")


class WalletBalance(BaseModel):
    """The wallet as read; `version` is what a write requires unchanged (0: no wallet item yet)."""

    model_config = ConfigDict(frozen=True)

    principal: int = 0
    bonus: int = 0
    version: int = 0

    @property
    def total(self) -> int:
        return self.principal + self.bonus


class WalletEntry(BaseModel):
    """One change to a wallet and why (minor units; negative takes away)."""

    model_config = ConfigDict(frozen=True)

    principal: int
    bonus: int
    reason: str
    reference: str
    at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)
    part: str = ""  # as LedgerEntry.part: a lapse names its lot


class WalletMove(BaseModel):
    model_config = ConfigDict(frozen=True)

    principal: int = 0
    bonus: int = 0
    entries: list[WalletEntry] = []
    # The wallet version it was computed from; None: written without reading the wallet (a lot lapsing), on the
    # condition that the wallet holds what it takes.
    version: int | None = 0
    lots: list[Lot] = []  # new bonus lots
    draws: list[Draw] = []  # bonus taken from lots; a lot drawn to nothing is removed
    returned: list[Lot] = []  # bonus given back to lots like those it was drawn from (created or grown)


# ---------------------------------------------------------------------------- rules


def bonus_for(rules: WalletRules | None, paid: int, at: datetime, currency: str) -> tuple[int, str | None]:
    """The bonus a top-up of `paid` (minor units) earns: that of the largest plan in force at `at` whose `pay` it
    reaches (one plan, never the sum of several), and the plan's `pay` text (None: no plan reached)."""
    best: tuple[int, int, str] | None = None
    for plan in rules.top_up_plans if rules else []:
        pay, bonus = parse_amount(plan.pay, currency), parse_amount(plan.bonus, currency)
        # Of plans with the same `pay` (a promotion beside the standing plan), the larger bonus.
        if plan.in_force(at) and pay <= paid and (best is None or (pay, bonus) > best[:2]):
            best = (pay, bonus, plan.pay)
    return (best[1], best[2]) if best else (0, None)


def split(
    order: DrawOrder, balance: WalletBalance, amount: int, currency: str, *, field: str = "wallet_used"
) -> tuple[int, int]:
    """(principal, bonus) a payment of `amount` draws, by the program's draw order; never more than either holds."""
    if amount > balance.total:
        held, asked = format_amount(balance.total, currency), format_amount(amount, currency)
        raise InsufficientBalance(f"the wallet holds {held}, not {asked}", field=field)
    if order == "principal_first":
        principal = min(amount, balance.principal)
        return principal, amount - principal
    if order == "bonus_first":
        bonus = min(amount, balance.bonus)
        return amount - bonus, bonus
    principal = amount * balance.principal // balance.total if balance.total else 0
    return principal, amount - principal  # the bonus part is ceil(amount x bonus / total) <= bonus


def check_top_up(rules: WalletRules | None, balance: WalletBalance, paid: int, bonus: int, currency: str) -> None:
    """A top-up the program refuses: below its minimum, or taking the wallet past its maximum."""
    if rules is None:
        raise InvalidInput("this program has no wallet", field="wallet")
    if rules.min_top_up is not None and paid < parse_amount(rules.min_top_up, currency):
        raise InvalidInput(f"a top-up must be at least {rules.min_top_up}", field="amount")
    check_balance_room(rules, balance, paid + bonus, currency)


def check_balance_room(rules: WalletRules, balance: WalletBalance, adding: int, currency: str) -> None:
    """Adding `adding` (a top-up with its bonus, a gift card) may not take the wallet past the program's maximum."""
    if rules.max_balance is not None and balance.total + adding > parse_amount(rules.max_balance, currency):
        raise Conflict(f"the wallet may hold at most {rules.max_balance}", field="amount", code="over_max_balance")


def bonus_lot(bonus: int, *, earned_at: datetime, reference: str, rules: WalletRules, timezone: str) -> Lot:
    """A grant of bonus (a top-up's, a gift card's), expiring by the program's `bonus_expiry`."""
    expiry = expires_at(rules.bonus_expiry, earned_at, timezone)
    return Lot(
        lot_id=Lot.make_id(expiry, earned_at, "bonus", reference),
        remaining=bonus,
        granted=bonus,
        expires_at=expiry,
        earned_at=earned_at,
        source="bonus",
        reference=reference,
    )


def settle_order(
    before: OrderWallet | None,
    after: OrderWallet,
    *,
    top_up: bool,
    balance: WalletBalance,
    lots: list[Lot],
    new_lot: Callable[[int], Lot],
    reason: str,
    reference: str,
    at: datetime,
    detail: dict[str, Any],
) -> WalletMove | None:
    """Move the wallet from what the order held before (`before`, None: not yet paid) to what it holds now. A
    top-up's take-back stops at what the wallet still holds (`after`'s not_recovered figures record the rest); a
    purchase's draw must be covered. `lots`: the bonus lots, needed when bonus is taken; `new_lot` forms a top-up's
    bonus lot. None when nothing changes."""
    held_before = _held(before, top_up) if before is not None else (0, 0)
    held_after = _held(after, top_up)
    principal, bonus = held_after[0] - held_before[0], held_after[1] - held_before[1]
    if top_up:
        if principal < 0 and -principal > balance.principal:
            after.principal_not_recovered += -principal - balance.principal
            principal = -balance.principal
        if bonus < 0 and -bonus > balance.bonus:
            after.bonus_not_recovered += -bonus - balance.bonus
            bonus = -balance.bonus
    elif principal < -balance.principal or bonus < -balance.bonus:
        raise InsufficientBalance("the wallet changed while settling this order", field="data.wallet_used")
    if principal == 0 and bonus == 0:
        return None
    new: list[Lot] = []
    taken: list[Draw] = []
    back: list[Lot] = []
    if bonus > 0 and top_up:  # its payment: the bonus forms a lot
        lot = new_lot(bonus)
        after.bonus_lot = lot.lot_id
        new.append(lot)
    elif bonus > 0:  # a refund gives a purchase's bonus back, last drawn first back
        already = before.bonus_back if before is not None else 0
        back = _given_back(after, bonus, already=already, reference=reference)
    elif bonus < 0:  # a payment draws bonus, or a top-up's refund forfeits it (from its own lot first)
        taken, shortfall = draw(lots, -bonus, first=after.bonus_lot)
        if shortfall:  # the lots disagree with the wallet: it changed between the two reads
            raise InsufficientBalance("the wallet changed while settling this order", field="data.wallet_used")
        if not top_up:
            after.bonus_draws = taken
    lost = {
        k: v
        for k, v in (
            ("principal_not_recovered", after.principal_not_recovered),
            ("bonus_not_recovered", after.bonus_not_recovered),
        )
        if v
    }
    entry = WalletEntry(
        principal=principal, bonus=bonus, reason=reason, reference=reference, at=at, detail={**detail, **lost}
    )
    return WalletMove(
        principal=principal,
        bonus=bonus,
        entries=[entry],
        version=balance.version,
        lots=new,
        draws=taken,
        returned=back,
    )


def lapse_bonus(lot: Lot, at: datetime) -> WalletMove | None:
    """Remove what is left of a bonus lot past its expiry; None if it is not (yet) expired or is empty."""
    if not is_expired(lot.expires_at, at) or lot.remaining <= 0:
        return None
    assert lot.expires_at is not None
    entry = WalletEntry(
        principal=0,
        bonus=-lot.remaining,
        reason="bonus.expired",
        reference=lot.reference,
        at=at,
        detail={"lot_id": lot.lot_id, "granted": lot.granted, "expires_at": lot.expires_at.isoformat()},
        part=lot_part(lot),
    )
    taken = Draw(lot_id=lot.lot_id, take=lot.remaining, remaining_before=lot.remaining)
    return WalletMove(bonus=-lot.remaining, entries=[entry], version=None, draws=[taken])


def _given_back(order: OrderWallet, amount: int, *, already: int, reference: str) -> list[Lot]:
    """Lots for `amount` of bonus given back to a purchase's member, like those it was drawn from. `already`: what
    earlier refunds gave back (bonus the payment never drew, because a refund had already arrived, counts first)."""
    drawn = sum(d.take for d in order.bonus_draws)
    return given_back(order.bonus_draws, amount, skip=max(already - (order.bonus - drawn), 0), reference=reference)


def _held(wallet: OrderWallet, top_up: bool) -> tuple[int, int]:
    """What the member holds because of the order: a top-up's amounts less what was taken back; a purchase's draws
    (negative) less what was given back."""
    principal = wallet.principal - wallet.principal_back
    bonus = wallet.bonus - wallet.bonus_back
    return (principal, bonus) if top_up else (-principal, -bonus)


def _minor(text: str, currency: str, field: str) -> int:
    try:
        return parse_amount(text, currency)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from exc
