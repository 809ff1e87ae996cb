"""The points account: every change to a member's points, whatever caused it, is one `Move`.

A move says what happens to the balance (available, pending, debt), which lots are created, drawn from or given
back, and the ledger entries that explain it. The store writes any move the same way (store/points.py), inside the
transaction that records its cause (an order's state, a redemption's key, an expired lot, a check-in). Because
every operation below builds its entries and its lot changes together,

    available == Σ entry.points == Σ lot.remaining − debt

holds by construction. Pure: balances, lots and time come in, a move goes out.
"""

from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from loyalty.domain.errors import InsufficientPoints
from loyalty.domain.expiry import expires_at, is_expired
from loyalty.domain.ledger import Balance, Draw, LedgerEntry, Lot, draw, lot_part, returned_to

if TYPE_CHECKING:
    from loyalty.domain.program import Program

# Which of the balance's figures a move was computed from, weakest first; the write requires them unchanged.
Reads = Literal["nothing", "debt", "all"]
_STRENGTH: dict[str, int] = {"nothing": 0, "debt": 1, "all": 2}


class Move(BaseModel):
    model_config = ConfigDict(frozen=True)

    available: int = 0
    pending: int = 0
    debt: int = 0
    lots: list[Lot] = []  # new lots
    returned: list[Lot] = []  # points given back to lots like those they were spent from (created or grown)
    draws: list[Draw] = []  # taken from lots; a lot drawn to nothing is removed
    entries: list[LedgerEntry] = []
    reads: Reads = "nothing"
    at_least: int = 0  # available points the member must hold when it is written (a spend never overdraws)

    def __add__(self, other: "Move") -> "Move":
        """Both moves at once (one event may earn and spend)."""
        return Move(
            available=self.available + other.available,
            pending=self.pending + other.pending,
            debt=self.debt + other.debt,
            lots=self.lots + other.lots,
            returned=self.returned + other.returned,
            draws=self.draws + other.draws,
            entries=self.entries + other.entries,
            reads=max(self.reads, other.reads, key=_STRENGTH.__getitem__),
            at_least=max(self.at_least, other.at_least),
        )


def repay_first(balance: Balance, points: int) -> tuple[int, int]:
    """New available points repay any debt first. Returns (debt repaid, points left to form a lot)."""
    repaid = min(balance.debt, points)
    return repaid, points - repaid


def grant(
    balance: Balance,
    points: int,
    *,
    reason: str,
    reference: str,
    at: datetime,
    source: str,
    earned_at: datetime,
    expires_at: datetime | None,
    detail: dict[str, Any] | None = None,
    pending: int = 0,
    lot_reference: str | None = None,
) -> Move:
    """Points that are available now: they repay debt first, the rest form one lot (expiring by the source's
    policy). `pending` moves points out of pending in the same entry (an order's return window closing). The
    lot names `lot_reference` (default: the entry's reference), e.g. the order a refund event's points came from."""
    repaid, lot_points = repay_first(balance, points)
    detail = dict(detail or {})
    if repaid:
        detail["debt_repaid"] = repaid
    lots = []
    if lot_points > 0:
        lot_ref = lot_reference or reference
        lots.append(
            Lot(
                lot_id=Lot.make_id(expires_at, earned_at, source, lot_ref),
                remaining=lot_points,
                granted=lot_points,
                expires_at=expires_at,
                earned_at=earned_at,
                source=source,
                reference=lot_ref,
            )
        )
    entry = LedgerEntry(points=points, pending=pending, reason=reason, reference=reference, at=at, detail=detail)
    return Move(available=points, pending=pending, debt=-repaid, lots=lots, entries=[entry], reads="debt")


