"""Dollars per million order events on AWS, from the requests and item sizes observed on the real path.

    make bench-cost        (python -m bench.cost)

Each order is signed and posted to the webhook function, queued, settled by the orders function from an SQS
event, and then taken through the nightly runs its program needs (activate-pending after the return window,
remind-expiring a week before its lot lapses, expire-points when it does), all through the handlers of
template.yaml on moto in process (patched as the tests run it). Every AWS request is recorded; each DynamoDB
write is priced by the size of the item before and after it (read back with a client that is not recorded):
1 write unit per KB, 2 in a transaction, plus 1 per KB for each DueIndex entry written or removed. Reads: 1 unit
per 4 KB strongly consistent, half that eventually consistent.

What is not observed here is taken from AWS's list prices (us-east-1, on-demand) and stated below: Lambda time
per invocation is assumed, not measured (moto's time is not DynamoDB's).
"""

import contextlib
import io
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as time_of_day
from typing import Any

from infra.local.offline import use_in_process_moto

use_in_process_moto(DUE_SHARDS="32", POWERTOOLS_LOG_LEVEL="ERROR", POWERTOOLS_METRICS_NAMESPACE="LoyaltyBench")

import boto3
from moto import mock_aws

from infra.local import lambdas, moto_patches, strict
from infra.local.resources import Stack, create_stack
from loyalty import runtime
from loyalty.store.keys import schedule_state_key
from loyalty.webhooks import standard

ORDERS = int(os.environ.get("BENCH_COST_ORDERS", "100"))
MEMBERS = 20

# AWS list prices, us-east-1 (per million unless said)
PRICE = {
    "write_unit": 0.625,  # DynamoDB on-demand write request units
    "read_unit": 0.125,  # DynamoDB on-demand read request units
    "sqs_request": 0.40,  # standard queue, per 64 KB chunk
    "events": 1.00,  # EventBridge custom events
    "lambda_request": 0.20,
    "lambda_gb_second": 13.3334,  # arm64: $0.0000133334 per GB-s, i.e. $13.33 per million GB-s
    "rest_api": 3.50,  # API Gateway REST, first 333 million a month
    "http_api": 1.00,  # API Gateway HTTP API, first 300 million a month
}
# Assumed billed duration per invocation on AWS (warm), at the template's 512 MB.
MEMORY_GB = 0.5
SECONDS = {"WebhooksFunction": 0.025, "OrdersFunction": 0.030, "per_item": 0.015}
ORDERS_BATCH = 10  # the event source's BatchSize


@dataclass
class Bill:
    write_units: float = 0.0
    index_units: float = 0.0
    read_units: float = 0.0
    sqs_requests: float = 0.0
    events: int = 0
    run_items: int = 0  # items the scheduled runs settled: a transaction per order or lot, a reminder
    invocations: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    by_item: Counter[tuple[str, str]] = field(default_factory=Counter)  # write units by (function, item kind)


SCHEDULED = {"ActivatePendingFunction", "ExpirePointsFunction", "ExpirePointsShardFunction", "RemindExpiringFunction"}


