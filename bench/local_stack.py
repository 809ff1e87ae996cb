"""The local stack at shop scale: members enrolled and signed orders settled per second, and memory per order.

    make bench-local                      (python -m bench.local_stack; about 30 minutes)
    BENCH_MEMBERS=5000,100000 BENCH_ORDERS=10000,5000 make bench-local      (the defaults)

For each size, starts `python -m infra.local` as a user would (its own moto), creates a shop, enrols the members
over HTTP, then posts signed order webhooks from several threads in bursts, each burst settled before the next.
Prints enrolments per second, orders per second end to end (webhook -> queue -> settled balance), the stack's
resident memory per order overall and burst by burst (the first size's 10,000 orders are the soak), and the data
each order adds to the table as DynamoDB counts it (items and bytes). At the end every member's balance is
checked against the orders sent: nothing may be lost. Then bench.moto_ceiling sends the DynamoDB requests of the
same enrolments and orders straight to a moto process of its own, at each size, and the stack's rates are printed
against what moto alone allows.
"""

import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3

from infra.local import process, strict
from loyalty.store.keys import member_pk, order_pk
from loyalty.webhooks import standard

ROOT = Path(__file__).resolve().parents[1]
OPERATOR_KEY = "op_bench_local"
THREADS = int(os.environ.get("BENCH_THREADS", "8"))
BURST = int(os.environ.get("BENCH_BURST", "1000"))
SCAN_MEMBERS = 20_000  # the data is counted (a scan) at sizes up to this


_connections = threading.local()


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str = "",
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    """One request on this thread's kept-alive connection (as a platform's webhook sender keeps its own)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    if key:
        all_headers["Authorization"] = f"Bearer {key}"
    for attempt in (1, 2):
        connection = getattr(_connections, base, None)
        if connection is None:
            connection = http.client.HTTPConnection(urlsplit(base).netloc, timeout=60)
            setattr(_connections, base, connection)
        try:
            connection.request(method, path, body=data, headers=all_headers)
            response = connection.getresponse()
            return response.status, json.loads(response.read() or b"null")
        except (http.client.HTTPException, ConnectionError):
            connection.close()
            setattr(_connections, base, None)
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def rss_kb(pid: int) -> int:
    """Resident memory of the stack: its process and its children (moto runs in one of its own)."""
    total = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total += int(line.split()[1])
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
        total += sum(rss_kb(int(child)) for child in children)
    return total


def aws(endpoint: str, service: Any) -> Any:
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="x"
    )


def queued(endpoint: str) -> int:
    sqs = aws(endpoint, "sqs")
    url = sqs.get_queue_url(QueueName="OrdersQueue")["QueueUrl"]
    names: Any = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def parked(endpoint: str) -> list[Any]:
    """What the orders' dead-letter queue holds, with the reasons the consumer gave."""
    sqs = aws(endpoint, "sqs")
    url = sqs.get_queue_url(QueueName="OrdersDeadLetterQueue")["QueueUrl"]
    found = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
    return [{"body": m["Body"][:300], "attributes": m.get("MessageAttributes")} for m in found.get("Messages", [])]


def table_data(endpoint: str) -> tuple[int, int]:
    """(items, bytes) of the loyalty table as DynamoDB counts them (a scan, item sizes by DynamoDB's rules): the
    data itself, to set against the memory the stack holds it in."""
    dynamodb = aws(endpoint, "dynamodb")
    name = next(t for t in dynamodb.list_tables()["TableNames"] if "LoyaltyTable" in t)
    items = size = 0
    for page in dynamodb.get_paginator("scan").paginate(TableName=name):
        items += len(page["Items"])
        size += sum(strict.item_size(item) for item in page["Items"])
    return items, size


def held(endpoint: str, shop_id: str, member_id: str, order_ids: list[str]) -> dict[str, Any]:
    """The member's partition and their orders' items, as the table holds them."""
    dynamodb = aws(endpoint, "dynamodb")
    name = next(t for t in dynamodb.list_tables()["TableNames"] if "LoyaltyTable" in t)

    def partition(pk: str) -> list[Any]:
        values = {":pk": {"S": pk}}
        found = dynamodb.query(TableName=name, KeyConditionExpression="PK = :pk", ExpressionAttributeValues=values)
        return found["Items"]  # type: ignore[no-any-return]

    return {
        "member": partition(member_pk(shop_id, member_id)),
        "orders": {order: partition(order_pk(shop_id, order)) for order in order_ids},
    }