def grant_behaviour(
    program: "Program",
    balance: Balance,
    points: int,
    *,
    reason: str,
    reference: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> Move:
    """Points earned by anything but a purchase (a check-in, a behaviour, a birthday, a referral, a lottery
    prize): available at once, as a `behaviour` lot expiring by the program's policy for such points."""
    return grant(
        balance,
        points,
        reason=reason,
        reference=reference,
        at=at,
        source="behaviour",
        earned_at=at,
        expires_at=expires_at(program.expiry_rule("behaviour"), at, program.timezone),
        detail=detail,
    )


def hold(points: int, *, reason: str, reference: str, at: datetime, detail: dict[str, Any]) -> Move:
    """Points earned but not yet available (an order inside its return window)."""
    entry = LedgerEntry(points=0, pending=points, reason=reason, reference=reference, at=at, detail=detail)
    return Move(pending=points, entries=[entry])


def spend(
    balance: Balance,
    lots: list[Lot],
    points: int,
    *,
    reason: str,
    reference: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
    field: str = "points",
) -> Move:
    """Spend available points, oldest-expiring lot first (a redemption)."""
    draws = spend_draws(balance, lots, points, field=field)
    detail = {**(detail or {}), "draws": [d.model_dump() for d in draws]}
    entry = LedgerEntry(points=-points, reason=reason, reference=reference, at=at, detail=detail)
    return Move(available=-points, draws=draws, entries=[entry], reads="all", at_least=points)


def give_back(
    balance: Balance,
    draws: list[Draw],
    *,
    reason: str,
    reference: str,
    at: datetime,
    detail: dict[str, Any] | None = None,
) -> Move:
    """Give back whole what a spend took (its `draws`): any debt is repaid first, the rest goes to lots like those
    it came from (the same expiry and earning date, last drawn first back), so a cancelled exchange's points
    expire as they would have."""
    points = sum(spent.take for spent in draws)
    repaid, left = repay_first(balance, points)
    lots: dict[str, Lot] = {}
    for spent in reversed(draws):
        give = min(spent.take, left)
        left -= give
        if give:
            returned_to(lots, spent.lot_id, give, reference)
    entry = LedgerEntry(points=points, reason=reason, reference=reference, at=at, detail=detail or {})
    return Move(available=points, debt=-repaid, returned=list(lots.values()), entries=[entry], reads="debt")


def spend_draws(balance: Balance, lots: list[Lot], points: int, *, field: str = "points") -> list[Draw]:
    """What spending `points` takes from which lots: never more than the balance, whatever the lots say."""
    if points > balance.available:
        raise InsufficientPoints(f"{points} points requested, {max(balance.available, 0)} available", field=field)
    draws, shortfall = draw(lots, points)
    if shortfall:
        # The lots disagree with the balance: a concurrent change between the two reads. The caller re-reads.
        raise InsufficientPoints(f"lots cover {points - shortfall} of {points} points", field=field)
    return draws


def lapse(lot: Lot, at: datetime) -> Move | None:
    """Remove what is left of a lot past its expiry; None if it is not (yet) expired or is empty."""
    if not is_expired(lot.expires_at, at) or lot.remaining <= 0:
        return None
    assert lot.expires_at is not None
    entry = LedgerEntry(
        points=-lot.remaining,
        reason="points.expired",
        reference=lot.reference,
        at=at,
        detail={
            "lot_id": lot.lot_id,
            "source": lot.source,
            "granted": lot.granted,
            "expires_at": lot.expires_at.isoformat(),
        },
        part=lot_part(lot),  # two lots of one reference (points given back from two lots) may lapse at once
    )
    taken = Draw(lot_id=lot.lot_id, take=lot.remaining, remaining_before=lot.remaining)
    return Move(available=-lot.remaining, draws=[taken], entries=[entry])


def lapse_together(lots: list[Lot], at: datetime) -> Move | None:
    """What is left of several lots of one member past their expiry, as one move with one ledger entry: with
    `end_of_next_year`, a member's whole year of lots lapses at one instant, and one entry (naming each lot's source,
    reference and points) explains it as well as one per lot did. None if none is expired with points left."""
    due = [lot for lot in lots if lot.remaining > 0 and is_expired(lot.expires_at, at)]
    if len(due) <= 1:
        return lapse(due[0], at) if due else None
    first = due[0]
    assert first.expires_at is not None
    points = sum(lot.remaining for lot in due)
    entry = LedgerEntry(
        points=-points,
        reason="points.expired",
        reference=first.reference,
        at=at,
        detail={
            "expires_at": first.expires_at.isoformat(),
            "lots": [{"source": lot.source, "reference": lot.reference, "points": lot.remaining} for lot in due],
        },
        # The first lot is in no other group: its part, marked as a group's, tells this entry from any other.
        part=f"{lot_part(first)}+{len(due) - 1}",
    )
    draws = [Draw(lot_id=lot.lot_id, take=lot.remaining, remaining_before=lot.remaining) for lot in due]
    return Move(available=-points, draws=draws, entries=[entry])
