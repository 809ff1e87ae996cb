"""Signed webhooks -> SQS -> the orders function -> one transaction per event; all on moto."""

import json
import time
from typing import Any

import boto3
import pytest

from infra.local.resources import Stack
from loyalty.runtime import Services
from tests.conftest import Api
from tests.helpers import cancelled, check_invariants, dead_letters, drain, paid, refunded, send, signed_headers


@pytest.fixture
def member(api: Api, shop: dict[str, str]) -> str:
    status, _ = api.call(
        "POST",
        f"/v1/shops/{shop['shop_id']}/members",
        key=shop["api_key"],
        body={"member_id": "m1", "email": "m1@example.com"},
    )
    assert status == 201
    return "m1"


def post_webhook(
    api: Api, shop: dict[str, str], event: Any, *, msg_id: str = "msg_1", headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    body = json.dumps(event).encode()
    return api.call(
        "POST",
        f"/v1/shops/{shop['shop_id']}/webhooks/orders",
        raw=body,
        headers=headers if headers is not None else signed_headers(shop["webhook_secret"], body, msg_id),
    )


def queued(stack: Stack) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.queues["OrdersQueue"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"])


def points(api: Api, shop: dict[str, str], member_id: str = "m1") -> dict[str, int]:
    status, body = api.call("GET", f"/v1/shops/{shop['shop_id']}/members/{member_id}", key=shop["api_key"])
    assert status == 200, body
    return {key: body["points"][key] for key in ("available", "pending")}


def test_signed_webhook_is_accepted_enqueued_and_earns(
    api: Api, stack: Stack, shop: dict[str, str], member: str
) -> None:
    event = paid(
        "o1",
        lines=[
            {"sku": "a", "category": "tea", "amount": "60.50"},
            {"sku": "b", "category": "tea", "quantity": 2, "amount": "39.50"},
        ],
    )
    status, body = post_webhook(api, shop, event)
    assert (status, body["delivery_id"]) == (202, "msg_1")
    assert queued(stack) == 1
    drain(stack)
    assert points(api, shop) == {"available": 100, "pending": 0}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "msg_1", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"},
    ],
)
def test_bad_or_missing_signature_is_401_and_enqueues_nothing(
    api: Api, stack: Stack, shop: dict[str, str], headers: dict[str, str]
) -> None:
    status, body = post_webhook(api, shop, paid("o1"), headers=headers)
    assert status == 401 and body["error"]["code"] == "bad_signature"
    assert queued(stack) == 0


@pytest.mark.parametrize("skew", [-301, 301])
def test_stale_or_future_timestamp_is_401(api: Api, stack: Stack, shop: dict[str, str], skew: int) -> None:
    body = json.dumps(paid("o1")).encode()
    headers = signed_headers(shop["webhook_secret"], body, timestamp=int(time.time()) + skew)
    status, _ = api.call("POST", f"/v1/shops/{shop['shop_id']}/webhooks/orders", raw=body, headers=headers)
    assert status == 401 and queued(stack) == 0


def test_another_shops_secret_does_not_sign_for_this_shop(api: Api, stack: Stack, shop: dict[str, str]) -> None:
    other = api.call("POST", "/v1/shops", key="op_test_key", body={"name": "Other"})[1]
    body = json.dumps(paid("o1")).encode()
    status, _ = api.call(
        "POST",
        f"/v1/shops/{shop['shop_id']}/webhooks/orders",
        raw=body,
        headers=signed_headers(other["webhook_secret"], body),
    )
    assert status == 401 and queued(stack) == 0


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"type": "order.shipped", "data": {}}, "type"),
        ({**paid("o1"), "data": {**paid("o1")["data"], "total": "12.3.4"}}, "data.total"),
        ({**paid("o1"), "data": {**paid("o1")["data"], "lines": []}}, "data.lines"),
        ({**paid("o1"), "data": {**paid("o1")["data"], "paid_at": "2026-11-01T10:00:00"}}, "data.paid_at"),
        (refunded("o1", "r1", "-5"), "data.amount"),
    ],
)
def test_malformed_body_is_400_naming_the_field_and_enqueues_nothing(
    api: Api, stack: Stack, shop: dict[str, str], event: Any, field: str
) -> None:
    status, body = post_webhook(api, shop, event)
    assert status == 400 and body["error"]["field"].startswith(field), body
    assert queued(stack) == 0


