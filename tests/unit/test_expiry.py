from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from loyalty.domain.expiry import ExpiryRule, expires_at, expiring_soon, is_expired
from loyalty.domain.ledger import Lot
from loyalty.domain.points import lapse, lapse_together

END_OF_NEXT_YEAR = ExpiryRule(policy="end_of_next_year")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("earned", "zone", "expected"),
    [
        # Shanghai is UTC+8: the second before local midnight on 31 Dec still belongs to 2026 ...
        (utc(2026, 12, 31, 15, 59, 59), "Asia/Shanghai", utc(2027, 12, 31, 15, 59, 59)),
        # ... and the next second is 1 Jan 2027 there, so its points last a year longer.
        (utc(2026, 12, 31, 16, 0, 0), "Asia/Shanghai", utc(2028, 12, 31, 15, 59, 59)),
        (utc(2026, 12, 31, 23, 59, 59), "UTC", utc(2027, 12, 31, 23, 59, 59)),
        (utc(2027, 1, 1, 0, 0, 0), "UTC", utc(2028, 12, 31, 23, 59, 59)),
        # New York is behind UTC: 1 Jan 03:00 UTC is still 31 Dec there.
        (utc(2027, 1, 1, 3, 0, 0), "America/New_York", utc(2028, 1, 1, 4, 59, 59)),
    ],
)
def test_end_of_next_year_is_local(earned: datetime, zone: str, expected: datetime) -> None:
    assert expires_at(END_OF_NEXT_YEAR, earned, zone) == expected


@pytest.mark.parametrize(
    ("earned", "days", "expected"),
    [
        (utc(2028, 2, 29, 12), 365, utc(2029, 2, 28, 23, 59, 59)),  # from a leap day
        (utc(2028, 2, 28, 12), 1, utc(2028, 2, 29, 23, 59, 59)),  # onto a leap day
        (utc(2027, 2, 28, 12), 1, utc(2027, 3, 1, 23, 59, 59)),  # no leap day
        (utc(2026, 11, 23, 23, 59, 59), 90, utc(2027, 2, 21, 23, 59, 59)),  # the second before midnight
    ],
)
def test_days_run_to_the_end_of_the_last_day(earned: datetime, days: int, expected: datetime) -> None:
    assert expires_at(ExpiryRule(policy="days", days=days), earned, "UTC") == expected


def test_days_end_at_local_midnight() -> None:
    # Earned 2026-11-23 20:00 UTC = 24 Nov 04:00 in Shanghai; 90 days on is 22 Feb 2027, to 23:59:59 there.
    assert expires_at(ExpiryRule(policy="days", days=90), utc(2026, 11, 23, 20), "Asia/Shanghai") == utc(
        2027, 2, 22, 15, 59, 59
    )


def test_never() -> None:
    assert expires_at(ExpiryRule(), utc(2026, 1, 1), "UTC") is None
    assert not is_expired(None, utc(2999, 1, 1))


def test_rules_are_validated() -> None:
    with pytest.raises(ValidationError):
        ExpiryRule(policy="days")
    with pytest.raises(ValidationError):
        ExpiryRule(policy="never", days=3)


def lot(lot_id: str, remaining: int, expires: datetime | None) -> Lot:
    return Lot(
        lot_id=lot_id,
        remaining=remaining,
        granted=100,
        expires_at=expires,
        earned_at=utc(2026, 1, 1),
        source="purchase",
        reference=lot_id,
    )


def test_a_lot_is_valid_through_its_last_second() -> None:
    last = utc(2027, 12, 31, 15, 59, 59)
    assert lapse(lot("a", 40, last), last) is None
    move = lapse(lot("a", 40, last), last + timedelta(microseconds=1))
    assert move is not None and [(d.lot_id, d.take) for d in move.draws] == [("a", 40)] and move.available == -40
    entry = move.entries[0]
    assert (entry.points, entry.reason, entry.reference) == (-40, "points.expired", "a")
    assert lapse(lot("b", 40, None), utc(2999, 1, 1)) is None


def test_lots_of_one_instant_lapse_as_one_move_with_one_entry() -> None:
    last = utc(2027, 12, 31, 15, 59, 59)
    after = last + timedelta(seconds=1)
    lots = [lot("a", 40, last), lot("b", 0, last), lot("c", 25, last), lot("d", 10, None)]
    move = lapse_together(lots, after)
    assert move is not None and move.available == -65
    assert [(d.lot_id, d.take, d.remaining_before) for d in move.draws] == [("a", 40, 40), ("c", 25, 25)]
    [entry] = move.entries  # the empty lot and the one that never expires are not in it
    assert (entry.points, entry.reason, entry.reference) == (-65, "points.expired", "a")
    assert entry.detail["lots"] == [
        {"source": "purchase", "reference": "a", "points": 40},
        {"source": "purchase", "reference": "c", "points": 25},
    ]
    assert entry.part.endswith("+1")  # apart from the entry lapsing lot "a" alone
    assert lapse_together(lots, last) is None  # valid through the last second
    assert lapse_together([lot("a", 40, last)], after) == lapse(lot("a", 40, last), after)  # one lot: as ever
    assert lapse_together([], after) is None


def test_expiring_soon_groups_by_instant() -> None:
    first, second = utc(2027, 12, 31, 15, 59, 59), utc(2028, 12, 31, 15, 59, 59)
    lots = [lot("a", 10, first), lot("b", 5, first), lot("c", 7, second), lot("d", 100, None)]
    assert expiring_soon(lots) == [(15, first), (7, second)]
