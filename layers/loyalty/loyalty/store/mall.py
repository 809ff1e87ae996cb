"""The points mall: items (in their shop's partition), their stock (split over up to 16 shards, so a flash exchange
is not one hot key; an exchange takes its units from one or more of them), each member's count per item, and
exchanges (in the member's partition, found by id through a small look-up item)."""

import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loyalty.domain.ledger import Draw, iso
from loyalty.domain.mall import Exchange, Item
from loyalty.domain.members import Member
from loyalty.store.coupons import stock_split
from loyalty.store.dynamo import ConditionFailed, Dynamo, Transaction, model_of
from loyalty.store.dynamo import Item as Record
from loyalty.store.keys import (
    EXCHANGE_PREFIX,
    EXCHANGE_SK,
    MALL_COUNT_PREFIX,
    MALL_ITEM_PREFIX,
    PROFILE_SK,
    PUBLISH_JOB,
    STOCK_SK,
    due_keys,
    exchange_pk,
    idempotency_key,
    mall_stock_pk,
    member_of,
    member_pk,
    shop_pk,
)
from loyalty.store.members import member_from_item


def create_item(db: Dynamo, shop_id: str, item: Item, shards: int) -> None:
    """The item and its stock shards, in one transaction."""
    tx = db.transaction()
    tx.put(
        {
            "PK": shop_pk(shop_id),
            "SK": f"{MALL_ITEM_PREFIX}{item.item_id}",
            "type": "mall_item",
            **item.model_dump(mode="json", exclude_none=True),
            "stock_shards": shards,
        },
        condition="attribute_not_exists(PK)",
    )
    for shard, cap in enumerate(stock_split(item.stock, shards)):
        tx.put(
            {
                "PK": mall_stock_pk(shop_id, item.item_id, shard),
                "SK": STOCK_SK,
                "type": "mall_stock",
                "left": cap,
                "exchanged": 0,
                "cancelled": 0,
                "points": 0,
            },
            condition="attribute_not_exists(PK)",
        )
    db.commit(tx)


def get_item(db: Dynamo, shop_id: str, item_id: str) -> tuple[Item, int] | None:
    """The item and how many stock shards it has."""
    found = db.get(shop_pk(shop_id), f"{MALL_ITEM_PREFIX}{item_id}", consistent=False)
    return (model_of(Item, found), int(found["stock_shards"])) if found else None


def items_page(
    db: Dynamo, shop_id: str, *, limit: int, cursor: str | None
) -> tuple[list[tuple[Item, int]], str | None]:
    """A page of the shop's items (each with its stock shards), and the cursor of the next page."""
    found, next_cursor = db.cursor_page(shop_pk(shop_id), MALL_ITEM_PREFIX, limit=limit, cursor=cursor)
    return [(model_of(Item, record), int(record["stock_shards"])) for record in found], next_cursor


@dataclass(frozen=True)
class ExchangeState:
    """What an exchange is decided on, read at once: an earlier answer to its key, the member, the stock."""

    replay: Record | None
    member: Member | None
    stock: dict[int, Record]


def exchange_state(db: Dynamo, shop_id: str, member_id: str, item_id: str, shards: int, key: str) -> ExchangeState:
    """An exchange's reads in one BatchGetItem (strongly consistent, as its conditions will be)."""
    earlier = idempotency_key(shop_id, member_id, "exchange", key)
    profile = (member_pk(shop_id, member_id), PROFILE_SK)
    shard_keys = _stock_keys(shop_id, item_id, shards)
    found = db.get_many([earlier, profile, *shard_keys], consistent=True)
    member = found.get(profile)
    return ExchangeState(
        replay=found.get(earlier),
        member=member_from_item(member) if member else None,
        stock={n: found[key] for n, key in enumerate(shard_keys) if key in found},
    )


def units_left(db: Dynamo, shop_id: str, items: list[tuple[Item, int]]) -> dict[str, int]:
    """Units left of each item (with its stock shards), read together: a catalogue page in one or a few reads."""
    keys = {item.item_id: _stock_keys(shop_id, item.item_id, shards) for item, shards in items}
    found = db.get_many([key for shard_keys in keys.values() for key in shard_keys])
    return {
        item_id: sum(int(found.get(key, {}).get("left", 0)) for key in shard_keys)
        for item_id, shard_keys in keys.items()
    }


def stock(db: Dynamo, shop_id: str, item_id: str, shards: int) -> dict[int, Record]:
    """Each shard's stock item (`left`, and the report's counters), in one read."""
    keys = _stock_keys(shop_id, item_id, shards)
    found = db.get_many(keys)
    return {n: found[key] for n, key in enumerate(keys) if key in found}


def _stock_keys(shop_id: str, item_id: str, shards: int) -> list[tuple[str, str]]:
    return [(mall_stock_pk(shop_id, item_id, n), STOCK_SK) for n in range(shards)]


@dataclass(frozen=True)
class ExchangeActions:
    """Where an exchange's conditions sit in its transaction, to tell which refused it."""

    stock: list[int]
    limit: int


