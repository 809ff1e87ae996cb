"""Balances, lots and ledger entries: the rules that make every balance explainable.

Invariants (checked by tests after every operation):
  member.available == sum(entry.points)  == sum(lot.remaining) - member.debt
  member.pending   == sum(entry.pending) == sum(order.pending)
A debt exists only when every lot is empty (clawback drew them all first), and new points repay it
before they form a lot. Points are spent and clawed back oldest-expiring lot first.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

NEVER = "~never"  # sorts after every ISO date, so lots that never expire are spent last


def iso(instant: datetime) -> str:
    """Fixed-width UTC ISO-8601 with microseconds: sorts as text in time order."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# Instants we are sent (an order's paid_at, a coupon's window) are business times. One far outside these bounds is a
# sender's mistake, and date arithmetic on it (expiry a year ahead, a tier window a year back) would overflow.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def _business_range(value: datetime) -> datetime:
    if not EARLIEST <= value < LATEST:
        raise ValueError(f"must be from {EARLIEST.year} to {LATEST.year - 1}")
    return value


BusinessTime = Annotated[AwareDatetime, AfterValidator(_business_range)]


class Balance(BaseModel):
    model_config = ConfigDict(frozen=True)

    available: int = 0
    pending: int = 0
    debt: int = 0


class Lot(BaseModel):
    """One grant of available points and what is left of it."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    remaining: int = Field(ge=0)
    granted: int = Field(ge=0)
    expires_at: datetime | None = None
    earned_at: datetime
    source: str
    reference: str

    @staticmethod
    def make_id(expires_at: datetime | None, earned_at: datetime, source: str, reference: str) -> str:
        return f"{iso(expires_at) if expires_at else NEVER}#{iso(earned_at)}#{source}#{reference}"


def returned_to(lots: dict[str, "Lot"], spent_from: str, points: int, reference: str) -> None:
    """Add `points` given back to `lots` (by id): to a lot like the one they were spent from (`spent_from`, a lot
    id), keeping its expiry and earning date, its source `returned` and its reference `reference`. Points given back
    from several draws of lots alike go to one lot."""
    expiry_text, earned_text, _ = spent_from.split("#", 2)
    expiry = None if expiry_text == NEVER else _instant(expiry_text)
    earned_at = _instant(earned_text)
    lot_id = Lot.make_id(expiry, earned_at, "returned", reference)
    before = lots.get(lot_id)
    size = points + (before.remaining if before else 0)
    lots[lot_id] = Lot(
        lot_id=lot_id,
        remaining=size,
        granted=size,
        expires_at=expiry,
        earned_at=earned_at,
        source="returned",
        reference=reference,
    )


def lot_part(lot: "Lot") -> str:
    """What tells a lot apart from the others of its expiry and reference (its earning instant and source): the
    `part` of the entry that lapses it."""
    return f"{lot.earned_at.strftime('%Y%m%dT%H%M%S%f')}.{lot.source}"


def given_back(draws: list["Draw"], amount: int, *, skip: int, reference: str) -> list["Lot"]:
    """Lots for `amount` given back of what `draws` took: last drawn, first back, each like the lot it was drawn
    from (`returned_to`). `skip`: how much of the draws, counted from the last, earlier give-backs returned."""
    found: dict[str, Lot] = {}
    for spent in reversed(draws):
        skipped = min(skip, spent.take)
        skip -= skipped
        give = min(spent.take - skipped, amount)
        amount -= give
        if give:
            returned_to(found, spent.lot_id, give, reference)
    return list(found.values())


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Draw(BaseModel):
    """Points taken from one lot; `remaining_before` guards against a concurrent change."""

    model_config = ConfigDict(frozen=True)

    lot_id: str
    take: int = Field(gt=0)
    remaining_before: int


class LedgerEntry(BaseModel):
    """One change to a member's points and why. `points` changes available, `pending` changes pending."""

    model_config = ConfigDict(frozen=True)

    points: int
    pending: int = 0
    reason: str
    reference: str
    at: datetime
    detail: dict[str, Any] = Field(default_factory=dict)
    # Tells apart entries of one instant, reason and reference in the ledger's keys: a lapse names its lot, since two
    # lots of one reference (points given back from two lots) may lapse in the same run. Empty for most entries.
    part: str = ""


def draw(lots: list[Lot], amount: int, *, first: str | None = None) -> tuple[list[Draw], int]:
    """Take `amount` from lots, the `first` lot before the rest, then oldest-expiring first.

    Returns the draws and the shortfall that the lots could not cover.
    """
    ordered = sorted(lots, key=lambda lot: (lot.lot_id != first, lot.lot_id))
    draws: list[Draw] = []
    left = amount
    for lot in ordered:
        if left <= 0:
            break
        take = min(lot.remaining, left)
        if take > 0:
            draws.append(Draw(lot_id=lot.lot_id, take=take, remaining_before=lot.remaining))
            left -= take
    return draws, left
