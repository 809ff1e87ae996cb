"""Gift card batches, cards (under their code's digest), the redemption counters and members' attempts."""

import os
from datetime import datetime, timedelta
from typing import Any

from loyalty.domain.cards import ATTEMPTS_PER_HOUR, Card, RateLimited
from loyalty.domain.ledger import iso
from loyalty.store import aws
from loyalty.store.dynamo import ConditionFailed, Dynamo, Item, Transaction, model_of
from loyalty.store.keys import (
    CARD_BATCH_PREFIX,
    CARD_COUNT_SHARDS,
    CARD_SK,
    CARD_TRIES_PREFIX,
    COUNT_SK,
    card_count_pk,
    card_pk,
    digest,
    member_pk,
    shop_pk,
)

# Cards written per transaction, with the batch's progress marker and its audit entry (a transaction holds at
# most 100 actions).
CHUNK = 98


def get_batch(db: Dynamo, shop_id: str, batch_id: str) -> Item | None:
    return db.get(shop_pk(shop_id), f"{CARD_BATCH_PREFIX}{batch_id}")


def batches(db: Dynamo, shop_id: str) -> list[Item]:
    return list(db.query_all(shop_pk(shop_id), CARD_BATCH_PREFIX))


def create_batch(db: Dynamo, shop_id: str, batch: Item, now: datetime) -> bool:
    """The batch's own item, before its cards; False if it exists already."""
    item = {
        "PK": shop_pk(shop_id),
        "SK": f"{CARD_BATCH_PREFIX}{batch['batch_id']}",
        "type": "card_batch",
        **batch,
        "chunks_done": 0,
        "created_at": iso(now),
    }
    try:
        db.put(item, condition="attribute_not_exists(PK)")
    except ConditionFailed:
        return False
    return True


def write_chunk(db: Dynamo, shop_id: str, batch_id: str, chunk: int, cards: list[tuple[str, Card]]) -> None:
    """Cards `chunk` of a batch (by normalised code) and the batch's progress, in one transaction: a repeated or
    resumed creation never writes a chunk twice (so never resets a card already redeemed)."""
    tx = db.transaction()
    tx.update(
        {"PK": shop_pk(shop_id), "SK": f"{CARD_BATCH_PREFIX}{batch_id}"},
        "SET chunks_done = :next",
        values={":next": chunk + 1, ":this": chunk},
        condition="chunks_done = :this",
    )
    for code, card in cards:
        tx.put(
            {"PK": card_pk(shop_id, code), "SK": CARD_SK, "type": "card", **card.model_dump(mode="json")},
            condition="attribute_not_exists(PK)",
        )
    db.commit(tx)


def get_card(db: Dynamo, shop_id: str, code: str) -> Card | None:
    item = db.get(card_pk(shop_id, code), CARD_SK)
    return model_of(Card, item) if item else None


def add_redemption(
    tx: Transaction, shop_id: str, code: str, card: Card, member_id: str, now: datetime, shard: int
) -> None:
    """The card redeemed by `member_id` (only if it is still as read), and its batch's counters."""
    tx.update(
        {"PK": card_pk(shop_id, code), "SK": CARD_SK},
        "SET #status = :redeemed, redeemed_by = :member, redeemed_at = :now, version = version + :one",
        values={":redeemed": "redeemed", ":member": member_id, ":now": iso(now), ":one": 1, ":v": card.version},
        condition="version = :v",
        names={"#status": "status"},
    )
    tx.update(
        {"PK": card_count_pk(shop_id, card.batch_id, shard), "SK": COUNT_SK},
        "ADD redeemed :one, redeemed_value :value SET #type = :type",
        values={":one": 1, ":value": card.value, ":type": "card_count"},
        names={"#type": "type"},
    )


def add_transfer(
    tx: Transaction, shop_id: str, code: str, card: Card, sender: str, receiver: str, now: datetime
) -> None:
    tx.update(
        {"PK": card_pk(shop_id, code), "SK": CARD_SK},
        "SET holder = :to, transferred_from = :from, transferred_at = :now, version = version + :one",
        values={":to": receiver, ":from": sender, ":now": iso(now), ":one": 1, ":v": card.version},
        condition="version = :v",
    )


def redeemed_counts(db: Dynamo, shop_id: str, batch_id: str) -> tuple[int, int]:
    """(cards redeemed, their value) of a batch, added over its counter shards."""
    keys = [(card_count_pk(shop_id, batch_id, shard), COUNT_SK) for shard in range(CARD_COUNT_SHARDS)]
    found = db.get_many(keys, consistent=True).values()
    return sum(int(item.get("redeemed", 0)) for item in found), sum(
        int(item.get("redeemed_value", 0)) for item in found
    )


def count_attempt(db: Dynamo, shop_id: str, member_id: str, now: datetime) -> None:
    """One more attempt at a card by this member this hour; RateLimited past the limit. Counted before the code is
    looked at, so wrong codes count as much as right ones (the counter expires by TTL)."""
    hour = now.strftime("%Y-%m-%dT%H")
    values: dict[str, Any] = {
        ":one": 1,
        ":limit": ATTEMPTS_PER_HOUR,
        ":type": "card_attempts",
        ":ttl": int((now + timedelta(days=1)).timestamp()),
    }
    try:
        db.update(
            member_pk(shop_id, member_id),
            f"{CARD_TRIES_PREFIX}{hour}",
            "ADD tries :one SET #type = :type, #ttl = :ttl",
            values=values,
            condition="attribute_not_exists(tries) OR tries < :limit",
            names={"#type": "type", "#ttl": "ttl"},
        )
    except ConditionFailed as exc:
        raise RateLimited(f"at most {ATTEMPTS_PER_HOUR} card attempts an hour; try again later", field="code") from exc


def code_reference(batch_id: str, code: str) -> str:
    """How a ledger names a card without its code: the batch and the start of the code's digest."""
    return f"{batch_id}.{digest(code)[:12]}"


class CardSecret:
    """The deployment's secret the codes are derived from (Secrets Manager, `CARD_SECRET_ARN`), read once per
    container, on the first card request."""

    def __init__(self, arn: str | None = None) -> None:
        self.arn = arn
        self._value: bytes | None = None

    def get(self) -> bytes:
        if self._value is None:
            arn = self.arn or os.environ.get("CARD_SECRET_ARN")
            if not arn:
                raise RuntimeError("CARD_SECRET_ARN is not set: gift cards need the deployment's card secret")
            secrets = aws.client("secretsmanager")
            answer = aws.call("secretsmanager", secrets.get_secret_value, SecretId=arn)
            self._value = str(answer["SecretString"]).encode()
        return self._value
