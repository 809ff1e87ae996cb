"""Every function has a sample event in events/, and each sample runs through its handler."""

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.domain.members import Profile
from loyalty.domain.program import Program
from loyalty.runtime import Services
from loyalty.webhooks import standard
from tests.helpers import dead_letters

EVENTS = Path(__file__).resolve().parents[2] / "events"


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((EVENTS / name).read_text()))


def test_every_function_has_a_sample_event() -> None:
    text = (EVENTS / "README.md").read_text()
    for logical_id in lambdas.functions():
        assert f"| {logical_id} |" in text, f"events/README.md lists no sample for {logical_id}"


def test_api_samples(stack: Stack) -> None:
    os.environ["OPERATOR_KEY_SHA256"] = hashlib.sha256(b"op_example_operator_key").hexdigest()
    api = lambdas.functions()["ApiFunction"]
    response = lambdas.invoke(api, sample("api_create_shop.json"))
    assert response["statusCode"] == 201
    assert lambdas.invoke(api, sample("api_get_member.json"))["statusCode"] == 401  # example key, unknown shop


def test_webhook_sample_is_refused_until_signed(stack: Stack) -> None:
    response = lambdas.invoke(lambdas.functions()["WebhooksFunction"], sample("webhook_order_paid.json"))
    assert response["statusCode"] == 401


def test_webhook_sample_signed_for_a_real_shop_is_queued(stack: Stack, service: Services) -> None:
    """The sample is what the template's HTTP API sends (payload format 1.0, header names in lower case): the
    function reads it as it reads the REST API's events."""
    shop = service.shops.create_shop("Sample")
    event = json.loads(json.dumps(sample("webhook_order_paid.json")).replace("shp_0123456789abcdef", shop["shop_id"]))
    assert event["version"] == "1.0" and event["requestContext"]["stage"] == "$default"
    stamp = int(time.time())
    signature = standard.sign(shop["webhook_secret"], "msg_2Kx9", stamp, event["body"].encode())
    event["headers"] |= {"webhook-timestamp": str(stamp), "webhook-signature": signature}
    event["multiValueHeaders"] |= {"webhook-timestamp": [str(stamp)], "webhook-signature": [signature]}
    response = lambdas.invoke(lambdas.functions()["WebhooksFunction"], event)
    assert response["statusCode"] == 202, response
    assert json.loads(response["body"]) == {"accepted": True, "delivery_id": "msg_2Kx9"}
    queued = boto3.client("sqs").receive_message(QueueUrl=stack.queues["OrdersQueue"], MaxNumberOfMessages=10)
    [message] = queued["Messages"]
    assert json.loads(message["Body"])["event"]["data"]["order_id"] == "A100"


def test_orders_sample_for_an_unknown_shop_is_parked(stack: Stack) -> None:
    result = lambdas.invoke(lambdas.functions()["OrdersFunction"], sample("orders_sqs_batch.json"))
    assert result == {"batchItemFailures": []}
    assert len(dead_letters(stack)) == 3


def test_orders_sample_applies_for_a_real_shop(stack: Stack, service: Services) -> None:
    shop_id = service.shops.create_shop("Sample")["shop_id"]
    service.shops.set_program(shop_id, Program.model_validate({"category_multipliers": {"tobacco": 0}}))
    service.members.enrol(shop_id, Profile(member_id="m1"))
    event = json.loads(json.dumps(sample("orders_sqs_batch.json")).replace("shp_0123456789abcdef", shop_id))
    assert lambdas.invoke(lambdas.functions()["OrdersFunction"], event) == {"batchItemFailures": []}
    # 120 earned (tobacco excluded); 75.00 of 150.00 refunded keeps floor(120 x 75 / 150) = 60
    assert service.members.member(shop_id, "m1").balance.available == 60


def test_stream_sample_counts_once_for_a_real_shop(stack: Stack, service: Services) -> None:
    shop_id = service.shops.create_shop("Sample")["shop_id"]
    event = json.loads(json.dumps(sample("stream_aggregates_batch.json")).replace("shp_0123456789abcdef", shop_id))
    aggregates = lambdas.functions()["AggregatesFunction"]
    assert lambdas.invoke(aggregates, event) == {"state": {}, "batchItemFailures": []}
    assert lambdas.invoke(aggregates, event) == {"state": {}, "batchItemFailures": []}  # again: counted once
    summary = service.reports.summary(shop_id)
    assert summary["points"]["issued"] == 100 == summary["points"]["outstanding"]
    assert summary["members"]["total"] == 1


def test_coupon_grant_sample_for_an_unknown_shop_is_parked(stack: Stack) -> None:
    result = lambdas.invoke(lambdas.functions()["CouponGrantsFunction"], sample("coupon_grants_sqs_batch.json"))
    assert result == {"batchItemFailures": []}
    parked = dead_letters(stack, "CouponGrantsDeadLetterQueue")
    assert len(parked) == 1 and parked[0]["MessageAttributes"]["code"]["StringValue"] == "not_found"


@pytest.mark.parametrize(
    ("function", "name"),
    [
        ("ActivatePendingFunction", "activate_pending"),
        ("RemindExpiringFunction", "remind_expiring"),
        ("ReviewTiersFunction", "review_tiers"),
        ("ExpireCouponsFunction", "expire_coupons"),
        ("GrantBirthdaysFunction", "grant_birthdays"),
        ("GrantMonthlyCouponsFunction", "grant_monthly_coupons"),
        ("PublishLotteryDigestsFunction", "publish_lottery_digests"),
        ("ReviewSegmentsFunction", "review_segments"),
    ],
)
def test_schedule_samples(stack: Stack, function: str, name: str) -> None:
    event = sample(f"schedule_{name}.json")
    report = lambdas.invoke(lambdas.functions()[function], event)
    assert report["time"].startswith(event["time"][:19]) and report["complete"] is True


def test_export_sample_starts_one_export_a_day(stack: Stack) -> None:
    event = sample("schedule_export_table.json")
    export = lambdas.functions()["ExportTableFunction"]
    started = lambdas.invoke(export, event)
    assert started["day"] == "2026-11-29" and started["export_arn"].startswith("arn:aws:dynamodb:")
    assert lambdas.invoke(export, event) == started  # EventBridge's retry of the same run


def test_expiry_dispatch_sample_queues_every_day_shard_and_a_worker_expires_one(stack: Stack) -> None:
    event = sample("schedule_expire_points.json")
    report = lambdas.invoke(lambdas.functions()["ExpirePointsFunction"], event)
    assert report["time"].startswith(event["time"][:19]) and report["complete"] is True
    shards = int(os.environ.get("DUE_SHARDS", "32"))
    assert report["due"] == len(report["days"]) * shards  # one message per day-shard
    worker = lambdas.invoke(
        lambdas.functions()["ExpirePointsShardFunction"], sample("runs_expire_shard_sqs_batch.json")
    )
    assert worker == {"batchItemFailures": []}
