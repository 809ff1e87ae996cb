"""The audit trail: an entry for every write an API caller makes, in the same transaction as the write.

While a request is answered, `recording(scope)` is in force: every transaction the store commits gets one more
action, a Put of an entry saying who (the key, or the member's pseudonym), what (method, route, the path's
targets, and the kinds of items written) and when. A single-item write is sent as a transaction of two for the
same reason, so nothing is written without its entry and no entry exists for a write that failed. Entries are
never updated or deleted (IAM cannot tell them apart; nothing in the code writes to them again).

Entries live in AUDIT_SHARDS partitions per shop and UTC day (a busy shop's trail is not one hot key); `page`
merges them in time order.
"""

import base64
import binascii
import json
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from loyalty.domain.errors import InvalidInput
from loyalty.domain.ledger import iso
from loyalty.store import dynamo
from loyalty.store.dynamo import Dynamo, Item, Transaction
from loyalty.store.keys import AUDIT_SHARDS, audit_pk


@dataclass
class AuditScope:
    """What is known of the request being answered: who and what."""

    actor: dict[str, Any]
    method: str
    route: str
    target: dict[str, str]
    request_id: str
    at: datetime
    member_ref: str | None = None
    written: int = 0

    def add_entry(self, tx: Transaction) -> None:
        """Add this request's entry for the transaction's writes (the shop is the one every key carries)."""
        if not tx.actions:
            return
        first = next(iter(tx.actions[0].values()))
        key = first.get("Item") or first.get("Key") or {}
        shop_id = str(key.get("PK", {}).get("S", "")).split("#")[1]
        changes = Counter(
            f"{kind} {_kind_of(action)}"
            for entry in tx.actions
            for kind, action in entry.items()
            if kind != "ConditionCheck"
        )
        self.written += 1
        tx.put(
            {
                "PK": audit_pk(shop_id, self.at.date(), random.randrange(AUDIT_SHARDS)),  # noqa: S311 (spread, not secret)
                "SK": f"{iso(self.at)}#{self.request_id}#{self.written}",
                "type": "audit",
                "at": iso(self.at),
                "actor": self.actor,
                "actor_id": self.actor.get("key_id") or self.actor.get("member_ref") or self.actor["kind"],
                "member_ref": self.member_ref,
                "method": self.method,
                "route": self.route,
                "target": self.target,
                "changes": dict(changes),
                "request_id": self.request_id,
            },
            condition="attribute_not_exists(PK)",
        )


def _kind_of(action: dict[str, Any]) -> str:
    """An item's kind, from its sort key's first part (LEDGER, LOT, PROFILE ...): never a member's data."""
    key = action.get("Item") or action.get("Key") or {}
    return str(key.get("SK", {}).get("S", "")).split("#")[0]


@contextmanager
def recording(scope: AuditScope) -> Iterator[AuditScope]:
    token = dynamo.AUDIT.set(scope)
    try:
        yield scope
    finally:
        dynamo.AUDIT.reset(token)


# ---------------------------------------------------------------- reading the trail


@dataclass(frozen=True)
class AuditFilter:
    since: datetime
    until: datetime
    actor_id: str | None = None
    member_ref: str | None = None

    def expression(self) -> tuple[str | None, Item]:
        """The FilterExpression and its values that keep only the entries of this actor and member."""
        conditions, values = [], {}
        if self.actor_id:
            conditions.append("actor_id = :actor")
            values[":actor"] = self.actor_id
        if self.member_ref:
            conditions.append("member_ref = :member")
            values[":member"] = self.member_ref
        return " AND ".join(conditions) or None, values


def page(
    db: Dynamo, shop_id: str, which: AuditFilter, *, limit: int, cursor: str | None
) -> tuple[list[Item], str | None]:
    """A page of entries in time order, oldest first, and the cursor of the next page (None at the end). Each
    day's shards are read in step: a shard is read on until it has `limit` candidates or has none left, so the
    first `limit` of the merge are the next entries whatever the others hold."""
    day, after = _cursor(cursor) if cursor else (which.since.date(), {})
    low, high = iso(which.since), iso(which.until) + "~"
    kept = which.expression()
    found: list[Item] = []
    while day <= which.until.date() and len(found) < limit:
        need = limit - len(found)
        candidates: list[tuple[str, int, Item]] = []
        drained = True
        for shard in range(AUDIT_SHARDS):
            items, more = _read(db, audit_pk(shop_id, day, shard), low, high, after.get(shard), need, kept)
            drained = drained and not more
            candidates += [(item["SK"], shard, item) for item in items]
        candidates.sort(key=lambda candidate: candidate[0])
        taken = candidates[:need]
        for sk, shard, item in taken:
            after[shard] = sk
            found.append(item)
        if drained and len(taken) == len(candidates):
            day, after = day + timedelta(days=1), {}
    more = day <= which.until.date()
    return found, _encode(day, after) if more else None


def _read(
    db: Dynamo, pk: str, low: str, high: str, after: str | None, need: int, kept: tuple[str | None, Item]
) -> tuple[list[Item], bool]:
    """Up to `need` entries of one partition after `after` that the filter `kept` keeps, and whether any may be
    left."""
    items: list[Item] = []
    start = {"PK": pk, "SK": after} if after else None
    while len(items) < need:
        got, start = db.query_between(pk, low, high, limit=need, start=start, filter=kept[0], values=kept[1])
        items += got
        if start is None:
            return items, False
    return items, True


def _encode(day: date, after: dict[int, str]) -> str:
    raw = json.dumps({"day": day.isoformat(), "after": after}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _cursor(cursor: str) -> tuple[date, dict[int, str]]:
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        after = {int(shard): str(sk) for shard, sk in raw["after"].items()}
        if any(not 0 <= shard < AUDIT_SHARDS for shard in after):
            raise ValueError("shard")
        return date.fromisoformat(raw["day"]), after
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise InvalidInput("not a cursor this API returned", field="next") from exc
