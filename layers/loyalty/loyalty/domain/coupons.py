"""Coupons: their terms, when they apply, and the checkout quote. Pure: coupons and carts come in, money goes out.

Kinds: amount_off (满减; min_spend 0 makes it 无门槛, no threshold) and percent_off (折扣, with an optional cap).
Every amount is an integer in minor units; a discount is spread over the lines it applies to by the largest
remainder method, so line figures always add up to the whole to the cent.
"""

import secrets
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loyalty.domain.errors import DomainError, InvalidInput
from loyalty.domain.ledger import BusinessTime
from loyalty.domain.money import parse_amount
from loyalty.domain.orders import MAX_CODES, DecimalString, Identifier, OrderLine

Kind = Literal["amount_off", "percent_off"]
Status = Literal["available", "used", "expired"]
# Why a coupon does not apply; stable codes a checkout can show its own text for.
Reason = Literal[
    "unknown_code",
    "not_this_members",
    "already_used",
    "expired",
    "not_yet_valid",
    "below_minimum",
    "out_of_scope",
    "duplicate_code",
    "same_template",
    "too_many_coupons",
]
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O or 1/I: codes are read aloud and typed


class NotApplicable(DomainError):
    """A coupon or the points in a checkout do not apply; `field` names which, `reason` says why (422)."""

    code = "not_applicable"

    def __init__(self, message: str, *, field: str, reason: str) -> None:
        super().__init__(message, field=field)
        self.reason = reason