class Meter:
    """Records every AWS request the functions make, and prices DynamoDB writes by the items they touch.

    A night's fixed work (the dispatch of day-shards, queries of partitions with nothing due) does not grow with
    orders: it is left out of the per-order figures and reported apart."""

    def __init__(self) -> None:
        self.table = ""
        self.bill = Bill()
        self.peek: Any = None  # a client of its own session: its requests are not recorded
        self._before: list[tuple[dict[str, Any], dict[str, Any] | None, int]] = []

    def install(self) -> None:
        """Before any client is made: clients copy their session's handlers when they are made."""
        boto3.setup_default_session()
        session = boto3.DEFAULT_SESSION
        assert session is not None
        session.events.register("before-parameter-build", self.before)
        session.events.register("after-call", self.after)

    def reset(self, table: str) -> None:
        self.table, self.bill = table, Bill()
        self.peek = boto3.session.Session().client("dynamodb")

    def _item(self, key: dict[str, Any]) -> dict[str, Any] | None:
        found = self.peek.get_item(TableName=self.table, Key={"PK": key["PK"], "SK": key["SK"]}, ConsistentRead=True)
        item: dict[str, Any] | None = found.get("Item")
        return item

    def before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self._before = []
        function = strict._current.get()
        if function is None or not self.table:
            return  # set-up, not a function at work
        service, operation = model.service_model.endpoint_prefix, model.name
        if function in SCHEDULED and operation == "TransactWriteItems":
            self.bill.run_items += 1
        elif function == "RemindExpiringFunction" and operation == "UpdateItem":
            self.bill.run_items += 1  # a reminder taken off the index: one item of the run's work
        if function == "ExpirePointsFunction" or (service == "sqs" and "RunsQueue" in params.get("QueueUrl", "")):
            return  # the nightly dispatch: fixed, whatever the orders
        self.bill.requests[f"{service}:{operation}"] += 1
        if service == "dynamodb":
            writes: list[tuple[dict[str, Any], int]] = []
            if operation == "TransactWriteItems":
                for entry in params["TransactItems"]:
                    (kind, action), *_ = entry.items()
                    if kind != "ConditionCheck":
                        writes.append((action.get("Key") or action["Item"], 2))
                    else:
                        self.bill.read_units += 2 * 1  # a condition check is a transactional read of the item
            elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
                writes.append((params.get("Key") or params["Item"], 1))
            self._before = [(key, self._item(key), factor) for key, factor in writes]
        elif service == "sqs":
            if operation in ("SendMessage", "SendMessageBatch"):
                entries = params.get("Entries") or [params]
                for entry in entries:
                    self.bill.sqs_requests += math.ceil(len(entry["MessageBody"].encode()) / 65536)
        elif service == "events" and operation == "PutEvents":
            self.bill.events += len(params["Entries"])

    def after(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        service, operation = model.service_model.endpoint_prefix, model.name
        function = strict._current.get()
        if service != "dynamodb" or function is None or not self.table:
            return
        if operation == "Query" and function in SCHEDULED and not parsed.get("Items"):
            self.bill.requests["dynamodb:Query"] -= 1  # a partition with nothing due: the night's fixed cost
            return
        if operation in ("GetItem", "Query", "BatchGetItem"):
            consistent = operation == "GetItem"  # our Gets are strongly consistent; queries of the index cannot be
            items = parsed.get("Items") or ([parsed["Item"]] if "Item" in parsed else [])
            for table_items in parsed.get("Responses", {}).values():
                items = items + table_items
            size = sum(strict.item_size(item) for item in items)
            units = max(1, math.ceil(size / 4096)) if operation != "BatchGetItem" else len(items) or 1
            self.bill.read_units += units if consistent else units / 2
        for key, old, factor in self._before:
            new = self._item(key)
            size = max(strict.item_size(item) for item in (old, new, {}) if item is not None)
            units = factor * max(1, math.ceil(size / 1024))
            self.bill.write_units += units
            self.bill.by_item[(function, _kind(key))] += units
            for item in (old, new):  # an index entry written (new) or removed (old) costs a write of the index
                if item is not None and "DuePK" in item and (old is None or new is None or _due(old) != _due(new)):
                    self.bill.index_units += max(1, math.ceil(_projected(item) / 1024))
        self._before = []


def _kind(key: dict[str, Any]) -> str:
    """What an item is, from its keys: the sort key's first part (PROFILE, LEDGER, LOT, ...)."""
    return str(key["SK"]["S"]).split("#", 1)[0]


def _due(item: dict[str, Any] | None) -> tuple[Any, Any]:
    return (item or {}).get("DuePK"), (item or {}).get("DueSK")


def _projected(item: dict[str, Any]) -> int:
    names = {"PK", "SK", "DuePK", "DueSK", "remaining", "granted", "expires_at", "earned_at", "source", "reference"}
    return strict.item_size({k: v for k, v in item.items() if k in names})


METER = Meter()
BILLS: dict[str, Bill] = {}  # each program's bill, for the breakdown by item


def scenario(
    name: str, program: dict[str, Any], later: list[tuple[str, Callable[[datetime], datetime]]]
) -> dict[str, float]:
    """`later`: the runs to make after the orders, each with when its work falls due for an order paid at a time."""
    stack = create_stack(prefix=f"cost-{name}-")
    strict.configure(stack)
    os.environ.update(stack.env())
    os.environ["OPERATOR_KEY_SHA256"] = "0" * 64
    runtime.reset()
    service = runtime.services()
    shop = service.shops.create_shop("Cost")
    shop_id = shop["shop_id"]
    service.shops.set_program(shop_id, service.shops.program(shop_id).model_validate(program))
    from loyalty.domain.members import Profile

    for n in range(MEMBERS):
        service.members.enrol(shop_id, Profile(member_id=f"m{n}", marketing_consent=True))  # reminded, so priced
    functions = lambdas.functions()
    meter = METER
    meter.reset(stack.tables["LoyaltyTable"])
    # An order an hour, the last an hour ago: a member's orders (every 20th) are on different days, as a shop's
    # customers come back on different days, not the same one.
    first_paid = datetime.now(UTC) - timedelta(hours=ORDERS)
    last_paid = first_paid + timedelta(hours=ORDERS - 1)
    for n in range(ORDERS):
        paid_at = first_paid + timedelta(hours=n)
        event = {
            "type": "order.paid",
            "data": {
                "order_id": f"o{n}",
                "member_id": f"m{n % MEMBERS}",
                "currency": "CNY",
                "total": "128.00",
                "paid_at": paid_at.isoformat(),
                "lines": [
                    {"sku": "oolong-250g", "category": "tea", "amount": "98.00"},
                    {"sku": "gaiwan", "category": "ware", "amount": "30.00"},
                ],
            },
        }
        body = json.dumps(event).encode()
        stamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": f"msg-{n}",
            "webhook-timestamp": str(stamp),
            "webhook-signature": standard.sign(shop["webhook_secret"], f"msg-{n}", stamp, body),
        }
        response = lambdas.invoke(
            functions["WebhooksFunction"],
            lambdas.api_event("POST", f"/v1/shops/{shop_id}/webhooks/orders", headers=headers, body=body),
        )
        assert response["statusCode"] == 202, response
        meter.bill.invocations["WebhooksFunction"] += 1
    drain(stack, functions["OrdersFunction"], meter)
    for job, due in later:
        when = due(last_paid) + timedelta(hours=1)  # one run after all of it is due
        # As if the run had run every night until the day the first of it fell due: it visits those days'
        # partitions, not a year's (a fresh stack's first run far ahead would query every day-shard in between).
        pk, sk = schedule_state_key(job)
        resume = due(first_paid).date().isoformat()
        service.db.put({"PK": pk, "SK": sk, "resume_from": resume, "last_run": resume})
        function = next(f for f in functions.values() if f.schedule_name == job)
        lambdas.invoke(function, lambdas.schedule_event(when.strftime("%Y-%m-%dT%H:%M:%SZ")))
        meter.bill.invocations["scheduled"] += 1
        if job == "expire-points":
            drain(stack, functions["ExpirePointsShardFunction"], meter, per_item=True)
    for n in range(MEMBERS):
        balance = service.members.member(shop_id, f"m{n}").balance
        assert balance.available + balance.pending >= 0
    meter.peek.close()
    bill, meter.table = meter.bill, ""
    BILLS[name] = bill
    return price(bill)


