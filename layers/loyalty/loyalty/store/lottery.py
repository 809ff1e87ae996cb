"""Lotteries (in their shop's partition), the stock of their limited prizes, their report counters and audit
listing (each split over LOTTERY_SHARDS partitions), each member's draw counters and draws."""

import zlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from loyalty.domain.ledger import iso
from loyalty.domain.lottery import Lottery
from loyalty.domain.members import Member
from loyalty.store.dynamo import Dynamo, Transaction, model_of
from loyalty.store.dynamo import Item as Record
from loyalty.store.keys import (
    DRAW_PREFIX,
    DRAWS_PREFIX,
    LOTTERY_DIGEST_JOB,
    LOTTERY_PREFIX,
    LOTTERY_SHARDS,
    PROFILE_SK,
    REPORT_SK,
    STOCK_SK,
    due_keys,
    idempotency_key,
    lottery_pk,
    member_pk,
    shop_pk,
)
from loyalty.store.members import member_from_item


def _prize_pk(shop_id: str, lottery_id: str, prize_id: str) -> str:
    return f"{lottery_pk(shop_id, lottery_id)}#PRIZE#{prize_id}"


def _report_pk(shop_id: str, lottery_id: str, shard: int) -> str:
    return f"{lottery_pk(shop_id, lottery_id)}#REPORT#{shard}"


def _audit_pk(shop_id: str, lottery_id: str, day: date, shard: int) -> str:
    return f"{lottery_pk(shop_id, lottery_id)}#DAY#{day.isoformat()}#{shard}"


def audit_line_keys(shop_id: str, draw: Record) -> list[tuple[str, str]]:
    """Where a member's draw (its item) may have its line in the lottery's audit listing: under the local day it
    was drawn on, which is within a day of its UTC date whatever the program's time zone."""
    at = datetime.fromisoformat(str(draw["at"]).replace("Z", "+00:00")).date()
    shard = zlib.crc32(str(draw["draw_id"]).encode()) % LOTTERY_SHARDS
    days = (at - timedelta(days=1), at, at + timedelta(days=1))
    return [(_audit_pk(shop_id, str(draw["lottery_id"]), day, shard), str(draw["draw_id"])) for day in days]


CHAIN_SK = "CHAIN"
DIGEST_PREFIX = "DIGEST#"


def create(
    db: Dynamo, shop_id: str, lottery: Lottery, *, first_day: date, first_due: datetime, now: datetime, shards: int
) -> None:
    """The lottery, the stock of each limited prize, and its digest chain filed for its first day (due when that
    day is over; its genesis is the prize table's digest), in one transaction."""
    tx = db.transaction()
    pk = lottery_pk(shop_id, lottery.lottery_id)
    due_pk_, due_sk_ = due_keys(LOTTERY_DIGEST_JOB, first_due, pk, shards, CHAIN_SK, now=now)
    tx.put(
        {
            "PK": pk,
            "SK": CHAIN_SK,
            "type": "lottery_chain",
            "day": first_day.isoformat(),
            "chain": lottery.table_digest(),
            "DuePK": due_pk_,
            "DueSK": due_sk_,
        },
        condition="attribute_not_exists(PK)",
    )
    tx.put(
        {
            "PK": shop_pk(shop_id),
            "SK": f"{LOTTERY_PREFIX}{lottery.lottery_id}",
            "type": "lottery",
            **lottery.model_dump(mode="json", exclude_none=True),
        },
        condition="attribute_not_exists(PK)",
    )
    for prize in lottery.prizes:
        if prize.stock is not None:
            tx.put(
                {"PK": _prize_pk(shop_id, lottery.lottery_id, prize.prize_id), "SK": STOCK_SK, "left": prize.stock},
                condition="attribute_not_exists(PK)",
            )
    db.commit(tx)


def get(db: Dynamo, shop_id: str, lottery_id: str) -> Lottery | None:
    found = db.get(shop_pk(shop_id), f"{LOTTERY_PREFIX}{lottery_id}", consistent=False)
    return model_of(Lottery, found) if found else None


