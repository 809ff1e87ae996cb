"""Items the expire-points run reads against the lots due, as the table grows tenfold.

    make bench        (python -m bench.expiry_reads)

Fills a table with N members, each with a profile, one order and its lot; 1% of the lots are past their expiry, the rest
expire years later. Then runs expire-points and prints the items it read (index entries returned and items got)
against the lots due, for N = 10,000 and N = 100,000. A run that scanned, or read per member, would grow ten times;
ours reads one index entry per lot due, so the ratio stays near 1 at both sizes.

On moto, one process, with the local stack's patch (infra/local/moto_patches.py): a transaction backs up the
items it touches, not whole tables, so the run's time does not grow with the table.
"""

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.local.offline import use_in_process_moto

use_in_process_moto()

import boto3
from boto3.dynamodb.types import TypeSerializer
from moto import mock_aws

from infra.local import moto_patches
from infra.local.resources import table_definition
from loyalty.domain.ledger import Lot, iso
from loyalty.domain.program import Program
from loyalty.runtime import Services
from loyalty.service.runs import ShardWork
from loyalty.store.dynamo import Dynamo
from loyalty.store.keys import EXPIRE_JOB, ORDER_SK, PROFILE_SK, due_keys, lot_sk, member_pk, order_pk

RUN_AT = datetime(2027, 1, 1, 0, 0, 1, tzinfo=UTC)
DUE_AT = datetime(2026, 12, 31, 15, 59, 59, tzinfo=UTC)
LATER = datetime(2029, 12, 31, 15, 59, 59, tzinfo=UTC)
SHARDS = 32  # template.yaml's DueShards default
serializer = TypeSerializer()


def fill(table: str, shop_id: str, members: int, due_every: int) -> int:
    """Members with one lot each, written the way the store writes them (keys and due index included)."""
    client = boto3.client("dynamodb")
    batch: list[dict[str, Any]] = []
    due = 0
    for n in range(members):
        member_id = f"m{n:06d}"
        pk = member_pk(shop_id, member_id)
        expires = DUE_AT if n % due_every == 0 else LATER
        due += expires == DUE_AT
        earned = expires - timedelta(days=400)
        lot = Lot(
            lot_id=Lot.make_id(expires, earned, "purchase", f"o{n}"),
            remaining=100,
            granted=100,
            expires_at=expires,
            earned_at=earned,
            source="purchase",
            reference=f"o{n}",
        )
        lot_item = {
            "PK": pk,
            "SK": lot_sk(lot.lot_id),
            "type": "lot",
            **lot.model_dump(mode="json", exclude={"lot_id"}),
        }
        lot_item["DuePK"], lot_item["DueSK"] = due_keys(EXPIRE_JOB, expires, pk, SHARDS, lot_item["SK"], now=earned)
        profile = {
            "PK": pk,
            "SK": PROFILE_SK,
            "type": "member",
            "member_id": member_id,
            "enrolled_at": iso(earned),
            "available": 100,
            "pending": 0,
            "debt": 0,
            "qualifying": {},
            "rev": 0,
        }
        order = {
            "PK": order_pk(shop_id, f"o{n}"),
            "SK": ORDER_SK,
            "type": "order",
            "order_id": f"o{n}",
            "version": 1,
            "paid": True,
            "member_id": member_id,
            "credited": 100,
            "lot_sk": lot.lot_id,
        }
        batch += [profile, lot_item, order]
        if len(batch) >= 24 or n == members - 1:
            client.batch_write_item(
                RequestItems={
                    table: [
                        {"PutRequest": {"Item": {k: serializer.serialize(v) for k, v in item.items()}}}
                        for item in batch
                    ]
                }
            )
            batch = []
    return due


