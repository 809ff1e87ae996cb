"""Membership tiers (普通 normal, 银卡 silver, 金卡 gold, 钻石 diamond...): pure rules.

- The qualifying metric is spend (what was paid, less refunds), points earned, or wallet top-ups (principal paid
  in, less refunds), within a rolling window of days, by business time: each order counts on the day (program time
  zone) it was paid. Spending points never lowers it; refunds and cancellations do.
- A member rises as soon as an order lifts the metric over a higher threshold (in that order's transaction).
- A member falls only at a review, when the tier's validity ends: met the tier's threshold again within the
  window -> keep it for another period; otherwise one tier down (`one_down`) or the tier the metric earns
  (`recompute`). Editing the ladder therefore never demotes anyone before their review.
"""

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

TierName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[^#\s]+$")]


class Tier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: TierName
    threshold: Annotated[Decimal, Field(ge=0, allow_inf_nan=False, decimal_places=2)] = Field(
        description="spend in major currency units, or points, within the window"
    )
    multiplier: Annotated[Decimal, Field(ge=0, le=100, decimal_places=4)] = Decimal(1)
    # Benefits that later capabilities use: member price and coupon templates granted on birthdays and monthly.
    discount_percent: Annotated[Decimal, Field(ge=0, le=100, decimal_places=2)] = Decimal(0)
    birthday_coupons: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=10)
    monthly_coupons: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=10)


class TierChange(BaseModel):
    """One decision about a member's tier, recorded and (when the tier moved) published as tier.changed."""

    model_config = ConfigDict(frozen=True)

    # None values are not stored, so each optional field has its default.
    from_tier: str | None = None
    to_tier: str | None = None
    reason: Literal["upgrade", "retained", "one_down", "recompute", "import"]
    at: datetime
    metric: int  # the qualifying total the decision saw
    review_at: datetime | None = None  # when the new tier is next reviewed (None: the base tier is never reviewed)

    @property
    def moved(self) -> bool:
        return self.from_tier != self.to_tier


class MemberTier(BaseModel):
    """What the member item keeps for tiers: the tier, when it is reviewed, and the metric by day."""

    tier: str | None = None
    since: datetime | None = None
    review_at: datetime | None = None
    qualifying: dict[str, int] = Field(default_factory=dict)  # yyyy-mm-dd (program time zone) -> metric
    rev: int = 0  # bumped by every change to the above: decisions are made on a known state


def qualifying_day(at: datetime, timezone: str) -> str:
    return at.astimezone(ZoneInfo(timezone)).date().isoformat()


def window_total(qualifying: dict[str, int], at: datetime, window_days: int, timezone: str) -> int:
    """The metric over the `window_days` days ending with the day of `at` (program time zone)."""
    last = at.astimezone(ZoneInfo(timezone)).date()
    first = last - timedelta(days=window_days - 1)
    return sum(value for day, value in qualifying.items() if first <= date.fromisoformat(day) <= last)


def threshold_units(tier: Tier, metric: str, exponent: int) -> int:
    """A threshold in the metric's integer units: minor currency units for spend and top-ups, whole points for
    points."""
    return int(tier.threshold.scaleb(exponent)) if metric in ("spend", "top_up") else int(tier.threshold)


def rank(ladder: list[Tier], name: str | None) -> int:
    """Position of a tier on the ladder; a name the ladder no longer has counts as the base tier."""
    return next((index for index, tier in enumerate(ladder) if tier.name == name), 0)


def earned_rank(ladder: list[Tier], total: int, metric: str, exponent: int) -> int:
    reached = [index for index, tier in enumerate(ladder) if total >= threshold_units(tier, metric, exponent)]
    return max(reached, default=0)


def upgrade(
    ladder: list[Tier], state: MemberTier, total: int, at: datetime, *, metric: str, exponent: int, valid_days: int
) -> TierChange | None:
    """The upgrade an order at `at` earns, given the window total including it; None if it earns none."""
    current = rank(ladder, state.tier)
    target = earned_rank(ladder, total, metric, exponent)
    if not ladder or target <= current:
        return None
    return TierChange(
        from_tier=state.tier,
        to_tier=ladder[target].name,
        reason="upgrade",
        at=at,
        metric=total,
        review_at=at + timedelta(days=valid_days),
    )


def review(
    ladder: list[Tier],
    state: MemberTier,
    total: int,
    at: datetime,
    *,
    metric: str,
    exponent: int,
    valid_days: int,
    policy: Literal["one_down", "recompute"],
) -> TierChange:
    """The decision at a tier's review, from the window total at `at`."""
    current = rank(ladder, state.tier)
    reason: Literal["retained", "one_down", "recompute"]
    if state.tier == ladder[current].name and total >= threshold_units(ladder[current], metric, exponent):
        target, reason = current, "retained"
    elif policy == "one_down" and state.tier == ladder[current].name:
        target, reason = max(current - 1, 0), "one_down"
    else:
        target, reason = earned_rank(ladder, total, metric, exponent), "recompute"
    review_at = at + timedelta(days=valid_days) if target > 0 else None
    return TierChange(
        from_tier=state.tier, to_tier=ladder[target].name, reason=reason, at=at, metric=total, review_at=review_at
    )


def base_tier(ladder: list[Tier]) -> str | None:
    return ladder[0].name if ladder else None
