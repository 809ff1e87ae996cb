"""A shop's loyalty program: how purchases earn points and how refunds take them back."""

from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from loyalty.domain import coupons as coupons_rules
from loyalty.domain.coupons import Coupon, PointsOffset, PricedLine, Quote
from loyalty.domain.engagement import BehaviourName, BehaviourRule, CheckInRule
from loyalty.domain.expiry import ExpiryRule
from loyalty.domain.ledger import BusinessTime
from loyalty.domain.money import currency_exponent, normalise_currency
from loyalty.domain.segments import SegmentRules
from loyalty.domain.tiers import Tier, rank
from loyalty.domain.wallet import WalletRules

# A rate or multiplier: exact decimal, at most 4 decimal places (JSON numbers are parsed as Decimal, never float).
Rate = Annotated[Decimal, Field(ge=0, le=10_000, decimal_places=4, allow_inf_nan=False)]
Category = Annotated[str, Field(min_length=1, max_length=64)]
# Where points come from; each source has its own expiry policy. "behaviour": every source but purchases (check-ins,
# behaviours, and the rewards built on them).
# Where points come from, each with its own expiry policy: orders, behaviours (check-ins, activities, prizes),
# staff adjustments, and opening balances brought in by an import.
Source = Literal["purchase", "behaviour", "adjustment", "import"]