def out_of_stock(db: Dynamo, shop_id: str, lottery: Lottery) -> set[str]:
    """The limited prizes with none left, in one read."""
    return draw_state(db, shop_id, None, lottery, None, None).out_of_stock


@dataclass(frozen=True)
class DrawState:
    """What a draw is decided on, read at once: an earlier answer to its key, the member, their draws today and in
    all, and the limited prizes with none left."""

    replay: Record | None
    member: Member | None
    today: int
    in_all: int
    out_of_stock: set[str]


def draw_state(
    db: Dynamo, shop_id: str, member_id: str | None, lottery: Lottery, day: date | None, key: str | None
) -> DrawState:
    """A draw's reads in one BatchGetItem (strongly consistent, as its conditions will be); without a member,
    only the prizes' stock."""
    stock = {
        p.prize_id: (_prize_pk(shop_id, lottery.lottery_id, p.prize_id), STOCK_SK)
        for p in lottery.prizes
        if p.stock is not None
    }
    keys = list(stock.values())
    earlier = profile = today = in_all = None
    if member_id is not None and day is not None and key is not None:
        pk = member_pk(shop_id, member_id)
        earlier = idempotency_key(shop_id, member_id, "draw", key)
        profile = (pk, PROFILE_SK)
        today = (pk, f"{DRAWS_PREFIX}{lottery.lottery_id}#{day.isoformat()}")
        in_all = (pk, f"{DRAWS_PREFIX}{lottery.lottery_id}")
        keys += [earlier, profile, today, in_all]
    found = db.get_many(keys, consistent=True) if keys else {}
    member = found.get(profile) if profile else None
    return DrawState(
        replay=found.get(earlier) if earlier else None,
        member=member_from_item(member) if member else None,
        today=int(found.get(today, {}).get("count", 0)) if today else 0,
        in_all=int(found.get(in_all, {}).get("count", 0)) if in_all else 0,
        out_of_stock={prize for prize, k in stock.items() if int(found.get(k, {}).get("left", 0)) <= 0},
    )


@dataclass(frozen=True)
class DrawActions:
    """Where a draw's conditions sit in its transaction, to tell which refused it."""

    daily: int
    total: int | None
    stock: int | None


def add_draw(
    tx: Transaction,
    shop_id: str,
    lottery: Lottery,
    draw: dict[str, Any],
    *,
    day: date,
    at: datetime,
    limited_prize: str | None,
) -> DrawActions:
    """Add a draw to `tx`: the member's counters for the day and in all (never past the limits), a unit of a
    limited prize (never below zero), the report's counters, the draw, and its line in the day's audit listing."""
    member = member_pk(shop_id, draw["member_id"])
    lottery_id, draw_id = lottery.lottery_id, draw["draw_id"]
    daily = _count(tx, member, f"{DRAWS_PREFIX}{lottery_id}#{day.isoformat()}", lottery.daily_limit)
    total = None
    if lottery.total_limit is not None:
        total = _count(tx, member, f"{DRAWS_PREFIX}{lottery_id}", lottery.total_limit)
    stock = None
    if limited_prize is not None:
        stock = tx.update(
            {"PK": _prize_pk(shop_id, lottery_id, limited_prize), "SK": STOCK_SK},
            "ADD #left :minus",
            values={":minus": -1, ":one": 1},
            condition="#left >= :one",
            names={"#left": "left"},
        )
    shard = zlib.crc32(draw_id.encode()) % LOTTERY_SHARDS
    tx.update(
        {"PK": _report_pk(shop_id, lottery_id, shard), "SK": REPORT_SK},
        "ADD draws :one, points :cost, #won :one",
        values={":one": 1, ":cost": lottery.cost_points},
        names={"#won": f"won_{draw['prize_id']}"},
    )
    tx.put({"PK": member, "SK": f"{DRAW_PREFIX}{iso(at)}#{draw_id}", "type": "draw", **draw})
    audit = {k: draw[k] for k in ("draw_id", "member_id", "prize_id", "proof")}
    tx.put({"PK": _audit_pk(shop_id, lottery_id, day, shard), "SK": draw_id, "type": "draw_audit", **audit})
    return DrawActions(daily=daily, total=total, stock=stock)