def test_lifecycle_partial_refunds_then_full(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], member: str
) -> None:
    sid = shop["shop_id"]
    send(stack, sid, paid("o1", total="300.00", lines=[{"sku": "a", "amount": "299.99"}]))
    drain(stack)
    assert points(api, shop) == {"available": 299, "pending": 0}
    send(stack, sid, refunded("o1", "r1", "100.00"))
    drain(stack)
    assert points(api, shop)["available"] == 299 * 20000 // 30000  # 199
    send(stack, sid, refunded("o1", "r2", "100.00"))
    send(stack, sid, refunded("o1", "r3", "100.00"))
    drain(stack)
    assert points(api, shop)["available"] == 0
    check_invariants(service, sid, "m1")
    status, body = api.call("GET", f"/v1/shops/{sid}/members/m1/ledger", key=shop["api_key"])
    assert status == 200
    reasons = sorted((e["reason"], e["reference"], e["points"]) for e in body["items"])
    assert reasons == [
        ("order.paid", "o1", 299),
        ("order.refunded", "r1", -100),
        ("order.refunded", "r2", -100),
        ("order.refunded", "r3", -99),
    ]


def test_replays_change_nothing(api: Api, stack: Stack, service: Services, shop: dict[str, str], member: str) -> None:
    sid = shop["shop_id"]
    for _ in range(3):
        send(stack, sid, paid("o1"))
        send(stack, sid, refunded("o1", "r1", "10.00"))
    drain(stack)
    assert points(api, shop)["available"] == 90
    assert len(api.call("GET", f"/v1/shops/{sid}/members/m1/ledger", key=shop["api_key"])[1]["items"]) == 2
    check_invariants(service, sid, "m1")


def test_refund_before_its_order_is_kept_and_applied_when_the_order_arrives(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], member: str
) -> None:
    sid = shop["shop_id"]
    send(stack, sid, refunded("o1", "r1", "40.00"))
    drain(stack)
    assert points(api, shop)["available"] == 0
    send(stack, sid, paid("o1"))
    drain(stack)
    assert points(api, shop)["available"] == 60
    check_invariants(service, sid, "m1")


def test_cancel_before_activation_voids_pending_points(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], member: str
) -> None:
    sid = shop["shop_id"]
    api.call("PUT", f"/v1/shops/{sid}/program", key=shop["api_key"], body={"pending_days": 15})
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    send(stack, sid, paid("o1", paid_at=now))
    drain(stack)
    assert points(api, shop) == {"available": 0, "pending": 100}
    send(stack, sid, cancelled("o1"))
    drain(stack)
    assert points(api, shop) == {"available": 0, "pending": 0}
    check_invariants(service, sid, "m1")


def test_a_poison_message_is_parked_with_its_reason_and_the_batch_goes_on(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], member: str
) -> None:
    sid = shop["shop_id"]
    send(stack, sid, paid("o1", currency="USD"))  # the program is in CNY
    send(stack, sid, paid("o2"))
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=stack.queues["OrdersQueue"], MessageBody="not json at all")
    responses = drain(stack)
    assert all(r["batchItemFailures"] == [] for r in responses)
    assert points(api, shop)["available"] == 100
    parked = dead_letters(stack)
    reasons = sorted(m["MessageAttributes"]["reason"]["StringValue"] for m in parked)
    assert len(parked) == 2
    assert any("data.currency" in r and "USD" in r for r in reasons)
    assert any("invalid" in m["MessageAttributes"]["code"]["StringValue"] for m in parked)
    assert json.loads(next(m["Body"] for m in parked if m["Body"].startswith("{")))["event"]["data"]["order_id"] == "o1"


def test_an_order_for_an_unknown_member_is_retried_then_parked_on_its_last_delivery(
    api: Api, stack: Stack, shop: dict[str, str]
) -> None:
    send(stack, shop["shop_id"], paid("o1", member_id="ghost"))
    responses = drain(stack)
    failures = [r for r in responses if r["batchItemFailures"]]
    assert len(failures) == 4  # deliveries 1-4 fail and are retried; the 5th parks it with its reason
    parked = dead_letters(stack)
    assert len(parked) == 1
    assert "ghost" in parked[0]["MessageAttributes"]["reason"]["StringValue"]


def test_a_payment_dated_in_the_future_is_parked(api: Api, stack: Stack, shop: dict[str, str], member: str) -> None:
    send(stack, shop["shop_id"], paid("o1", paid_at="2099-01-01T00:00:00Z"))
    drain(stack)
    parked = dead_letters(stack)
    assert len(parked) == 1 and "paid_at" in parked[0]["MessageAttributes"]["reason"]["StringValue"]