def run(members: int, orders: int) -> dict[str, Any]:
    """Enrol `members`, then send `orders` in bursts of BURST, each burst settled before the next: the rate over
    all of them, and resident memory after each burst (flat growth per burst = nothing grows but the data)."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "stack.log"
        running = process.start(OPERATOR_KEY, log, {"LOYALTY_SCHEDULE_SECONDS": "86400"})
        base, endpoint, pid = running.url, running.endpoint, running.process.pid
        try:
            status, shop = call(base, "POST", "/v1/shops", {"name": "Bench", "currency": "CNY"}, key=OPERATOR_KEY)
            assert status == 201, shop
            sid, key = shop["shop_id"], shop["api_key"]
            started = time.perf_counter()

            def enrol(n: int) -> None:
                status, body = call(base, "POST", f"/v1/shops/{sid}/members", {"member_id": f"m{n}"}, key=key)
                assert status in (200, 201), body  # 200: a retried request found its own first write

            with ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(enrol, range(members)))
            enrol_rate = members / (time.perf_counter() - started)
            sys.stderr.write(f"{members} members enrolled ({enrol_rate:.0f}/s); sending {orders} orders\n")
            paid_at = datetime.now(UTC).isoformat()

            def order(n: int) -> None:
                event = {
                    "type": "order.paid",
                    "data": {
                        "order_id": f"o{n}",
                        "member_id": f"m{n % members}",
                        "currency": "CNY",
                        "total": "12.00",
                        "paid_at": paid_at,
                        "lines": [{"sku": "tea", "category": "tea", "amount": "12.00"}],
                    },
                }
                body = json.dumps(event).encode()
                stamp = int(time.time())
                headers = {
                    "webhook-id": f"d{n}",
                    "webhook-timestamp": str(stamp),
                    "webhook-signature": standard.sign(shop["webhook_secret"], f"d{n}", stamp, body),
                }
                status, answer = call(base, "POST", f"/v1/shops/{sid}/webhooks/orders", raw=body, headers=headers)
                assert status == 202, answer

            # The data, counted by a scan: at the soak's size only (moto's scan reads the whole table per page,
            # minutes at 100,000 members), and outside the measured span (it allocates in the stack).
            counted = members <= SCAN_MEMBERS
            items_before, bytes_before = table_data(endpoint) if counted else (0, 0)
            rss = [rss_kb(pid)]
            sizes, rates = [], []
            sending = 0.0
            started = time.perf_counter()
            for first in range(0, orders, BURST):
                burst = range(first, min(first + BURST, orders))
                sizes.append(len(burst))
                sent = time.perf_counter()
                with ThreadPoolExecutor(THREADS) as pool:
                    list(pool.map(order, burst))
                sending += time.perf_counter() - sent
                while queued(endpoint):
                    time.sleep(0.1)
                rss.append(rss_kb(pid))
                rates.append(len(burst) / (time.perf_counter() - sent))
            settled = time.perf_counter() - started
            items_after, bytes_after = table_data(endpoint) if counted else (0, 0)
            # Nothing lost: every member holds 12 points per order sent to them.
            expected = {f"m{m}": 12 * len(range(m, orders, members)) for m in range(min(members, orders))}

            def balance(member: str) -> tuple[str, int]:
                for _ in range(5):  # a 503 says "retry" (the stack is busy: its aggregator, another job)
                    status, body = call(base, "GET", f"/v1/shops/{sid}/members/{member}", key=key)
                    if status != 503:
                        break
                    time.sleep(1)
                assert status == 200, (member, status, body)
                return member, body["points"]["available"]

            with ThreadPoolExecutor(THREADS) as pool:
                found = dict(pool.map(balance, expected))
            wrong = {m: (found[m], expected[m]) for m in expected if found[m] != expected[m]}
            if wrong:  # what the table holds of the first few, to tell a lost event from a wrong balance
                for member in list(wrong)[:3]:
                    orders_sent = [f"o{n}" for n in range(int(member[1:]), orders, members)]
                    sys.stderr.write(json.dumps(held(endpoint, sid, member, orders_sent), indent=1, default=str) + "\n")
            assert not wrong, wrong
            per_burst = [(rss[n + 1] - rss[n]) / size for n, size in enumerate(sizes)]
            return {
                "members": members,
                "orders": orders,
                "enrol_per_s": enrol_rate,
                "accepted_per_s": orders / sending,
                "orders_per_s": orders / settled,
                "kb_per_order": (rss[-1] - rss[0]) / orders,
                "kb_per_order_bursts": per_burst,
                "orders_per_s_bursts": rates,
                "items_per_order": (items_after - items_before) / orders if counted else None,
                "data_bytes_per_order": (bytes_after - bytes_before) / orders if counted else None,
                "rss_mb": rss[-1] / 1024,
            }
        except BaseException:
            kept = Path(tempfile.mkdtemp(prefix="bench-local-")) / "stack.log"
            kept.write_text(log.read_text())
            sys.stderr.write(f"the stack's log: {kept}\nparked: {json.dumps(parked(endpoint), indent=1)}\n")
            raise
        finally:
            running.stop()


def main() -> None:
    sizes = [int(n) for n in os.environ.get("BENCH_MEMBERS", "5000,100000").split(",")]
    counts = [int(n) for n in os.environ.get("BENCH_ORDERS", "10000,5000").split(",")]
    counts += [counts[-1]] * (len(sizes) - len(counts))
    rows = [run(members, orders) for members, orders in zip(sizes, counts, strict=False)]
    # The same enrolments' and orders' DynamoDB requests sent to moto's process alone: what moto allows at most.
    ceiling = subprocess.run(  # noqa: S603 (this interpreter, our module, numbers)
        [sys.executable, "-m", "bench.moto_ceiling", "--json", *map(str, sizes)],
        check=True,
        capture_output=True,
        text=True,
    )
    alone = {c["members"]: c for c in json.loads(ceiling.stdout.strip().splitlines()[-1])}
    assert not any(c["refused"] for c in alone.values()), alone  # a refused request would flatter moto alone
    print(f"local stack (make run's own moto process), {THREADS} client threads, orders in bursts of {BURST}")
    print(
        f"{'members':>8} {'orders':>7} {'enrol/s':>8} {'orders/s':>9} {'webhooks/s':>11} {'KB/order':>9} "
        f"{'items/order':>12} {'data B/order':>13} {'RSS MB':>7}"
    )
    for r in rows:
        items = f"{r['items_per_order']:.2f}" if r["items_per_order"] is not None else "-"
        data = f"{r['data_bytes_per_order']:.0f}" if r["data_bytes_per_order"] is not None else "-"
        print(
            f"{r['members']:>8} {r['orders']:>7} {r['enrol_per_s']:>8.0f} {r['orders_per_s']:>9.1f} "
            f"{r['accepted_per_s']:>11.1f} {r['kb_per_order']:>9.1f} {items:>12} {data:>13} {r['rss_mb']:>7.0f}"
        )
    for r in rows:
        rates = " ".join(f"{rate:.0f}" for rate in r["orders_per_s_bursts"])
        bursts = " ".join(f"{kb:.1f}" for kb in r["kb_per_order_bursts"])
        print(f"at {r['members']} members, burst by burst: orders/s {rates}; KB of resident memory per order {bursts}")
    print("every balance checked against the orders sent")
    print(
        "\nmoto alone (bench.moto_ceiling: the DynamoDB requests of the same enrolments and orders, sent straight to "
        f"moto's process from {THREADS} threads), and the stack's rates against it:"
    )
    print(f"{'members':>8} {'enrol/s':>8} {'ours/alone':>11} {'orders/s':>9} {'ours/alone':>11}  CPU ms (client+moto)")
    for r in rows:
        c = alone[r["members"]]
        cpu = f"enrolment {c['enrol_cpu_ms'][0]:.1f}+{c['enrol_cpu_ms'][1]:.1f}, "
        cpu += f"order {c['order_cpu_ms'][0]:.1f}+{c['order_cpu_ms'][1]:.1f}"
        print(
            f"{r['members']:>8} {c['enrol_per_s']:>8.0f} {r['enrol_per_s'] / c['enrol_per_s']:>11.2f} "
            f"{c['orders_per_s']:>9.1f} {r['orders_per_s'] / c['orders_per_s']:>11.2f}  {cpu}"
        )


if __name__ == "__main__":
    main()
