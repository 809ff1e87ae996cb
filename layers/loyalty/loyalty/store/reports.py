"""A shop's figures as the aggregator keeps them, and where each partition's stream was last applied.

| item                   | PK                                  | SK                      |
|------------------------|-------------------------------------|-------------------------|
| day's figures (shard)  | SHOP#<shop>#REPORT#<n>              | DAY#<local date>        |
| figures to date (shard)| SHOP#<shop>#REPORT#<n>              | TOTAL                   |
| stream applied         | <the changed partition's own PK>    | AGGREGATED              |

Each figure is an attribute of its item (`points_issued`, `tier:gold`, ...), moved with ADD. Every aggregator
transaction writes its figures to one of REPORT_SHARDS shards, so concurrent aggregators (one per stream shard)
rarely write the same item and no shop's day is one hot key; reading a shop's figures reads every shard.

`AGGREGATED` in a partition holds the sequence number of its last change applied (a stream's records of one
partition come in order, in one shard), and the last local day its member was counted active.
"""

from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime
from typing import Any

from loyalty.domain.reports import Change, Deltas, padded
from loyalty.store.dynamo import Dynamo, Item, Transaction, deserialise

REPORT_SHARDS = 8
AGGREGATED_SK = "AGGREGATED"
TOTAL_SK = "TOTAL"
DAY_PREFIX = "DAY#"


def report_pk(shop_id: str, shard: int) -> str:
    return f"SHOP#{shop_id}#REPORT#{shard}"


def change_of(record: Mapping[str, Any]) -> Change:
    """A DynamoDB stream record, as Lambda delivers it, as the aggregator's Change."""
    stream = record["dynamodb"]
    old, new = stream.get("OldImage"), stream.get("NewImage")
    return Change(
        pk=str(deserialise(stream["Keys"])["PK"]),
        seq=padded(str(stream["SequenceNumber"])),
        old=deserialise(old) if old else None,
        new=deserialise(new) if new else None,
        at=datetime.fromtimestamp(float(stream.get("ApproximateCreationDateTime", 0)), UTC),
    )


def applied(db: Dynamo, pks: Iterable[str]) -> dict[str, Item]:
    """Each partition's AGGREGATED item (absent for a partition never applied), read strongly."""
    found = db.get_many([(pk, AGGREGATED_SK) for pk in pks], consistent=True)
    return {pk: item for (pk, _), item in found.items()}


def add_applied(tx: Transaction, pk: str, *, seq: str, before: Item | None, active_day: date | None) -> None:
    """Move a partition's mark to `seq`, conditioned on the mark it was read with (a concurrent or earlier
    application of the same records refuses the transaction, which then reads again)."""
    values: dict[str, Any] = {":seq": seq, ":type": "aggregated"}
    sets = ["seq = :seq", "#type = :type"]
    if active_day is not None:
        sets.append("active_day = :day")
        values[":day"] = active_day.isoformat()
    if before is None:
        condition = "attribute_not_exists(seq)"
    else:
        condition = "seq = :before"
        values[":before"] = before["seq"]
    tx.update(
        {"PK": pk, "SK": AGGREGATED_SK},
        "SET " + ", ".join(sets),
        values=values,
        condition=condition,
        names={"#type": "type"},
    )


def add_figures(tx: Transaction, shop_id: str, shard: int, deltas: Deltas) -> None:
    """ADD a shop's deltas to its day items and its totals, in one shard."""
    by_sk: dict[str, dict[str, int]] = {}
    for (day, name), amount in deltas.items():
        for sk in (DAY_PREFIX + day.isoformat(), TOTAL_SK):
            row = by_sk.setdefault(sk, {})
            row[name] = row.get(name, 0) + amount
    for sk, row in sorted(by_sk.items()):
        moved = {name: amount for name, amount in row.items() if amount}
        if not moved:
            continue
        names = {f"#f{n}": name for n, name in enumerate(moved)}
        values: dict[str, Any] = {f":v{n}": amount for n, amount in enumerate(moved.values())}
        values[":type"] = "report"
        names["#type"] = "type"
        tx.update(
            {"PK": report_pk(shop_id, shard), "SK": sk},
            "ADD " + ", ".join(f"#f{n} :v{n}" for n in range(len(moved))) + " SET #type = :type",
            values=values,
            names=names,
        )


def items_touched(deltas_by_shop: Mapping[str, Deltas]) -> int:
    """How many report items ADDing these deltas writes (a transaction holds at most 100 actions)."""
    return sum(len({day for day, _ in deltas}) + 1 for deltas in deltas_by_shop.values())


def _figures(item: Item) -> dict[str, int]:
    return {
        name: int(value)
        for name, value in item.items()
        if name not in ("PK", "SK", "type") and isinstance(value, int) and not isinstance(value, bool)
    }


def totals(db: Dynamo, shop_id: str) -> dict[str, int]:
    """The shop's figures to date: its shards' totals added up (one BatchGetItem)."""
    found = db.get_many([(report_pk(shop_id, shard), TOTAL_SK) for shard in range(REPORT_SHARDS)])
    out: dict[str, int] = {}
    for item in found.values():
        for name, value in _figures(item).items():
            out[name] = out.get(name, 0) + value
    return out


def days_from(db: Dynamo, shop_id: str, first: date) -> dict[date, dict[str, int]]:
    """The shop's figures of each day from `first` on (one Query per shard, paged)."""
    out: dict[date, dict[str, int]] = {}
    for shard in range(REPORT_SHARDS):
        start: Item | None = None
        while True:
            items, start = db.query_between(
                report_pk(shop_id, shard), DAY_PREFIX + first.isoformat(), DAY_PREFIX + "~", limit=400, start=start
            )
            for item in items:
                day = date.fromisoformat(str(item["SK"]).removeprefix(DAY_PREFIX))
                row = out.setdefault(day, {})
                for name, value in _figures(item).items():
                    row[name] = row.get(name, 0) + value
            if start is None:
                break
    return out
