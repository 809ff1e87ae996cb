"""The local stack at shop scale: members enrolled and signed orders settled per second, and memory per order.

    make bench-local                      (python -m bench.local_stack)
    BENCH_MEMBERS=5000,100000 BENCH_ORDERS=1000 make bench-local

Starts `python -m infra.local` as a user would (its own moto), creates a shop, enrols the members over HTTP,
then posts signed order webhooks from several threads and waits until the queue is empty and every order is
settled. Prints enrolments per second, orders per second end to end (webhook -> queue -> settled balance),
and the stack's resident memory per order. At the end every member's balance is checked against the orders
sent: nothing may be lost.
"""

import http.client
import json
import os
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

from infra.local import process
from loyalty.webhooks import standard

ROOT = Path(__file__).resolve().parents[1]
OPERATOR_KEY = "op_bench_local"
THREADS = int(os.environ.get("BENCH_THREADS", "8"))


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
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def queued(endpoint: str) -> int:
    sqs = boto3.client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
    )
    url = sqs.get_queue_url(QueueName="OrdersQueue")["QueueUrl"]
    names: Any = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def run(members: int, orders: int) -> dict[str, Any]:
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
            rss_before = rss_kb(pid)
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

            started = time.perf_counter()
            with ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(order, range(orders)))
            accepted = time.perf_counter() - started
            while queued(endpoint):
                time.sleep(0.2)
            settled = time.perf_counter() - started
            rss_after = rss_kb(pid)
            # Nothing lost: every member holds 12 points per order sent to them.
            expected = {f"m{m}": 12 * len(range(m, orders, members)) for m in range(min(members, orders))}

            def balance(member: str) -> tuple[str, int]:
                return member, call(base, "GET", f"/v1/shops/{sid}/members/{member}", key=key)[1]["points"]["available"]

            with ThreadPoolExecutor(THREADS) as pool:
                found = dict(pool.map(balance, expected))
            assert found == expected, {m: (found[m], expected[m]) for m in expected if found[m] != expected[m]}
            return {
                "members": members,
                "orders": orders,
                "enrol_per_s": enrol_rate,
                "accepted_per_s": orders / accepted,
                "orders_per_s": orders / settled,
                "kb_per_order": (rss_after - rss_before) / orders,
                "rss_mb": rss_after / 1024,
            }
        except BaseException:
            sys.stderr.write("the stack's log ends:\n" + log.read_text()[-4000:])
            raise
        finally:
            running.stop()


def main() -> None:
    sizes = [int(n) for n in os.environ.get("BENCH_MEMBERS", "5000,100000").split(",")]
    orders = int(os.environ.get("BENCH_ORDERS", "1000"))
    rows = [run(members, orders) for members in sizes]
    print(f"local stack (make run's own moto), {THREADS} client threads, {orders} signed orders per size")
    print(f"{'members':>8} {'enrol/s':>8} {'orders/s':>9} {'webhooks/s':>11} {'KB/order':>9} {'RSS MB':>7}")
    for r in rows:
        print(
            f"{r['members']:>8} {r['enrol_per_s']:>8.0f} {r['orders_per_s']:>9.1f} {r['accepted_per_s']:>11.1f} "
            f"{r['kb_per_order']:>9.1f} {r['rss_mb']:>7.0f}"
        )
    print("every balance checked against the orders sent")


if __name__ == "__main__":
    main()
