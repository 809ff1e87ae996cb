"""Points for engagement: the daily check-in (签到) with streak rewards, and behaviours (share, review, profile,
survey, ...) with caps. Pure: the program's rules, what the member already earned this day and month, and the local
date come in; points and their explanation go out.

Rules, all in the program's time zone:
  check-in   once per member per calendar day. The streak counts consecutive days; a missed day starts it again
             at 1. A day earns `points`, plus `streak_bonus[n]` on the n-th consecutive day (e.g. {"7": 20}: a
             bonus on the 7th day of a run; the run goes on counting after it).
  behaviour  `points` per (behaviour, reference): the same review of one order earns once. `once` behaviours
             (profile completed, first survey) earn once per member, ever. Caps are in points: `daily_cap` and
             `monthly_cap` per behaviour, and the program's `behaviour_monthly_cap` across all behaviours. A
             grant that would pass a cap is cut down to what is left under it (possibly 0); the member still
             gets an answer, with `capped` naming the cap.
"""

import calendar
from datetime import UTC, date, datetime, time
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator

Points = Annotated[int, Field(ge=0, le=1_000_000, strict=True)]
BehaviourName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]


class CheckInRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    points: Points = Field(description="points for each day's check-in")
    streak_bonus: dict[str, Points] = Field(
        default_factory=dict,
        max_length=100,
        description='extra points on the n-th consecutive day, e.g. {"7": 20, "30": 100}',
    )

    @field_validator("streak_bonus")
    @classmethod
    def _days(cls, value: dict[str, int]) -> dict[str, int]:
        for day in value:
            if not day.isdigit() or not 1 <= int(day) <= 366:
                raise ValueError(f"streak day {day!r} must be a whole number from 1 to 366")
        return value


class BehaviourRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    points: Annotated[int, Field(ge=1, le=1_000_000, strict=True)]
    daily_cap: Points | None = Field(default=None, description="points this behaviour may earn a member per day")
    monthly_cap: Points | None = Field(default=None, description="points it may earn a member per calendar month")
    once: bool = Field(default=False, description="earns once per member, ever (profile completed, first survey)")


def local_day(at: datetime, timezone: str) -> date:
    return at.astimezone(ZoneInfo(timezone)).date()


def birthday_in(birthday: date, year: int) -> date:
    """The member's birthday in a year; 29 February is kept on 28 February in other years."""
    if (birthday.month, birthday.day) == (2, 29) and not calendar.isleap(year):
        return date(year, 2, 28)
    return birthday.replace(year=year)


def is_birthday(birthday: date | None, at: datetime, timezone: str) -> bool:
    """Whether `at` falls on the member's birthday in the program's time zone."""
    if birthday is None:
        return False
    day = local_day(at, timezone)
    return birthday_in(birthday, day.year) == day


def next_birthday(birthday: date, on_or_after: date) -> date:
    this_year = birthday_in(birthday, on_or_after.year)
    return this_year if this_year >= on_or_after else birthday_in(birthday, on_or_after.year + 1)


def day_starts(day: date, timezone: str) -> datetime:
    """The instant (UTC) a local day begins."""
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def next_month_start(after: date) -> date:
    """The first day of the month after `after`'s: when monthly benefits are next given (a program that starts
    offering them mid-month, or on the 1st itself, starts on the next 1st)."""
    return date(after.year + after.month // 12, after.month % 12 + 1, 1)


def streak(yesterdays: int) -> int:
    """The streak a check-in today makes: one more than yesterday's (0 when the member did not check in
    yesterday, so a missed day starts again at 1)."""
    return yesterdays + 1


class CheckInPoints(BaseModel):
    model_config = ConfigDict(frozen=True)

    base: int
    bonus: int

    @property
    def total(self) -> int:
        return self.base + self.bonus


def check_in_points(rule: CheckInRule, streak_days: int) -> CheckInPoints:
    return CheckInPoints(base=rule.points, bonus=rule.streak_bonus.get(str(streak_days), 0))


class Cap(BaseModel):
    """One limit a grant must stay within: its name, the points allowed, and those already earned under it."""

    model_config = ConfigDict(frozen=True)

    name: str
    limit: int
    used: int


class Capped(BaseModel):
    model_config = ConfigDict(frozen=True)

    points: int  # what is granted
    capped_by: str | None  # the cap that cut it down, if any


def within_caps(points: int, caps: list[Cap]) -> Capped:
    """As many of `points` as every cap leaves room for; the tightest cap is named when it cuts the grant."""
    granted, capped_by = points, None
    for cap in caps:
        room = max(cap.limit - cap.used, 0)
        if room < granted:
            granted, capped_by = room, cap.name
    return Capped(points=granted, capped_by=capped_by)
