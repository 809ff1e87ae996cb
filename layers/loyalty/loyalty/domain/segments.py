"""RFM and segments: who a member is to the shop now, from when they last acted, how often they ordered and how
much they spent. Pure: the aggregator keeps each member's `Rfm` as their changes stream in, and the nightly
segment review moves members whose segment changes with time alone (active -> at risk -> dormant).

Segments, first match wins:
- `champion`: acted within `at_risk_days`, at least `champion_orders` orders and `champion_spend` spent;
- `new`: enrolled within `new_days` and no order yet;
- `active`: acted within `at_risk_days`;
- `at_risk`: last acted `at_risk_days` to `dormant_days` ago;
- `dormant`: last acted `dormant_days` or more ago (enrolment counts as acting).
"""

from datetime import date, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loyalty.domain.money import parse_amount
from loyalty.domain.orders import DecimalString

Segment = Literal["champion", "new", "active", "at_risk", "dormant"]
SEGMENTS: tuple[Segment, ...] = ("champion", "new", "active", "at_risk", "dormant")
# Segments a member enters with time alone, in the nightly review: a win-back campaign targets one of them.
ENTERED_BY_TIME: tuple[Segment, ...] = ("at_risk", "dormant")


class SegmentRules(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    new_days: Annotated[int, Field(ge=1, le=365)] = 30
    at_risk_days: Annotated[int, Field(ge=1, le=1095)] = 45
    dormant_days: Annotated[int, Field(ge=2, le=1825)] = Field(
        default=90, description="no order or behaviour for this many days makes a member dormant"
    )
    champion_orders: Annotated[int, Field(ge=1, le=10_000)] = 5
    champion_spend: DecimalString = Field(
        default="1000.00", description="spent (net of refunds, major units) that with champion_orders makes a champion"
    )

    @model_validator(mode="after")
    def _order(self) -> "SegmentRules":
        if self.at_risk_days >= self.dormant_days:
            raise ValueError("at_risk_days must be fewer than dormant_days")
        return self


class Rfm(BaseModel):
    """A member's recency, frequency and monetary figures, as the aggregator keeps them."""

    model_config = ConfigDict(frozen=True)

    enrolled: date | None = None
    last_active: date | None = None  # the last local day an order, behaviour or spend showed them acting
    last_order: date | None = None
    orders: int = 0  # paid orders, less cancelled ones
    spend: int = 0  # minor units, net of refunds

    @property
    def recency_from(self) -> date | None:
        days = [day for day in (self.last_active, self.enrolled) if day is not None]
        return max(days) if days else None


def segment_of(rfm: Rfm, today: date, rules: SegmentRules, currency: str) -> Segment:
    since = rfm.recency_from
    idle = (today - since).days if since else rules.dormant_days
    if idle >= rules.dormant_days:
        return "dormant"
    if idle >= rules.at_risk_days:
        return "at_risk"
    if rfm.orders >= rules.champion_orders and rfm.spend >= parse_amount(rules.champion_spend, currency):
        return "champion"
    if rfm.orders == 0 and rfm.enrolled is not None and (today - rfm.enrolled).days < rules.new_days:
        return "new"
    return "active"


def next_review(rfm: Rfm, today: date, rules: SegmentRules) -> date | None:
    """The next local day the member's segment changes if nothing else happens (None: it never will)."""
    since = rfm.recency_from
    if since is None:
        return None
    candidates = [since + timedelta(days=rules.at_risk_days), since + timedelta(days=rules.dormant_days)]
    if rfm.enrolled is not None and rfm.orders == 0:
        candidates.append(rfm.enrolled + timedelta(days=rules.new_days))
    later = [day for day in candidates if day > today]
    return min(later) if later else None


def scores(rfm: Rfm, today: date, rules: SegmentRules, currency: str) -> dict[str, int]:
    """R, F and M from 1 to 5 against the program's own bands (not the shop's quintiles, which no member's
    change alone could keep): recency in fifths of dormant_days, frequency and spend in fifths of a champion's."""
    since = rfm.recency_from
    idle = (today - since).days if since else rules.dormant_days
    recency = 5 - min(4, idle * 5 // rules.dormant_days)
    frequency = 1 + min(4, rfm.orders * 4 // rules.champion_orders)
    champion = parse_amount(rules.champion_spend, currency)
    monetary = 1 + min(4, rfm.spend * 4 // champion) if champion else 5
    return {"r": recency, "f": frequency, "m": monetary}


def advanced(
    rfm: Rfm,
    *,
    acted: date | None = None,
    orders: int = 0,
    spend: int = 0,
    ordered: date | None = None,
    enrolled: date | None = None,
) -> Rfm:
    """The member's RFM after a change: a day they acted, an order's count and spend moving (a payment +1, a
    cancellation -1, a refund less spend), their enrolment."""

    def later(one: date | None, other: date | None) -> date | None:
        return max(d for d in (one, other) if d is not None) if (one or other) else None

    return Rfm(
        enrolled=rfm.enrolled or enrolled,
        last_active=later(rfm.last_active, acted),
        last_order=later(rfm.last_order, ordered if orders > 0 else None),
        orders=max(rfm.orders + orders, 0),
        spend=max(rfm.spend + spend, 0),
    )
