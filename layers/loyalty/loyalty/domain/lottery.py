"""The points lottery (积分抽奖): a published prize table, and the pure draw that follows from it.

A draw is decided by one random value from `secrets` (256 bits, stored with the draw): `roll = value mod the
table's total weight` picks the prize whose cumulative weight first exceeds the roll. A prize out of stock (or a
coupon the template can no longer give) falls back to the lottery's consolation prize, whose stock is unlimited. So
anyone holding the table and the draw's value can check its prize; `proof` is a digest of both and the outcome.
Each day's digest (over its draws' proofs, in draw-id order) is chained to the days before, from the table's
digest, and published, so no draw can be added, removed or changed afterwards unseen.
"""

import hashlib
import json
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from loyalty.domain.orders import Identifier

PrizeKind = Literal["points", "coupon", "goods", "nothing"]
MAX_PRIZES = 20


class Prize(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prize_id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
    kind: PrizeKind
    points: Annotated[int, Field(ge=1, le=10_000_000, strict=True)] | None = None
    template_id: Identifier | None = None
    item_id: Identifier | None = None
    weight: Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)]
    stock: Annotated[int, Field(ge=0, le=100_000_000, strict=True)] | None = Field(
        default=None, description="how many can be won in all (absent: unlimited)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "Prize":
        needs = {"points": "points", "coupon": "template_id", "goods": "item_id"}.get(self.kind)
        if needs and getattr(self, needs) is None:
            raise ValueError(f"{needs}: a {self.kind} prize needs it")
        return self


class LotteryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    cost_points: Annotated[int, Field(ge=1, le=10_000_000, strict=True)]
    daily_limit: Annotated[int, Field(ge=1, le=1000, strict=True)] = Field(description="draws per member per day")
    total_limit: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] | None = None
    from_: AwareDatetime | None = Field(default=None, alias="from")
    until: AwareDatetime | None = None
    prizes: Annotated[list[Prize], Field(min_length=1, max_length=MAX_PRIZES)]
    consolation: str = Field(description="the prize given when the one drawn is out of stock; its stock is unlimited")

    @model_validator(mode="after")
    def _consistent(self) -> "LotteryRequest":
        ids = [p.prize_id for p in self.prizes]
        if len(set(ids)) != len(ids):
            raise ValueError("prizes: each prize_id once")
        if sum(p.weight for p in self.prizes) <= 0:
            raise ValueError("prizes: the weights must not all be 0")
        consolation = next((p for p in self.prizes if p.prize_id == self.consolation), None)
        if consolation is None:
            raise ValueError("consolation: must be one of the prizes' prize_id")
        if consolation.stock is not None:
            raise ValueError("consolation: its prize must have no stock limit (it is what a draw falls back to)")
        if self.from_ and self.until and self.until <= self.from_:
            raise ValueError("until: must be after from")
        return self


class Lottery(BaseModel):
    model_config = ConfigDict(frozen=True)

    lottery_id: str
    name: str
    cost_points: int
    daily_limit: int
    total_limit: int | None = None
    starts: datetime | None = None
    until: datetime | None = None
    prizes: list[Prize]
    consolation: str
    created_at: datetime

    def prize(self, prize_id: str) -> Prize:
        return next(p for p in self.prizes if p.prize_id == prize_id)

    def table_digest(self) -> str:
        """The published table (prizes, weights, stock, consolation) as a digest a draw's proof refers to."""
        table = {"prizes": [p.model_dump() for p in self.prizes], "consolation": self.consolation}
        return _digest(table)

    def why_not(self, at: datetime) -> str | None:
        if self.starts is not None and at < self.starts:
            return "this lottery has not started"
        if self.until is not None and at >= self.until:
            return "this lottery has ended"
        return None


def odds(lottery: Lottery, out_of_stock: set[str]) -> dict[str, tuple[int, int]]:
    """Each prize's chance now, as (weight, total weight): a prize out of stock has none, and its weight goes to
    the consolation, exactly as a draw applies it."""
    total = sum(p.weight for p in lottery.prizes)
    weights = {p.prize_id: (0 if p.prize_id in out_of_stock else p.weight) for p in lottery.prizes}
    weights[lottery.consolation] += sum(p.weight for p in lottery.prizes if p.prize_id in out_of_stock)
    return {prize_id: (weight, total) for prize_id, weight in weights.items()}


class Outcome(BaseModel):
    model_config = ConfigDict(frozen=True)

    roll: int  # the value modulo the total weight
    drawn: str  # the prize the roll picked
    prize: str  # the prize given: `drawn`, or the consolation when `drawn` could not be given
    fell_back: str | None = None  # why the consolation was given instead


def pick(lottery: Lottery, value: str, unavailable: dict[str, str]) -> Outcome:
    """The prize a random `value` (hex) draws from the table; `unavailable` maps prizes that cannot be given now
    (out of stock, their coupon gone) to why, and those fall back to the consolation."""
    total = sum(p.weight for p in lottery.prizes)
    roll = int(value, 16) % total
    cumulative = 0
    drawn = lottery.consolation
    for prize in lottery.prizes:
        cumulative += prize.weight
        if roll < cumulative:
            drawn = prize.prize_id
            break
    why = unavailable.get(drawn)
    if why is not None:
        return Outcome(roll=roll, drawn=drawn, prize=lottery.consolation, fell_back=why)
    return Outcome(roll=roll, drawn=drawn, prize=drawn)


def proof(lottery: Lottery, draw_id: str, member_id: str, value: str, outcome: Outcome) -> str:
    """What a verifier recomputes: the table's digest, the draw, its random value and what it gave."""
    return _digest(
        {
            "table": lottery.table_digest(),
            "lottery_id": lottery.lottery_id,
            "draw_id": draw_id,
            "member_id": member_id,
            "value": value,
            **outcome.model_dump(),
        }
    )


def day_digest(proofs: list[tuple[str, str]]) -> str:
    """A day's digest: over its draws' (draw id, proof), in draw-id order."""
    running = hashlib.sha256()
    for draw_id, draw_proof in sorted(proofs):
        running.update(f"{draw_id}:{draw_proof}\n".encode())
    return running.hexdigest()


def chain(previous: str, day: str) -> str:
    """The chain after a day: each day's digest bound to every day before it (and, first, to the table)."""
    return hashlib.sha256(f"{previous}:{day}".encode()).hexdigest()


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()).hexdigest()
