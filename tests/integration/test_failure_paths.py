"""What a careless sender, an attacker or an outage does to the edges: always a clear 4xx or a 503 that is retried,
never a 500 or an event accepted and then lost."""

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty import runtime
from loyalty.domain.members import Profile
from loyalty.runtime import Services
from loyalty.service.orders import Orders
from tests.conftest import Api
from tests.helpers import dead_letters, drain, paid, send, signed_headers

DEEP = ("[" * 100_000 + "]" * 100_000).encode()


def queued(stack: Stack) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.queues["OrdersQueue"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def webhook(api: Api, shop: dict[str, str], body: bytes, msg_id: str = "msg_1") -> tuple[int, Any]:
    headers = signed_headers(shop["webhook_secret"], body, msg_id=msg_id)
    return api.call("POST", f"/v1/shops/{shop['shop_id']}/webhooks/orders", raw=body, headers=headers)


# ---------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("method", "path"),
    [("PUT", "/program"), ("POST", "/members"), ("POST", "/checkout/quote"), ("POST", "/coupon-templates")],
)
def test_deeply_nested_json_is_a_400_on_every_body_route(
    api: Api, shop: dict[str, str], method: str, path: str
) -> None:
    status, body = api.call(method, f"/v1/shops/{shop['shop_id']}{path}", key=shop["api_key"], raw=DEEP)
    assert status == 400, body
    assert body["error"]["field"] == "body"


def test_a_signed_deeply_nested_webhook_is_a_400(api: Api, shop: dict[str, str], stack: Stack) -> None:
    assert webhook(api, shop, DEEP)[0] == 400
    assert queued(stack) == 0


def test_strangers_do_not_learn_the_schema(api: Api, shop: dict[str, str]) -> None:
    """Validation answers only callers who may use the route: others get 401 or 403 whatever the body."""
    members = f"/v1/shops/{shop['shop_id']}/members"
    for bad in ({"member_id": ""}, {"nonsense": 1}):
        assert api.call("POST", members, body=bad)[0] == 401
        assert api.call("POST", members, key="shp_0123456789abcdef.forged", body=bad)[0] == 401
        assert api.call("POST", members, raw=DEEP)[0] == 401
        status, body = api.call("POST", members, key=shop["api_key"], body=bad)
        assert status == 400 and "field" in body["error"]
    other = api.call("POST", "/v1/shops", key="op_test_key", body={"name": "Other"})[1]
    assert api.call("POST", members, key=other["api_key"], body={"member_id": ""})[0] == 403
    assert api.call("POST", "/v1/shops", body={"name": ""})[0] == 401  # the operator route too


# ---------------------------------------------------------------- webhooks accept only what the consumer can read


def test_a_webhook_id_too_long_to_queue_is_refused_not_parked(api: Api, shop: dict[str, str], stack: Stack) -> None:
    status, body = webhook(api, shop, json.dumps(paid("A1")).encode(), msg_id="m" * 300)
    assert status == 400 and body["error"]["field"] == "webhook-id"
    assert queued(stack) == 0


@pytest.mark.parametrize("paid_at", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "1999-12-31T23:59:59Z"])
def test_an_absurd_paid_at_is_refused_at_the_edge(api: Api, shop: dict[str, str], stack: Stack, paid_at: str) -> None:
    status, body = webhook(api, shop, json.dumps(paid("A1", paid_at=paid_at)).encode())
    assert status == 400 and body["error"]["field"] == "data.paid_at"
    assert queued(stack) == 0


def test_an_absurd_paid_at_put_on_the_queue_directly_is_parked_with_its_reason(
    service: Services, shop: dict[str, str], stack: Stack
) -> None:
    service.members.enrol(shop["shop_id"], Profile(member_id="m1"))
    send(stack, shop["shop_id"], paid("A1", paid_at="0001-01-01T00:00:00Z"))
    drain(stack)
    (parked,) = dead_letters(stack)
    assert "paid_at" in parked["MessageAttributes"]["reason"]["StringValue"]


def test_a_signed_order_too_big_to_queue_is_a_413(api: Api, shop: dict[str, str], stack: Stack) -> None:
    lines = [{"sku": "茶" * 128, "category": "绿茶" * 32, "quantity": 1, "amount": "1.00"} for _ in range(500)]
    body = json.dumps(paid("A1", total="500.00", lines=lines)).encode()
    status, answer = webhook(api, shop, body)
    assert status == 413 and answer["error"]["code"] == "too_large"
    assert queued(stack) == 0