class Terms(BaseModel):
    """What a coupon gives and where. Copied onto every coupon at claim, so later template edits never change
    a coupon a member already holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind
    amount: int = 0  # amount_off: minor units off
    percent: Decimal = Decimal(0)  # percent_off: percent taken off (20 = 20% off, 8折)
    min_spend: int = 0  # minor units of in-scope goods before this coupon; 0: no threshold
    max_discount: int | None = None  # percent_off: the most it takes off
    categories: list[str] = []
    skus: list[str] = []

    def in_scope(self, sku: str, category: str) -> bool:
        if not self.categories and not self.skus:
            return True
        return category in self.categories or sku in self.skus


class TemplateRequest(BaseModel):
    """POST /coupon-templates. Money as decimal strings in the program's currency."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    kind: Kind
    amount: DecimalString | None = Field(default=None, description="amount_off: the amount taken off")
    percent: Annotated[Decimal, Field(gt=0, lt=100, decimal_places=2)] | None = Field(
        default=None, description="percent_off: the percent taken off (20 = 20% off)"
    )
    min_spend: DecimalString = Field(default="0", description="in-scope spend required; 0 = no threshold")
    max_discount: DecimalString | None = Field(default=None, description="percent_off: the most it takes off")
    categories: Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=100)] = []
    skus: Annotated[list[Identifier], Field(max_length=500)] = []
    stock: Annotated[int, Field(ge=1, le=10_000_000)]
    per_member_limit: Annotated[int, Field(ge=1, le=1000)] = 1
    valid_from: BusinessTime | None = None
    valid_until: BusinessTime | None = None
    valid_days_after_claim: Annotated[int, Field(ge=1, le=3650)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "TemplateRequest":
        if self.kind == "amount_off" and self.amount is None:
            raise ValueError("amount: required for amount_off")
        if self.kind == "percent_off" and self.percent is None:
            raise ValueError("percent: required for percent_off")
        if self.kind == "amount_off" and (self.percent is not None or self.max_discount is not None):
            raise ValueError("percent, max_discount: only for percent_off")
        if self.kind == "percent_off" and self.amount is not None:
            raise ValueError("amount: only for amount_off")
        if (self.valid_until is None) == (self.valid_days_after_claim is None):
            raise ValueError("valid_until: give exactly one of valid_until or valid_days_after_claim")
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValueError("valid_until: must be after valid_from")
        return self


class Template(BaseModel):
    """A coupon template as stored: its terms in minor units, stock and limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template_id: str
    name: str
    terms: Terms
    stock: int
    per_member_limit: int
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    valid_days_after_claim: int | None = None
    created_at: datetime

    def window(self, claimed_at: datetime) -> tuple[datetime | None, datetime]:
        """(valid from, expires at) of a coupon claimed at `claimed_at`."""
        if self.valid_days_after_claim is not None:
            return self.valid_from, claimed_at + timedelta(days=self.valid_days_after_claim)
        assert self.valid_until is not None
        return self.valid_from, self.valid_until

    def claimable(self, at: datetime) -> str | None:
        """Why the template cannot be claimed at `at`, or None. (Stock and limits are the store's conditions.)"""
        if self.valid_until is not None and at >= self.valid_until:
            return "this coupon's validity has ended"
        return None


class Coupon(BaseModel):
    """One coupon a member holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    coupon_id: str
    code: str
    template_id: str
    member_id: str
    terms: Terms
    status: Status = "available"
    claimed_at: datetime
    valid_from: datetime | None = None
    expires_at: datetime
    order_id: str | None = None  # the order that used it
    used_at: datetime | None = None
    campaign_id: str | None = None  # the win-back campaign that gave it, if one did

    def status_at(self, at: datetime) -> Status:
        """The status a member sees: an available coupon past its expiry is expired even before the run."""
        if self.status == "available" and at >= self.expires_at:
            return "expired"
        return self.status


def new_code() -> str:
    """12 characters of a 32-letter alphabet: 60 bits, typed in groups of four."""
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(12))
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}"


def normalise_code(text: str) -> str:
    raw = "".join(ch for ch in text.upper() if ch.isalnum())
    return f"{raw[:4]}-{raw[4:8]}-{raw[8:]}" if len(raw) == 12 else text.strip().upper()


# ---------------------------------------------------------------------------- the quote


class PricedLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    sku: str
    category: str
    amount: int  # minor units, what the line costs before our coupons and points


def priced_lines(lines: list[OrderLine], currency: str, where: str = "lines") -> list[PricedLine]:
    """Order or cart lines with their amounts in exact minor units; a bad amount names its line."""
    out = []
    for index, line in enumerate(lines):
        try:
            amount = parse_amount(line.amount, currency)
        except ValueError as exc:
            raise InvalidInput(str(exc), field=f"{where}[{index}].amount") from exc
        out.append(PricedLine(sku=line.sku, category=line.category, amount=amount))
    return out


def member_priced(lines: list[PricedLine], percent: Decimal) -> list[PricedLine]:
    """Lines at the member's price (a tier's discount_percent): each line's own discount rounded half up to the
    minor unit. Member price comes first; coupons and points apply to what it leaves."""
    if not percent:
        return lines
    return [
        line.model_copy(
            update={
                "amount": line.amount - int((Decimal(line.amount) * percent / 100).to_integral_value(ROUND_HALF_UP))
            }
        )
        for line in lines
    ]


class PointsOffset(BaseModel):
    """Points as cash: `points_per_unit` points pay one major unit; at most `max_share` of what is left to pay."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    points_per_unit: Annotated[int, Field(ge=1, le=1_000_000)]
    max_share: Annotated[Decimal, Field(gt=0, le=1, decimal_places=4)] = Decimal(1)


class Discount(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str
    amount: int


class Quote(BaseModel):
    model_config = ConfigDict(frozen=True)

    subtotal: int
    discounts: list[Discount]
    points_used: int
    points_offset: int  # minor units the points pay
    points_max: int  # the most points this cart could use, after its coupons
    payable: int
    lines: list[PricedLine]  # each line after coupons and points: what the buyer pays for it (earns points)


def quote(
    lines: list[PricedLine],
    codes: list[str],
    coupons: dict[str, Coupon],
    *,
    member_id: str,
    points: int,
    available: int,
    offset: PointsOffset | None,
    combine: bool,
    exponent: int,
    at: datetime,
    max_coupons: int = MAX_CODES,
) -> Quote:
    """Apply coupons in the order given, each to what its scope still has to pay, then points.

    `coupons` holds the coupons found for the codes (any member's: that is how 'not_this_members' is told).
    Points are capped by the share of what is left and rounded down to whole minor units; `points_used` is the
    fewest points that buy that offset, never more than asked. Raises NotApplicable naming the failing input.
    """
    if codes and points and not combine:
        raise NotApplicable("points and coupons do not combine in this program", field="points", reason="no_combine")
    if len(codes) > max_coupons:
        raise NotApplicable(
            f"this program takes at most {max_coupons} coupon(s) per order",
            field=f"coupon_codes[{max_coupons}]",
            reason="too_many_coupons",
        )
    templates: set[str] = set()
    remaining = [line.amount for line in lines]
    discounts: list[Discount] = []
    for index, code in enumerate(codes):
        field = f"coupon_codes[{index}]"
        if code in codes[:index]:
            raise NotApplicable(f"{code} is given twice", field=field, reason="duplicate_code")
        coupon = coupons.get(code)
        why = _inapplicable(coupon, member_id, at)
        if why or coupon is None:
            raise NotApplicable(f"{code}: {why}", field=field, reason=why or "unknown_code")
        if coupon.template_id in templates:
            raise NotApplicable(f"{code}: one coupon of a kind per order", field=field, reason="same_template")
        templates.add(coupon.template_id)
        terms = coupon.terms
        scope = [i for i, line in enumerate(lines) if terms.in_scope(line.sku, line.category)]
        if not scope:
            raise NotApplicable(f"{code}: no line of this cart is in its scope", field=field, reason="out_of_scope")
        spend = sum(lines[i].amount for i in scope)
        if spend < terms.min_spend:
            raise NotApplicable(
                f"{code}: needs {_major(terms.min_spend, exponent)} of goods in its scope, the cart has "
                f"{_major(spend, exponent)}",
                field=field,
                reason="below_minimum",
            )
        base = sum(remaining[i] for i in scope)
        amount = min(_discount(terms, base), base)
        for i, share in zip(scope, allocate(amount, [remaining[i] for i in scope]), strict=True):
            remaining[i] -= share
        discounts.append(Discount(code=code, amount=amount))
    after_coupons = sum(remaining)
    points_max, used, money, cap, scale = 0, 0, 0, 0, 10**exponent
    if offset is not None:
        cap = int(Fraction(after_coupons) * Fraction(offset.max_share) // 1)
        points_max = _points_for(cap, offset.points_per_unit, scale)
    if points:
        if offset is None:
            raise NotApplicable("this program does not take points as payment", field="points", reason="disabled")
        if points > available:
            raise NotApplicable(
                f"{points} points asked, {max(available, 0)} available", field="points", reason="insufficient_points"
            )
        money = min(points * scale // offset.points_per_unit, cap)
        used = _points_for(money, offset.points_per_unit, scale)
        for i, share in enumerate(allocate(money, remaining)):
            remaining[i] -= share
    return Quote(
        subtotal=sum(line.amount for line in lines),
        discounts=discounts,
        points_used=used,
        points_offset=money,
        points_max=points_max,
        payable=sum(remaining),
        lines=[line.model_copy(update={"amount": left}) for line, left in zip(lines, remaining, strict=True)],
    )


def _inapplicable(coupon: Coupon | None, member_id: str, at: datetime) -> Reason | None:
    if coupon is None:
        return "unknown_code"
    if coupon.member_id != member_id:
        return "not_this_members"
    status = coupon.status_at(at)
    if status == "used":
        return "already_used"
    if status == "expired":
        return "expired"
    if coupon.valid_from is not None and at < coupon.valid_from:
        return "not_yet_valid"
    return None


def _major(minor: int, exponent: int) -> str:
    whole, frac = divmod(minor, 10**exponent)
    return f"{whole}.{frac:0{exponent}d}" if exponent else str(whole)


def _discount(terms: Terms, base: int) -> int:
    if terms.kind == "amount_off":
        return terms.amount
    off = int(Fraction(base) * Fraction(terms.percent) / 100 // 1)  # rounded down: never more than the percent
    return min(off, terms.max_discount) if terms.max_discount is not None else off


def _points_for(money: int, points_per_unit: int, scale: int) -> int:
    """The fewest whole points worth at least `money` minor units."""
    return -(-money * points_per_unit // scale)


def allocate(amount: int, weights: list[int]) -> list[int]:
    """Split `amount` over `weights` in proportion, in whole units, by the largest remainder; sums exactly and
    never gives a part more than its weight (amount <= sum(weights))."""
    total = sum(weights)
    if amount <= 0 or total <= 0:
        return [0] * len(weights)
    assert amount <= total
    shares = [amount * weight // total for weight in weights]
    remainders = sorted(
        range(len(weights)), key=lambda i: (-(amount * weights[i] % total), i)
    )  # largest remainder first, then line order
    for i in remainders[: amount - sum(shares)]:
        shares[i] += 1
    return shares
