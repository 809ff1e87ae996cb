"""What a shop's figures are, as pure functions of the table's changes (its DynamoDB stream).

Every figure is the sum, over the items of the table, of what each item says of it, so a change to an item moves a
figure by what its new image says less what its old image said. A replayed change would move it twice: the
aggregator (service/reports.py) applies each change once, in order per partition.

Figures are kept per local day (the program's time zone) and in all. Two kinds:
- flows (points issued, coupons used, GMV...) are counted on the day of the business fact (a ledger entry's `at`,
  a coupon's `used_at`, an order's `paid_at`); taking a flow back (a refund's share of GMV, a coupon given back)
  takes it from the day it was counted on.
- levels (points outstanding, members, members per tier, wallet liability) move on the day the level moved, so a
  level at the end of any day is its total now less what moved after that day (`levels_at`).
An erasure moves a member's items to a pseudonymous partition: each moved item's REMOVE and INSERT cancel out, as
both images name the same days.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from loyalty.domain.money import currency_exponent
from loyalty.domain.orders import refunded_of

Item = Mapping[str, Any]
# (local day, figure name) -> amount
Deltas = dict[tuple[date, str], int]

# Ledger reasons that spend points, give spent points back, lapse them, or take back what an order earned.
SPENT = frozenset({"redemption", "points.used", "mall.exchange", "lottery.draw"})
GIVEN_BACK = frozenset({"points.returned", "mall.cancelled"})
EXPIRED = frozenset({"points.expired"})
# Reasons that show a member acted (an order, a behaviour, spending): they count the member active that day.
PASSIVE = frozenset({"points.expired", "points.adjusted", "points.imported", "points.activated"})

LEVELS = ("points_outstanding", "points_pending", "members_total", "wallet_principal", "wallet_bonus")
TIER_PREFIX = "tier:"  # members_by_tier figures: tier:<name> (tier:none for members without a tier)
ISSUED_PREFIX = "issued:"  # points issued by source: issued:<reason>
LATE = timedelta(days=2)  # an entry recorded this long after its `at` is history moving, not a member acting
SEGMENT_PREFIX = "segment:"  # members per segment: segment:<name>
WINBACK_PREFIX = "winback:"  # a win-back campaign's results: winback:<campaign>:<reached|used|orders|gmv>
FIGURE_TYPES = frozenset({"ledger", "member", "order", "coupon", "wallet", "rfm", "winback"})


def is_level(name: str) -> bool:
    return name in LEVELS or name.startswith((TIER_PREFIX, SEGMENT_PREFIX))


@dataclass(frozen=True)
class Change:
    """One stream record, as the aggregator sees it: its partition, order in it, and the item before and after."""

    pk: str
    seq: str  # the record's sequence number, zero-padded to 40 digits (so text order is stream order)
    old: Item | None
    new: Item | None
    at: datetime  # when the stream recorded it (a day for levels that name none)

    @property
    def shop_id(self) -> str:
        return self.pk.split("#", 2)[1]

    @property
    def kind(self) -> str | None:
        image = self.new if self.new is not None else self.old
        kind = image.get("type") if image else None
        return str(kind) if kind in FIGURE_TYPES else None


def padded(sequence_number: str) -> str:
    return sequence_number.zfill(40)


def day_of(value: Any, tz: ZoneInfo) -> date | None:
    if not value:
        return None
    instant = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(tz).date()


def _figures(item: Item, tz: ZoneInfo, fallback: date) -> dict[str, tuple[date, int]]:
    """What one item says of each figure it counts in, and on which day."""
    kind = item.get("type")
    out: dict[str, tuple[date, int]] = {}

    def add(name: str, when: Any, amount: int) -> None:
        if amount:
            day = day_of(when, tz) or fallback
            previous = out.get(name, (day, 0))[1]
            out[name] = (day, previous + amount)

    if kind == "ledger":
        points, pending, reason, at = (
            int(item.get("points", 0)),
            int(item.get("pending", 0)),
            item["reason"],
            item["at"],
        )
        add("points_outstanding", at, points)
        add("points_pending", at, pending)
        if reason in SPENT or reason in GIVEN_BACK:  # a give-back's points are positive: spending taken back
            add("points_spent", at, -points)
        elif reason in EXPIRED:
            add("points_expired", at, -points)
        elif points > 0:
            add(ISSUED_PREFIX + str(reason), at, points)
            add("points_issued", at, points)
        elif points < 0 and str(reason).startswith("order."):
            add("points_clawed_back", at, -points)
        elif points < 0:
            add("points_removed", at, -points)  # an adjustment down
    elif kind == "member":
        enrolled = item.get("enrolled_at")
        add("members_total", enrolled, 1)
        add("members_enrolled", enrolled, 1)  # an erased member's pseudonym keeps the enrolment's day
        add(TIER_PREFIX + str(item.get("tier") or "none"), item.get("tier_since") or enrolled, 1)
    elif kind == "order":
        if item.get("paid") and item.get("member_id") and not item.get("top_up") and not item.get("cancelled"):
            paid_at = item.get("paid_at")
            refunded = refunded_of(item.get("refunds") or {})
            add("orders", paid_at, 1)
            add("gmv", paid_at, max(int(item.get("total", 0)) - refunded, 0))
            if not item.get("coupons_returned"):
                add("coupon_discount", paid_at, int(item.get("discount", 0)))
    elif kind == "coupon":
        add("coupons_issued", item.get("claimed_at"), 1)
        if item.get("status") == "used":
            add("coupons_used", item.get("used_at"), 1)
            if item.get("campaign_id"):
                add(f"{WINBACK_PREFIX}{item['campaign_id']}:used", item.get("used_at"), 1)
        elif item.get("status") == "expired":
            add("coupons_expired", item.get("expired_at") or item.get("expires_at"), 1)
    elif kind == "rfm":
        add(SEGMENT_PREFIX + str(item["segment"]), item.get("segment_since"), 1)
    elif kind == "winback":
        add(f"{WINBACK_PREFIX}{item['campaign_id']}:reached", item.get("at"), 1)
    elif kind == "wallet":
        add("wallet_principal", item.get("updated_at"), int(item.get("principal", 0)))
        add("wallet_bonus", item.get("updated_at"), int(item.get("bonus", 0)))
    return out


def merge(into: Deltas, more: Deltas) -> None:
    """Add `more` to `into`, figure by figure and day by day."""
    for key, amount in more.items():
        into[key] = into.get(key, 0) + amount


def deltas(change: Change, tz: ZoneInfo) -> Deltas:
    """How a change moves each figure on each day: what its new image counts less what its old image counted.
    A level taken away by a change that leaves the item (a member moving tier) moves on the new image's day."""
    fallback = change.at.astimezone(tz).date()
    old = _figures(change.old, tz, fallback) if change.old is not None else {}
    new = _figures(change.new, tz, fallback) if change.new is not None else {}
    out: Deltas = {}
    for name, (day, amount) in new.items():
        out[(day, name)] = out.get((day, name), 0) + amount
    for name, (day, amount) in old.items():
        if is_level(name) and new:
            day = _moved_on(name, new, fallback)
        out[(day, name)] = out.get((day, name), 0) - amount
    return {key: amount for key, amount in out.items() if amount}


