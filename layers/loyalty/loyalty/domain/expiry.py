"""When a grant of points expires. Pure: the earning instant and the program's time zone come in.

Policies (per points source):
  end_of_next_year  31 December 23:59:59 of the year after the points were earned, in the program's time zone
  days              N days after earning, to 23:59:59 of that day in the program's time zone
  never
A lot is valid through its expiry second and expired after it.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loyalty.domain.ledger import Lot

LAST_SECOND = time(23, 59, 59)


class ExpiryRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["end_of_next_year", "days", "never"] = "never"
    days: int | None = Field(default=None, ge=1, le=3660)

    @model_validator(mode="after")
    def _days_with_days_policy(self) -> "ExpiryRule":
        if (self.policy == "days") != (self.days is not None):
            raise ValueError("days is required with policy 'days' and only with it")
        return self


def expires_at(rule: ExpiryRule, earned_at: datetime, timezone: str) -> datetime | None:
    """The last instant (UTC) at which points earned at `earned_at` are still valid, or None for never."""
    zone = ZoneInfo(timezone)
    local = earned_at.astimezone(zone)
    if rule.policy == "never":
        return None
    if rule.policy == "end_of_next_year":
        last_day = date(local.year + 1, 12, 31)
    else:
        assert rule.days is not None
        last_day = local.date() + timedelta(days=rule.days)
    return datetime.combine(last_day, LAST_SECOND, tzinfo=zone).astimezone(UTC)


def is_expired(expiry: datetime | None, now: datetime) -> bool:
    return expiry is not None and now > expiry


def expiring_soon(lots: list[Lot], *, limit: int = 3) -> list[tuple[int, datetime]]:
    """The member's next expiring amounts: (points, expires_at) for the first `limit` expiry instants."""
    totals: dict[datetime, int] = {}
    for lot in lots:
        if lot.expires_at is not None:
            totals[lot.expires_at] = totals.get(lot.expires_at, 0) + lot.remaining
    return [(points, when) for when, points in sorted(totals.items())[:limit]]