# ---------------------------------------------------------------- outages


@pytest.fixture
def unreachable() -> Iterator[Any]:
    """Make one AWS service unreachable (a closed port on loopback) for the functions' clients."""
    names: list[str] = []

    def cut(service: str) -> None:
        name = f"AWS_ENDPOINT_URL_{service.upper()}"
        os.environ[name] = "http://127.0.0.1:9"  # discard: nothing listens
        names.append(name)
        runtime.reset()

    yield cut
    for name in names:
        os.environ.pop(name, None)
    runtime.reset()


def test_dynamodb_unreachable_is_a_503_with_retry_after(api: Api, shop: dict[str, str], unreachable: Any) -> None:
    unreachable("dynamodb")
    status, body = api.call("GET", f"/v1/shops/{shop['shop_id']}/members/m1", key=shop["api_key"])
    assert status == 503 and body["error"]["code"] == "retry"


def test_sqs_unreachable_makes_the_webhook_answer_503_so_the_platform_retries(
    api: Api, shop: dict[str, str], stack: Stack, unreachable: Any
) -> None:
    body = json.dumps(paid("A1")).encode()
    webhook(api, shop, b"{}")  # the shop is cached by now, as in a warm container
    unreachable("sqs")
    assert webhook(api, shop, body)[0] == 503


def test_an_outage_in_the_consumer_is_retried_then_parked_with_its_reason_and_applied_once_back(
    service: Services, shop: dict[str, str], stack: Stack, unreachable: Any
) -> None:
    service.members.enrol(shop["shop_id"], Profile(member_id="m1"))
    send(stack, shop["shop_id"], paid("A1"))
    message = boto3.client("sqs").receive_message(
        QueueUrl=stack.queues["OrdersQueue"], AttributeNames=["All"], MessageAttributeNames=["All"]
    )["Messages"]
    orders = lambdas.functions()["OrdersFunction"]
    arn = "arn:aws:sqs:us-east-1:123456789012:OrdersQueue"
    unreachable("dynamodb")
    first = lambdas.invoke(orders, lambdas.sqs_event(message, arn))
    assert len(first["batchItemFailures"]) == 1  # retried by SQS
    last = [{**message[0], "Attributes": {**message[0]["Attributes"], "ApproximateReceiveCount": "5"}}]
    assert lambdas.invoke(orders, lambdas.sqs_event(last, arn)) == {"batchItemFailures": []}
    (parked,) = dead_letters(stack)
    assert "dynamodb is unreachable" in parked["MessageAttributes"]["reason"]["StringValue"]
    os.environ.pop("AWS_ENDPOINT_URL_DYNAMODB")
    runtime.reset()
    # DynamoDB is back: the redelivery (or the DLQ re-driven) settles it, once.
    assert lambdas.invoke(orders, lambdas.sqs_event(message, arn)) == {"batchItemFailures": []}
    assert lambdas.invoke(orders, lambdas.sqs_event(message, arn)) == {"batchItemFailures": []}
    assert runtime.services().members.member(shop["shop_id"], "m1").balance.available == 100


def test_an_unexpected_error_at_the_last_delivery_is_parked_with_its_reason(
    service: Services, shop: dict[str, str], stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.members.enrol(shop["shop_id"], Profile(member_id="m1"))

    def broken(*_: Any, **__: Any) -> str:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Orders, "apply", broken)
    send(stack, shop["shop_id"], paid("A1"))
    drain(stack, rounds=10)
    (parked,) = dead_letters(stack)
    assert parked["MessageAttributes"]["reason"]["StringValue"] == "RuntimeError: a bug"


# ---------------------------------------------------------------- cost of strangers


def test_an_unknown_key_costs_one_read_then_none(api: Api, shop: dict[str, str]) -> None:
    db = runtime.services().db
    before = db.requests["GetItem"]
    for _ in range(3):
        assert (
            api.call("GET", "/v1/shops/shp_00000000000000ff/program", key="shp_00000000000000ff.key_00000000000f.x")[0]
            == 401
        )
    assert db.requests["GetItem"] - before == 1
    for _ in range(3):  # not even one for a key that is not of our shape
        assert api.call("GET", "/v1/shops/shp_00000000000000ff/program", key="nonsense")[0] == 401
    assert db.requests["GetItem"] - before == 1