def _moved_on(level: str, new: dict[str, tuple[date, int]], fallback: date) -> date:
    """The day a level the old image counted moved, as the new image says: its own day if it still counts it,
    else its family's (a member leaving tier:gold for tier:silver moved on silver's day), else the change's."""
    if level in new:
        return new[level][0]
    family = level.split(":", 1)[0] + ":"
    return next((day for name, (day, _) in new.items() if ":" in level and name.startswith(family)), fallback)


def active_day(change: Change, tz: ZoneInfo) -> date | None:
    """The local day a change shows its member acting on (an order paid, a behaviour, points spent), if it does.
    An entry written long after its day (an erasure moving a member's history, a late import) shows nothing."""
    item = change.new
    if change.old is not None or item is None or item.get("type") != "ledger" or item["reason"] in PASSIVE:
        return None
    at = datetime.fromisoformat(str(item["at"]).replace("Z", "+00:00"))
    if change.at - at > LATE:
        return None
    return at.astimezone(tz).date()


# ---------------------------------------------------------------- reading the figures back


def levels_at(totals: Mapping[str, int], later: Sequence[Mapping[str, int]]) -> dict[str, int]:
    """A day's levels: where they stand now less what moved on the days after it (`later`)."""
    out = {name: int(value) for name, value in totals.items() if is_level(name)}
    for row in later:
        for name, value in row.items():
            if is_level(name):
                out[name] = out.get(name, 0) - int(value)
    return out


def liability(points: int, points_per_unit: int | None, currency: str) -> int | None:
    """What outstanding points are worth in minor units at the program's points-as-cash rate (None without one)."""
    if not points_per_unit:
        return None
    return int(Decimal(points) * 10 ** currency_exponent(currency) / points_per_unit)


def shaped(
    figures: Mapping[str, int], *, points_per_unit: int | None, currency: str, base_tier: str | None
) -> dict[str, Any]:
    """The figures as the API answers them; members never moved from the base tier are counted in it."""

    def get(name: str) -> int:
        return int(figures.get(name, 0))

    by_tier: dict[str, int] = {}
    for name, value in figures.items():
        if name.startswith(TIER_PREFIX):
            tier = name.removeprefix(TIER_PREFIX)
            tier = base_tier if tier == "none" and base_tier else tier
            by_tier[tier] = by_tier.get(tier, 0) + int(value)
    segments = {
        name.removeprefix(SEGMENT_PREFIX): int(v) for name, v in figures.items() if name.startswith(SEGMENT_PREFIX)
    }
    by_source = {
        name.removeprefix(ISSUED_PREFIX): int(v) for name, v in figures.items() if name.startswith(ISSUED_PREFIX)
    }
    return {
        "points": {
            "issued": get("points_issued"),
            "issued_by_source": {k: v for k, v in sorted(by_source.items()) if v},
            "spent": get("points_spent"),
            "expired": get("points_expired"),
            "clawed_back": get("points_clawed_back"),
            "removed": get("points_removed"),
            "outstanding": get("points_outstanding"),
            "pending": get("points_pending"),
            "liability": liability(get("points_outstanding"), points_per_unit, currency),
        },
        "members": {
            "total": get("members_total"),
            "enrolled": get("members_enrolled"),
            "active": get("members_active"),
            "by_tier": {k: v for k, v in sorted(by_tier.items()) if v},
            "by_segment": {k: v for k, v in sorted(segments.items()) if v},
        },
        "coupons": {
            "issued": get("coupons_issued"),
            "used": get("coupons_used"),
            "expired": get("coupons_expired"),
            "discount": get("coupon_discount"),
        },
        "orders": {"count": get("orders"), "gmv": get("gmv")},
        "wallet": {"principal": get("wallet_principal"), "bonus": get("wallet_bonus")},
        "currency": currency,
    }