def _end_of_day(paid: datetime, days: int) -> datetime:
    """When the lot of an order paid at `paid` lapses under a policy of `days` (the end of that day, UTC here)."""
    return datetime.combine(paid.date() + timedelta(days=days), time_of_day(23, 59, 59), tzinfo=UTC)


def _end_of_next_year(paid: datetime) -> datetime:
    """When the lots of orders paid at `paid` lapse under end_of_next_year (UTC, the program's time zone here)."""
    return datetime(paid.year + 1, 12, 31, 23, 59, 59, tzinfo=UTC)


def drain(stack: Stack, function: lambdas.Function, meter: Meter, *, per_item: bool = False) -> None:
    """What the event source mapping does: receive up to a batch, invoke, delete the successes."""
    sqs = boto3.session.Session().client("sqs")  # the poller is AWS's, not ours: its requests are counted apart
    assert function.queue is not None
    url = stack.queues[function.queue]
    arn = strict.queue_arn(url)
    while True:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
        if not messages:
            return
        result = lambdas.invoke(function, lambdas.sqs_event(messages, arn))
        assert result == {"batchItemFailures": []}, result
        meter.bill.invocations[function.logical_id] += 1
        if not per_item:  # the runs' pollers are the night's fixed cost
            meter.bill.sqs_requests += 2  # the poller's ReceiveMessage and DeleteMessageBatch, per batch
        sqs.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(messages)]
        )


def price(bill: Bill) -> dict[str, float]:
    """Dollars per million orders, by line."""
    per = 1 / ORDERS
    seconds = (
        bill.invocations["WebhooksFunction"] * SECONDS["WebhooksFunction"]
        + ORDERS * SECONDS["OrdersFunction"]  # each event's share of its batch
        + bill.run_items * SECONDS["per_item"]
    )
    # The orders function is invoked once per batch of ten on AWS (here: once per receive, often fewer); the
    # scheduled functions a fixed number of times a night, whatever the orders.
    invocations = bill.invocations["WebhooksFunction"] + math.ceil(ORDERS / ORDERS_BATCH)
    return {
        "DynamoDB writes": bill.write_units * per * PRICE["write_unit"],
        "DueIndex writes": bill.index_units * per * PRICE["write_unit"],
        "DynamoDB reads": bill.read_units * per * PRICE["read_unit"],
        "SQS": bill.sqs_requests * per * PRICE["sqs_request"],
        "EventBridge": bill.events * per * PRICE["events"],
        "Lambda requests": invocations * per * PRICE["lambda_request"],
        "Lambda GB-seconds": seconds * MEMORY_GB * per * PRICE["lambda_gb_second"],
        "API Gateway (HTTP API)": PRICE["http_api"],  # WebhooksApi: every order event arrives as a webhook
        "_write_units": bill.write_units * per,
        "_index_units": bill.index_units * per,
        "_read_units": bill.read_units * per,
        "_dynamodb_requests": sum(v for k, v in bill.requests.items() if k.startswith("dynamodb")) * per,
    }


