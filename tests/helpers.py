"""Builders and checks the tests share."""

import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3

from infra.local import lambdas
from infra.local.resources import Stack, table_definition
from loyalty.domain.members import Profile
from loyalty.domain.orders import EVENT_TYPES, OrderCancelled, OrderPaid, OrderRefunded
from loyalty.domain.program import Program
from loyalty.runtime import Services
from loyalty.service.points import Points
from loyalty.service.runs import RunReport, Runs, ShardWork
from loyalty.service.wallet import Wallet
from loyalty.store import points as point_store
from loyalty.store import wallet as wallet_store
from loyalty.store.dynamo import Dynamo
from loyalty.store.keys import ORDER_SK
from loyalty.webhooks import standard


def paid(
    order_id: str,
    member_id: str = "m1",
    total: str = "100.00",
    lines: list[dict[str, Any]] | None = None,
    paid_at: str = "2026-11-01T10:00:00Z",
    currency: str = "CNY",
) -> dict[str, Any]:
    return {
        "type": "order.paid",
        "data": {
            "order_id": order_id,
            "member_id": member_id,
            "currency": currency,
            "total": total,
            "lines": lines
            if lines is not None
            else [{"sku": "tea", "category": "tea", "quantity": 1, "amount": total}],
            "paid_at": paid_at,
        },
    }


def refunded(order_id: str, refund_id: str, amount: str) -> dict[str, Any]:
    return {"type": "order.refunded", "data": {"order_id": order_id, "refund_id": refund_id, "amount": amount}}


def cancelled(order_id: str) -> dict[str, Any]:
    return {"type": "order.cancelled", "data": {"order_id": order_id}}


def event_model(event: dict[str, Any]) -> OrderPaid | OrderRefunded | OrderCancelled:
    return EVENT_TYPES[event["type"]].model_validate(event)


def signed_headers(secret: str, body: bytes, msg_id: str = "msg_1", timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": standard.sign(secret, msg_id, stamp, body),
    }


def send(stack: Stack, shop_id: str, event: dict[str, Any], delivery_id: str = "d1") -> None:
    """Put an event straight onto the queue, as internal systems may."""
    boto3.client("sqs").send_message(
        QueueUrl=stack.queues["OrdersQueue"],
        MessageBody=json.dumps({"shop_id": shop_id, "delivery_id": delivery_id, "event": event}),
    )


def drain(stack: Stack, *, rounds: int = 20, function_id: str = "OrdersFunction") -> list[dict[str, Any]]:
    """Feed queued messages to an SQS-triggered function until its queue is empty (failed ones become visible at
    once). Returns every batch response."""
    sqs = boto3.client("sqs")
    function = lambdas.functions()[function_id]
    assert function.queue is not None
    url = stack.queues[function.queue]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    responses = []
    for _ in range(rounds):
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        result = lambdas.invoke(function, lambdas.sqs_event(messages, arn["Attributes"]["QueueArn"]))
        responses.append(result)
        failed = {item["itemIdentifier"] for item in result["batchItemFailures"]}
        for message in messages:
            if message["MessageId"] in failed:
                sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
            else:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return responses