def add_exchange(
    tx: Transaction,
    shop_id: str,
    exchange: Exchange,
    *,
    takes: dict[int, int],
    limit: int | None,
    draws: list[Draw],
    shards: int,
) -> ExchangeActions:
    """Add an exchange to `tx`: its units from stock shards (`takes`: shard -> units, none taken below zero), the
    member's count for the item (never past `limit`), the exchange itself with the shards and lots it drew from
    (a cancellation gives back to them) and its look-up by id. The exchange is listed in the outbox (the due
    index's publish job) until its mall.exchange.changed is published."""
    per_unit = exchange.points // exchange.quantity
    stock = [
        tx.update(
            {"PK": mall_stock_pk(shop_id, exchange.item_id, shard), "SK": STOCK_SK},
            "ADD #left :minus, exchanged :q, points :points",
            values={":minus": -take, ":q": take, ":points": take * per_unit},
            condition="#left >= :q",
            names={"#left": "left"},
        )
        for shard, take in sorted(takes.items())
    ]
    member = member_pk(shop_id, exchange.member_id)
    values: dict[str, Any] = {":q": exchange.quantity, ":type": "mall_count"}
    condition = None
    if limit is not None:
        values[":most"] = limit - exchange.quantity
        condition = "attribute_not_exists(units) OR units <= :most"
    counted = tx.update(
        {"PK": member, "SK": f"{MALL_COUNT_PREFIX}{exchange.item_id}"},
        "ADD units :q SET #type = :type",
        values=values,
        condition=condition,
        names={"#type": "type"},
    )
    sk = _exchange_sk(exchange)
    due_pk_, due_sk_ = due_keys(PUBLISH_JOB, exchange.at, member, shards, sk, now=exchange.at)
    tx.put(
        {
            "PK": member,
            "SK": sk,
            "DuePK": due_pk_,
            "DueSK": due_sk_,
            "type": "exchange",
            **exchange.model_dump(mode="json", exclude_none=True),
            "takes": {str(shard): take for shard, take in takes.items()},
            "draws": [d.model_dump() for d in draws],
        }
    )
    tx.put(
        {
            "PK": exchange_pk(shop_id, exchange.exchange_id),
            "SK": EXCHANGE_SK,
            "member_id": exchange.member_id,
            "sk": sk,
        },
        condition="attribute_not_exists(PK)",
    )
    return ExchangeActions(stock=stock, limit=counted)


def get_exchange(db: Dynamo, shop_id: str, exchange_id: str) -> tuple[Exchange, dict[int, int], list[Draw]] | None:
    """The exchange, the units it took from each stock shard, and the lots it drew from."""
    pointer = db.get(exchange_pk(shop_id, exchange_id), EXCHANGE_SK)
    if pointer is None:
        return None
    found = db.get(member_pk(shop_id, pointer["member_id"]), pointer["sk"])
    if found is None:
        return None
    takes = {int(shard): int(take) for shard, take in found["takes"].items()}
    return model_of(Exchange, found), takes, [Draw.model_validate(d) for d in found.get("draws", [])]


def member_exchanges(
    db: Dynamo, shop_id: str, member_id: str, *, limit: int, cursor: str | None
) -> tuple[list[Exchange], str | None]:
    """A page of the member's exchanges, newest first, and the cursor of the next page."""
    pk = member_pk(shop_id, member_id)
    found, next_cursor = db.cursor_page(pk, EXCHANGE_PREFIX, limit=limit, cursor=cursor, newest_first=True)
    return [model_of(Exchange, record) for record in found], next_cursor


def add_status(
    tx: Transaction,
    shop_id: str,
    exchange: Exchange,
    to: str,
    at: datetime,
    *,
    takes: dict[int, int],
    shards: int,
) -> None:
    """Move the exchange to `to`, if it is still as read, listing it in the outbox again; a cancellation also
    returns its units to the stock shards they came from and takes them off the member's count."""
    pk, sk = member_pk(shop_id, exchange.member_id), _exchange_sk(exchange)
    due_pk_, due_sk_ = due_keys(PUBLISH_JOB, at, pk, shards, sk, now=at)
    tx.update(
        {"PK": pk, "SK": sk},
        "SET #status = :to, history = list_append(history, :step), DuePK = :due_pk, DueSK = :due_sk",
        values={
            ":to": to,
            ":from": exchange.status,
            ":step": [{"status": to, "at": iso(at)}],
            ":due_pk": due_pk_,
            ":due_sk": due_sk_,
        },
        condition="#status = :from",
        names={"#status": "status"},
    )
    if to != "cancelled":
        return
    for shard, take in sorted(takes.items()):
        tx.update(
            {"PK": mall_stock_pk(shop_id, exchange.item_id, shard), "SK": STOCK_SK},
            "ADD #left :q, cancelled :q",
            values={":q": take},
            names={"#left": "left"},
        )
    tx.update(
        {"PK": member_pk(shop_id, exchange.member_id), "SK": f"{MALL_COUNT_PREFIX}{exchange.item_id}"},
        "ADD units :minus",
        values={":minus": -exchange.quantity},
    )


def mark_published(db: Dynamo, shop_id: str, view: dict[str, Any]) -> None:
    """Take the exchange (as the API shows it: its member, time, id and status) out of the outbox, if it is still
    at the status just published (a later move lists it again, for its own event)."""
    with contextlib.suppress(ConditionFailed):  # moved on meanwhile: its next event is the one to publish
        db.update(
            member_pk(shop_id, view["member_id"]),
            f"{EXCHANGE_PREFIX}{view['at']}#{view['exchange_id']}",
            "REMOVE DuePK, DueSK",
            condition="#status = :published",
            values={":published": view["status"]},
            names={"#status": "status"},
        )


def unpublished_exchange(db: Dynamo, pk: str, sk: str) -> tuple[str, Exchange] | None:
    """An exchange still in the outbox (its last step not yet published): its shop and itself, or None."""
    found = db.get(pk, sk)
    if found is None or "DuePK" not in found:
        return None
    shop_id, _ = member_of(pk)
    return shop_id, model_of(Exchange, found)


def _exchange_sk(exchange: Exchange) -> str:
    return f"{EXCHANGE_PREFIX}{iso(exchange.at)}#{exchange.exchange_id}"
