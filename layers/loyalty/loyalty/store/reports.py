"""A shop's figures as the aggregator keeps them, and how far it has applied the table's stream.

| item                    | PK                                  | SK                      |
|-------------------------|-------------------------------------|-------------------------|
| day's figures (shard)   | SHOP#<shop>#REPORT#<n>              | DAY#<local date>        |
| figures to date (shard) | SHOP#<shop>#REPORT#<n>              | TOTAL                   |
| stream shard applied    | STREAM#<stream shard id>            | AGGREGATED              |
| member's RFM, segment   | SHOP#<shop>#MEMBER#<member>         | RFM (store/segments.py) |

Each figure is an attribute of its item (`points_issued`, `tier:gold`, ...), moved with ADD. Every aggregator
transaction writes its figures to one of REPORT_SHARDS shards, so concurrent aggregators (one per stream shard)
rarely write the same item and no shop's day is one hot key; reading a shop's figures reads every shard.

A stream shard's `AGGREGATED` item holds the sequence number of its last record applied: like a scheduled run's
state, it belongs to no shop (a stream shard carries every shop's changes), and one aggregator at a time writes
it (Lambda reads a stream shard in order, one batch at a time). A member's RFM item (store/segments.py) is moved
in the same transaction as the figures its changes make.
"""

from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

from loyalty.domain.reports import Change, Deltas, padded
from loyalty.store.dynamo import Dynamo, Item, Transaction, deserialise
from loyalty.store.segments import RFM_SK

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


def stream_pk(stream_shard: str) -> str:
    return f"STREAM#{stream_shard}"


def marks(db: Dynamo, stream_shard: str, member_pks: set[str]) -> tuple[Item | None, dict[str, Item]]:
    """Where the stream shard was last applied, and the RFM item of each member (one strongly consistent
    BatchGetItem)."""
    keys = [(stream_pk(stream_shard), AGGREGATED_SK)] + [(pk, RFM_SK) for pk in sorted(member_pks)]
    found = db.get_many(keys, consistent=True)
    rfm = {pk: item for (pk, sk), item in found.items() if sk == RFM_SK}
    return found.get((stream_pk(stream_shard), AGGREGATED_SK)), rfm


def add_applied(tx: Transaction, stream_shard: str, *, seq: str, before: Item | None) -> None:
    """Move the stream shard's mark to `seq`, conditioned on the mark it was read with (an earlier delivery of the
    same records that got there first refuses the transaction, which then reads again)."""
    values: dict[str, Any] = {":seq": seq, ":type": "stream_mark"}
    if before is None:
        condition = "attribute_not_exists(seq)"
    else:
        condition = "seq = :before"
        values[":before"] = before["seq"]
    tx.update(
        {"PK": stream_pk(stream_shard), "SK": AGGREGATED_SK},
        "SET seq = :seq, #type = :type",
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