def _count(tx: Transaction, pk: str, sk: str, limit: int) -> int:
    """One more draw on a counter, never past `limit`."""
    return tx.update(
        {"PK": pk, "SK": sk},
        "ADD #count :one",
        values={":one": 1, ":limit": limit},
        condition="attribute_not_exists(#count) OR #count < :limit",
        names={"#count": "count"},
    )


def member_draws(
    db: Dynamo, shop_id: str, member_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Record], str | None]:
    """A page of the member's draws, newest first, and the cursor of the next page."""
    pk = member_pk(shop_id, member_id)
    found, next_cursor = db.cursor_page(pk, DRAW_PREFIX, limit=limit, cursor=cursor, newest_first=True)
    return [{k: v for k, v in r.items() if k not in ("PK", "SK", "type")} for r in found], next_cursor


def report(db: Dynamo, shop_id: str, lottery_id: str) -> dict[str, Any]:
    """The report's counters summed over their shards."""
    keys = [(_report_pk(shop_id, lottery_id, n), REPORT_SK) for n in range(LOTTERY_SHARDS)]
    draws = points = 0
    won: dict[str, int] = {}
    for item in db.get_many(keys, consistent=True).values():
        draws += int(item.get("draws", 0))
        points += int(item.get("points", 0))
        for name, count in item.items():
            if name.startswith("won_"):
                won[name.removeprefix("won_")] = won.get(name.removeprefix("won_"), 0) + int(count)
    return {"draws": draws, "points": points, "won": won}


def chain_state(db: Dynamo, shop_id: str, lottery_id: str) -> tuple[date, str] | None:
    """The next day to digest and the chain so far."""
    found = db.get(lottery_pk(shop_id, lottery_id), CHAIN_SK)
    return (date.fromisoformat(found["day"]), str(found["chain"])) if found else None


def add_digest(
    tx: Transaction,
    shop_id: str,
    lottery_id: str,
    record: dict[str, Any],
    *,
    following: tuple[date, datetime] | None,
    now: datetime,
    shards: int,
) -> None:
    """Record a day's digest and move the chain on to `following` (the next day and when it is over), or off the
    due index when the lottery has ended; conditioned on the day still being the one filed."""
    pk = lottery_pk(shop_id, lottery_id)
    tx.put({"PK": pk, "SK": f"{DIGEST_PREFIX}{record['day']}", "type": "lottery_digest", **record})
    values: dict[str, Any] = {":handled": record["day"], ":chain": record["chain"]}
    if following is None:
        expression = "SET chain = :chain REMOVE DuePK, DueSK"
    else:
        due_pk_, due_sk_ = due_keys(LOTTERY_DIGEST_JOB, following[1], pk, shards, CHAIN_SK, now=now)
        expression = "SET chain = :chain, #day = :next, DuePK = :due_pk, DueSK = :due_sk"
        values |= {":next": following[0].isoformat(), ":due_pk": due_pk_, ":due_sk": due_sk_}
    tx.update({"PK": pk, "SK": CHAIN_SK}, expression, values=values, condition="#day = :handled", names={"#day": "day"})


def get_digest(db: Dynamo, shop_id: str, lottery_id: str, day: date) -> Record | None:
    found = db.get(lottery_pk(shop_id, lottery_id), f"{DIGEST_PREFIX}{day.isoformat()}", consistent=False)
    return {k: v for k, v in found.items() if k not in ("PK", "SK", "type")} if found else None


def day_proofs(db: Dynamo, shop_id: str, lottery_id: str, day: date) -> list[tuple[str, str]]:
    """Every draw of the lottery on `day` (the program's local day): (draw id, proof)."""
    proofs = []
    for shard in range(LOTTERY_SHARDS):
        for item in db.query_all(_audit_pk(shop_id, lottery_id, day, shard), "drw_"):
            proofs.append((str(item["draw_id"]), str(item["proof"])))
    return proofs