def run_expiry(stack: Stack, when: datetime) -> dict[str, Any]:
    """The expiry run as on AWS: ExpirePointsFunction queues one message per day-shard, ExpirePointsShardFunction
    expires each. Returns the day-shards dispatched, the worker invocations, and the lots due, applied and skipped
    added up over the workers."""
    reports: list[RunReport] = []
    original = Runs.expire_shard

    def recording(self: Runs, work: ShardWork, points: Points, wallet: Wallet, **kwargs: Any) -> RunReport:
        report = original(self, work, points, wallet, **kwargs)
        reports.append(report)
        return report

    event = lambdas.schedule_event(when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    dispatched = dict(lambdas.invoke(lambdas.functions()["ExpirePointsFunction"], event))
    Runs.expire_shard = recording  # type: ignore[method-assign]
    try:
        for response in drain(stack, rounds=1000, function_id="ExpirePointsShardFunction"):
            assert response == {"batchItemFailures": []}, response
    finally:
        Runs.expire_shard = original  # type: ignore[method-assign]
    totals = {name: sum(getattr(report, name) for report in reports) for name in ("due", "applied", "skipped")}
    return {"day_shards": dispatched["due"], "workers": len(reports), "complete": dispatched["complete"], **totals}


def dead_letters(stack: Stack, queue: str = "OrdersDeadLetterQueue") -> list[Any]:
    return (
        boto3.client("sqs")
        .receive_message(QueueUrl=stack.queues[queue], MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        .get("Messages", [])
    )


def check_invariants(service: Services, shop_id: str, member_id: str, *, orders: bool = True) -> dict[str, int]:
    """available == sum(ledger points) == sum(lots) - debt; pending == sum(ledger pending) == sum(order pending).
    The last scans the table (any order naming the member counts): `orders=False` skips it where a test's table
    is large and its members have no orders (an import)."""
    member = service.members.member(shop_id, member_id)
    entries = point_store.ledger_all(service.db, shop_id, member_id)
    lots = point_store.lots(service.db, shop_id, member_id)
    balance = member.balance
    assert balance.available == sum(e.points for e in entries), "available != sum of ledger points"
    assert balance.pending == sum(e.pending for e in entries), "pending != sum of ledger pending"
    assert balance.available == sum(lot.remaining for lot in lots) - balance.debt, "available != lots - debt"
    assert balance.debt >= 0 and balance.pending >= 0
    assert all(lot.remaining > 0 for lot in lots), "an empty lot was left behind"
    if balance.debt:
        assert not lots, "debt while lots still hold points"
    if orders:
        assert balance.pending == _orders_pending(service.db, shop_id, member_id)
    return {"available": balance.available, "pending": balance.pending, "debt": balance.debt}


def check_wallet(service: Services, shop_id: str, member_id: str) -> tuple[int, int]:
    """principal == Σ entries' principal and bonus == Σ entries' bonus == Σ bonus lots, neither below zero. Returns
    them."""
    wallet = wallet_store.get_wallet(service.db, shop_id, member_id)
    entries = wallet_store.ledger_all(service.db, shop_id, member_id)
    assert wallet.principal == sum(e.principal for e in entries), "principal != sum of wallet entries"
    assert wallet.bonus == sum(e.bonus for e in entries), "bonus != sum of wallet entries"
    assert wallet.principal >= 0 and wallet.bonus >= 0, "a wallet went below zero"
    lots = wallet_store.bonus_lots(service.db, shop_id, member_id)
    assert wallet.bonus == sum(lot.remaining for lot in lots), "bonus != sum of bonus lots"
    assert all(lot.remaining > 0 for lot in lots), "an empty bonus lot was left behind"
    return wallet.principal, wallet.bonus


def _orders_pending(db: Dynamo, shop_id: str, member_id: str) -> int:
    # Test-only audit: a Scan is fine on a test's small table (production code never scans).
    items = db.client.scan(TableName=db.table_name)["Items"]
    total = 0
    for raw in items:
        if (
            raw["SK"]["S"] == ORDER_SK
            and raw["PK"]["S"].startswith(f"SHOP#{shop_id}#")
            and raw.get("member_id", {}).get("S") == member_id
        ):
            total += int(raw["pending"]["N"])
    return total


@contextmanager
def fresh_shop(program: Program, members: list[str]) -> Iterator[tuple[Services, str]]:
    """A service on a table of its own, dropped afterwards (moto copies the table on every transaction item, so
    hypothesis examples stay fast on small tables), with one shop on `program` and these members enrolled."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    client = boto3.client("dynamodb")
    client.create_table(**table_definition(table_name=name))
    try:
        service = Services(Dynamo(name), cache_seconds=0)
        shop_id = service.shops.create_shop("Fresh")["shop_id"]
        service.shops.set_program(shop_id, program)
        for member_id in members:
            service.members.enrol(shop_id, Profile(member_id=member_id))
        yield service, shop_id
    finally:
        client.delete_table(TableName=name)


def capture_events(stack: Stack) -> str:
    """A rule on the bus that sends every loyalty event to a queue the test reads."""
    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName=f"{stack.buses['LoyaltyEventBus']}-capture")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.buses["LoyaltyEventBus"]
    events.put_rule(Name="capture", EventBusName=bus, EventPattern=json.dumps({"source": ["loyalty"]}))
    events.put_targets(Rule="capture", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    return url


def captured(url: str) -> list[dict[str, Any]]:
    messages = boto3.client("sqs").receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]