def main() -> None:
    strict.install()
    moto_patches.apply()  # as the tests and the local stack run moto: a transaction backs up its items only
    with mock_aws(), contextlib.redirect_stdout(io.StringIO()):  # Powertools prints metrics as it flushes them
        METER.install()
        plain = scenario("plain", {}, [])
        full = scenario(
            "full",
            {
                "pending_days": 7,
                "expiry": {"purchase": {"policy": "days", "days": 30}},
                "expiry_reminder_days": 7,
            },
            [
                ("activate-pending", lambda paid: paid + timedelta(days=7)),
                ("remind-expiring", lambda paid: _end_of_day(paid, 30) - timedelta(days=7)),
                ("expire-points", lambda paid: _end_of_day(paid, 30)),
            ],
        )
        year_end = scenario(
            "year-end",
            {
                "pending_days": 7,
                "expiry": {"purchase": {"policy": "end_of_next_year"}},
                "expiry_reminder_days": 7,
            },
            [
                ("activate-pending", lambda paid: paid + timedelta(days=7)),
                ("remind-expiring", lambda paid: _end_of_next_year(paid) - timedelta(days=7)),
                ("expire-points", _end_of_next_year),
            ],
        )
    programs = {"plain": plain, "full": full, "year-end": year_end}
    lines = [k for k in plain if not k.startswith("_")]
    print(f"Dollars per million order events ({ORDERS} orders, {MEMBERS} members; AWS list prices, us-east-1)\n")
    print("full: return window (7 days), expiry (30 days), reminders; year-end: the same, expiry end_of_next_year\n")
    print(f"| {'line':<22} | {'plain':>9} | {'full':>9} | {'year-end':>9} |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 11}|{'-' * 11}|")
    for line in lines:
        print(f"| {line:<22} | " + " | ".join(f"{s[line]:>9.2f}" for s in programs.values()) + " |")
    totals = [sum(s[k] for k in lines) for s in programs.values()]
    print(f"| {'total':<22} | " + " | ".join(f"{t:>9.2f}" for t in totals) + " |")
    rest = PRICE["rest_api"] - PRICE["http_api"]
    print(f"| {'total, REST route':<22} | " + " | ".join(f"{t + rest:>9.2f}" for t in totals) + " |")
    print("\n(REST route: the same webhooks posted to ApiUrl's route, kept for platforms pointed at it before.)")
    print()
    for name, s in programs.items():
        print(
            f"{name}: per order {s['_write_units']:.1f} write units, {s['_index_units']:.1f} index write units, "
            f"{s['_read_units']:.1f} read units, {s['_dynamodb_requests']:.2f} DynamoDB requests"
        )
    print("\nWrite units per order, by the function writing and the item written (transactional writes count twice):\n")
    rows = sorted({row for bill in BILLS.values() for row in bill.by_item})
    print(f"| {'function':<26} | {'item':<10} | {'plain':>6} | {'full':>6} | {'year-end':>8} |")
    print(f"|{'-' * 28}|{'-' * 12}|{'-' * 8}|{'-' * 8}|{'-' * 10}|")
    for function, kind in rows:
        cells = [BILLS[name].by_item[(function, kind)] / ORDERS for name in programs]
        print(f"| {function:<26} | {kind:<10} | {cells[0]:>6.1f} | {cells[1]:>6.1f} | {cells[2]:>8.1f} |")
    print(
        "\nAssumed (not measured here): Lambda billed time per invocation "
        f"{SECONDS['WebhooksFunction'] * 1000:.0f} ms webhook, {SECONDS['OrdersFunction'] * 1000:.0f} ms per order "
        f"event, {SECONDS['per_item'] * 1000:.0f} ms per scheduled item, at {MEMORY_GB * 1024:.0f} MB."
    )


if __name__ == "__main__":
    main()