def measure(members: int) -> dict[str, Any]:
    name = f"bench-expiry-{members}"
    boto3.client("dynamodb").create_table(**table_definition(table_name=name))
    # The night of the run is "today": a first run looks back a week from it (8 days x SHARDS partitions).
    service = Services(Dynamo(name), shards=SHARDS, cache_seconds=3600, clock=lambda: RUN_AT)
    shop_id = service.shops.create_shop("Bench")["shop_id"]
    service.shops.set_program(shop_id, Program(timezone="Asia/Shanghai"))
    due = fill(name, shop_id, members, due_every=100)
    service.db.requests.clear()
    service.db.items_read = 0
    # The run as on AWS: one worker per day-shard (ExpirePointsShardFunction), here one after another.
    works = [
        ShardWork(job="expire-points", time=iso(RUN_AT), day=day, shard=shard)
        for day in service.runs._days_due("expire-points", RUN_AT)
        for shard in range(SHARDS)
    ]
    began = time.perf_counter()
    worker_seconds: list[float] = []
    applied = 0
    for work in works:
        started = time.perf_counter()
        report = service.runs.expire_shard(work, service.points, service.wallet)
        assert report.complete, report
        if report.applied:
            worker_seconds.append(time.perf_counter() - started)
        applied += report.applied
    seconds = time.perf_counter() - began
    assert applied == due, (applied, due)
    # Every due member is now at 0, every other still at 100: the balances add up.
    lapsed = service.members.member(shop_id, "m000000")
    kept = service.members.member(shop_id, "m000001")
    assert lapsed is not None and kept is not None
    assert (lapsed.balance.available, kept.balance.available) == (0, 100)
    return {
        "members": members,
        "items": 3 * members,
        "due": due,
        "read": service.db.items_read,
        "requests": dict(service.db.requests),
        "seconds": seconds,
        "per_worker": applied / sum(worker_seconds),  # lots per second of a worker that had lots due
    }


def main() -> None:
    moto_patches.apply()
    with mock_aws():
        rows = [measure(10_000), measure(100_000)]
    print("expire-points: items read against lots due (moto, in process)")
    print(f"{'members':>8} {'table items':>12} {'lots due':>9} {'items read':>11} {'read/due':>9}  requests")
    for row in rows:
        requests = ", ".join(f"{op} {n}" for op, n in sorted(row["requests"].items()))
        print(
            f"{row['members']:>8} {row['items']:>12} {row['due']:>9} {row['read']:>11} "
            f"{row['read'] / row['due']:>9.3f}  {requests}"
        )
    small, large = (row["read"] / row["due"] for row in rows)
    print(f"\nread/due, 10x table against 1x: {large / small:.3f} (flat is 1.000; the target is read/due <= 1.05)")
    rates = ", ".join(f"{row['per_worker']:.0f}" for row in rows)
    print(f"\nlots per second per worker, measured here on moto: {rates}")
    night(rows[-1]["per_worker"])


def night(measured: float) -> None:
    """Projected wall time of a year-end night on AWS: every lot due is in one day's shards, one worker each."""
    # Per worker on AWS: one TransactWriteItems per lot, sequential: ~20 ms each (p50 10-25 ms), 50 lots/s. Each
    # lapse also removes one entry from its shard's index partition (one write unit): a partition takes 1,000
    # writes/s, so no worker can go faster than that however it is written.
    aws_rate = min(1 / 0.020, 1000.0)
    print("\nyear-end night on AWS, projected: wall time = lots due / (shards x lots per second per worker)")
    print(f"  lots/s per worker: {aws_rate:.0f} assumed on AWS (20 ms a lapse; partition ceiling 1,000/s)")
    print(f"  {'lots due':>11} {'32 shards':>11} {'128 shards':>11} {'256 shards':>11}")
    for due in (1_000_000, 10_000_000, 50_000_000):
        cells = " ".join(f"{due / (shards * aws_rate) / 3600:>10.2f}h" for shards in (32, 128, 256))
        print(f"  {due:>11,} {cells}")
    print(f"  (at the rate measured on moto, {measured:.0f}/s, each figure is {aws_rate / measured:.1f} times longer)")


if __name__ == "__main__":
    main()