class Campaign(BaseModel):
    """A promotion (e.g. double points on tea for a weekend): orders paid from `from` until `until` earn its
    multiplier on lines it matches. Empty `categories` and `skus` match every line; empty `tiers`, every member."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True)

    id: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    multiplier: Rate
    starts: BusinessTime = Field(alias="from")
    ends: BusinessTime = Field(alias="until")
    categories: list[Category] = Field(default_factory=list, max_length=100)
    skus: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(default_factory=list, max_length=500)
    tiers: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=20)

    @model_validator(mode="after")
    def _window(self) -> "Campaign":
        if self.ends <= self.starts:
            raise ValueError("until must be after from")
        return self

    def matches(self, sku: str, category: str, tier: str | None, at: datetime) -> bool:
        if not self.starts <= at <= self.ends:
            return False
        if self.tiers and tier not in self.tiers:
            return False
        if not self.categories and not self.skus:
            return True
        return category in self.categories or sku in self.skus


class BirthdayRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    multiplier: Rate = Field(default=Decimal(1), description="orders paid on the member's birthday earn this")
    points: int = Field(default=0, ge=0, le=1_000_000, description="granted on the birthday by the birthday run")


class ReferralRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    referrer_points: int = Field(ge=0, le=1_000_000, description="for the member who invited")
    referee_points: int = Field(ge=0, le=1_000_000, description="for the member invited")
    monthly_cap: int | None = Field(
        default=None, ge=0, le=10_000, description="rewards one referrer may earn per calendar month"
    )


class RefundReturns(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    coupons: Literal["never", "full_refund"] = Field(
        default="full_refund", description="coupons come back only when the whole order is refunded, or never"
    )
    points: Literal["never", "proportional"] = Field(
        default="proportional", description="points used come back in proportion to the amount refunded, or never"
    )


class Program(BaseModel):
    """What a shop configures with PUT /program. Every field has a default a new shop starts from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = Field(default="CNY", description="ISO 4217 code; orders in another currency are refused")
    points_per_unit: Rate = Field(default=Decimal(1), description="points per 1 major unit of currency spent")
    category_multipliers: dict[Category, Rate] = Field(
        default_factory=dict,
        max_length=500,
        description="per-category multiplier; 0 excludes a category (e.g. tobacco), 2 doubles it; default 1",
    )
    pending_days: int = Field(default=0, ge=0, le=365, description="return window: days before points can be spent")
    clawback: Literal["stop_at_zero", "allow_negative"] = Field(
        default="stop_at_zero",
        description="when a refund takes back more than the member holds: stop at zero, or leave a debt "
        "that later earnings repay",
    )
    timezone: str = Field(default="UTC", description="IANA time zone of the program, for calendar rules")
    phone_region: Annotated[str, Field(pattern=r"^[A-Z]{2}$")] = Field(
        default="CN", description="ISO 3166 region phone numbers without a + are read in (kept in E.164)"
    )
    expiry: dict[Source, ExpiryRule] = Field(
        default_factory=dict,
        description="expiry policy per points source (end_of_next_year, days, never); a source not listed never "
        "expires",
    )
    expiry_reminder_days: int = Field(
        default=30, ge=0, le=365, description="days before points lapse that points.expiring is published; 0: never"
    )

    points_offset: PointsOffset | None = Field(
        default=None,
        description="points as cash at checkout, e.g. {points_per_unit: 20, max_share: 0.5}: 20 points pay one "
        "major unit, for at most half of what is left to pay; absent: points cannot pay",
    )
    combine_points_and_coupons: bool = Field(default=True, description="whether one order may use both")
    coupons_per_order: int = Field(
        default=1, ge=1, le=5, description="how many coupons one order may use (never two of one template)"
    )
    coupon_reminder_days: int = Field(
        default=3, ge=0, le=90, description="days before an unused coupon expires that coupon.expiring is published"
    )
    refund_returns: RefundReturns = Field(
        default_factory=lambda: RefundReturns(),
        description="what a refund gives back of the coupons and points an order used (a cancellation gives "
        "back everything)",
    )

    @field_validator("currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        return normalise_currency(value)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError("must be an IANA time zone name such as 'Asia/Shanghai'") from exc
        return value

    check_in: CheckInRule | None = Field(
        default=None, description="daily check-in: {points, streak_bonus: {day: points}}; absent: no check-ins"
    )
    behaviours: dict[BehaviourName, BehaviourRule] = Field(
        default_factory=dict,
        max_length=50,
        description="points for behaviours, e.g. {review: {points: 20, daily_cap: 60}, profile: {points: 50, "
        "once: true}}; a behaviour not listed earns nothing",
    )
    behaviour_monthly_cap: int | None = Field(
        default=None, ge=0, le=100_000_000, description="points all behaviours together may earn a member a month"
    )

    campaigns: list[Campaign] = Field(
        default_factory=list,
        max_length=50,
        description="promotions multiplying points on matching lines in a window; the best one applies per line",
    )
    referral: ReferralRule | None = Field(
        default=None,
        description="both members are rewarded when the referee's first order is paid and past its return window "
        "(pending_days) without a refund or cancellation",
    )
    birthday: BirthdayRule | None = Field(
        default=None,
        description="{multiplier, points}: on the member's birthday (program time zone) orders earn more, and the "
        "birthday run grants points (and the member tier's birthday_coupons)",
    )

    tiers: list[Tier] = Field(
        default_factory=list,
        max_length=20,
        description="the ladder, ascending thresholds, the first 0 (e.g. normal 0, silver 1000, gold 5000)",
    )
    tier_metric: Literal["spend", "points", "top_up"] = Field(
        default="spend",
        description="what thresholds measure: spend (major units), points earned, or wallet top-ups (major units, "
        "the principal paid in less its refunds)",
    )
    tier_window_days: int = Field(default=365, ge=1, le=1096, description="the rolling window of the metric")
    tier_valid_days: int = Field(default=365, ge=1, le=1096, description="how long a tier lasts before review")
    tier_downgrade: Literal["one_down", "recompute"] = Field(
        default="one_down", description="at a review that fails: one tier down, or the tier the metric earns"
    )

    segments: SegmentRules = Field(
        default_factory=SegmentRules,
        description="RFM segments: {new_days, at_risk_days, dormant_days, champion_orders, champion_spend}; a "
        "member idle dormant_days is dormant (win-back campaigns target at_risk or dormant)",
    )

    wallet: WalletRules | None = Field(
        default=None,
        description="stored value: {top_up_plans: [{pay, bonus, from?, until?}], draw, min_top_up?, max_balance?, "
        "bonus_expiry?} (amounts as decimal strings); absent: members have no wallet",
    )

    @model_validator(mode="after")
    def _wallet_amounts(self) -> "Program":
        if self.wallet is not None:
            self.wallet.check_currency(self.currency)
        return self

    @model_validator(mode="after")
    def _ladder(self) -> "Program":
        if not self.tiers:
            return self
        if self.tiers[0].threshold != 0:
            raise ValueError("tiers: the first tier's threshold must be 0")
        thresholds = [tier.threshold for tier in self.tiers]
        if any(low >= high for low, high in pairwise(thresholds)):
            raise ValueError("tiers: thresholds must rise strictly")
        if len({tier.name for tier in self.tiers}) != len(self.tiers):
            raise ValueError("tiers: names must be unique")
        if self.tier_metric == "points" and any(t != t.to_integral_value() for t in thresholds):
            raise ValueError("tiers: points thresholds must be whole numbers")
        return self

    @property
    def exponent(self) -> int:
        return currency_exponent(self.currency)

    def expiry_rule(self, source: Source) -> ExpiryRule:
        return self.expiry.get(source, ExpiryRule())

    def price(
        self,
        lines: list[PricedLine],
        codes: list[str],
        coupons: dict[str, Coupon],
        *,
        member_id: str,
        points: int,
        available: int,
        at: datetime,
    ) -> Quote:
        """A cart priced under this program's checkout rules: points as cash, combining, coupons per order."""
        return coupons_rules.quote(
            lines,
            codes,
            coupons,
            member_id=member_id,
            points=points,
            available=available,
            offset=self.points_offset,
            combine=self.combine_points_and_coupons,
            max_coupons=self.coupons_per_order,
            exponent=self.exponent,
            at=at,
        )

    def multiplier(self, category: str) -> Decimal:
        return self.category_multipliers.get(category, Decimal(1))

    def tier_of(self, name: str | None) -> Tier | None:
        """A member's tier on this ladder (the base tier for a name it no longer has), or None without tiers."""
        return self.tiers[rank(self.tiers, name)] if self.tiers else None

    def best_campaign(self, sku: str, category: str, tier: str | None, at: datetime) -> Campaign | None:
        running = [c for c in self.campaigns if c.matches(sku, category, tier, at)]
        return max(running, key=lambda c: c.multiplier) if running else None
