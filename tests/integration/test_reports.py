"""The shops' figures, kept from the table's stream by the aggregator: exactly once under replayed batches,
read per day and to date, and reconciled with the members' own balances."""

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from infra.local.streams import StreamPoller
from loyalty.domain.reports import FIGURE_TYPES
from loyalty.runtime import Services
from tests.conftest import Api
from tests.helpers import cancelled, drain, paid, refunded, run_expiry, send


def poller(stack: Stack, *, trim: bool = True) -> StreamPoller:
    return StreamPoller(lambdas.functions()["AggregatesFunction"], stack.tables["LoyaltyTable"], trim=trim)


def records(stack: Stack) -> list[dict[str, Any]]:
    """Every record on the table's stream now, as Lambda would deliver them."""
    return poller(stack, trim=False).records()


def aggregate(stack: Stack, events: list[dict[str, Any]]) -> Any:
    """Deliver these records as one batch of the stream's (one) shard, as Lambda would."""
    reader = poller(stack, trim=False)
    (shard,) = reader.streams.describe_stream(StreamArn=reader.arn)["StreamDescription"]["Shards"]
    return lambdas.invoke(lambdas.functions()["AggregatesFunction"], reader.event(shard["ShardId"], events))


def call(api: Api, shop: dict[str, str], method: str, path: str, body: Any = None, **headers: str) -> Any:
    status, answer = api.call(
        method, f"/v1/shops/{shop['shop_id']}{path}", key=shop["api_key"], body=body, headers=headers
    )
    assert status < 300, (status, answer)
    return answer


@pytest.fixture
def history(api: Api, stack: Stack, shop: dict[str, str]) -> dict[str, Any]:
    """A small shop's life: a program with tiers and points as cash, members, orders, a refund, a cancellation,
    a redemption, an adjustment down, a coupon claimed and used."""
    call(
        api,
        shop,
        "PUT",
        "/program",
        {
            "currency": "CNY",
            "timezone": "Asia/Shanghai",
            "points_offset": {"points_per_unit": 100},
            "tiers": [{"name": "normal", "threshold": 0}, {"name": "gold", "threshold": 300}],
        },
    )
    for member in ("m1", "m2", "m3"):
        call(api, shop, "POST", "/members", {"member_id": member})
    template = call(
        api,
        shop,
        "POST",
        "/coupon-templates",
        {
            "name": "10 off 50",
            "kind": "amount_off",
            "amount": "10.00",
            "min_spend": "50.00",
            "stock": 10,
            "valid_days_after_claim": 30,
        },
    )
    coupon = call(
        api,
        shop,
        "POST",
        "/members/m1/coupons",
        {"template_id": template["template_id"]},
        **{"Idempotency-Key": "claim-1"},
    )
    now = datetime.now(UTC).replace(microsecond=0)
    stamp = (now - timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    order = paid("o1", "m1", "120.00", paid_at=stamp)
    order["data"]["coupon_codes"] = [coupon["code"]]
    send(stack, shop["shop_id"], order, "d1")
    send(stack, shop["shop_id"], paid("o2", "m2", "400.00", paid_at=stamp), "d2")
    send(stack, shop["shop_id"], paid("o3", "m3", "50.00", paid_at=stamp), "d3")
    drain(stack)
    send(stack, shop["shop_id"], refunded("o2", "r1", "100.00"), "d4")
    send(stack, shop["shop_id"], cancelled("o3"), "d5")
    drain(stack)
    call(api, shop, "POST", "/members/m2/redemptions", {"points": 30, "reason": "gift"}, **{"Idempotency-Key": "rd-1"})
    call(api, shop, "POST", "/members/m1/adjustments", {"points": -5, "reason": "typo"}, **{"Idempotency-Key": "adj-1"})
    return {"coupon": coupon}


def balances(api: Api, shop: dict[str, str], members: tuple[str, ...] = ("m1", "m2", "m3")) -> int:
    return sum(call(api, shop, "GET", f"/members/{member}")["points"]["available"] for member in members)


def test_the_summary_explains_the_outstanding_points_and_reconciles(
    api: Api, stack: Stack, shop: dict[str, str], history: dict[str, Any]
) -> None:
    poller(stack).drain()
    summary = call(api, shop, "GET", "/reports/summary")
    points = summary["points"]
    outstanding = balances(api, shop)
    assert points["outstanding"] == outstanding > 0
    assert points["issued"] - points["spent"] - points["expired"] - points["clawed_back"] - points["removed"] == (
        outstanding
    )
    assert points["spent"] == 30 and points["removed"] == 5
    assert points["clawed_back"] > 0  # the refund's share and the cancellation
    assert points["liability"] == outstanding  # 100 points a yuan: a point is a fen
    assert summary["members"]["total"] == 3
    assert summary["members"]["enrolled"] == 3
    assert summary["members"]["by_tier"] == {"gold": 1, "normal": 2}  # m2 spent 400 (a refund does not demote)
    assert summary["members"]["active"] == 3  # each paid today (m2 also redeemed: still once)
    assert summary["coupons"] == {"issued": 1, "used": 1, "expired": 0, "discount": 1000}
    assert summary["orders"] == {"count": 2, "gmv": 12000 + 30000}  # o3 cancelled; o2 less its refund
    report = call(api, shop, "GET", "/reports/reconciliation")
    assert report["complete"] and report["in_balance"], report
    assert report["drift"]["points_outstanding"] == 0 and report["members_read"] == 3


def test_a_replayed_or_resplit_stream_counts_nothing_twice(
    api: Api, stack: Stack, shop: dict[str, str], history: dict[str, Any]
) -> None:
    events = records(stack)
    assert len(events) > 20
    aggregate(stack, events)
    once = call(api, shop, "GET", "/reports/summary")
    # Lambda delivers again after a failure: the whole batch, from a record on, or halved (bisect): nothing moves.
    aggregate(stack, events)
    aggregate(stack, events[len(events) // 3 :])
    middle = len(events) // 2
    aggregate(stack, events[:middle])
    aggregate(stack, events[middle:])
    rng = random.Random(7)
    for _ in range(5):
        start = rng.randrange(len(events))
        aggregate(stack, events[start : start + rng.randrange(1, 40)])
    assert call(api, shop, "GET", "/reports/summary") == once
    assert call(api, shop, "GET", "/reports/reconciliation")["in_balance"]


def test_a_batch_delivered_in_pieces_in_order_counts_as_one(
    api: Api, stack: Stack, shop: dict[str, str], history: dict[str, Any]
) -> None:
    events = records(stack)
    for first in range(0, len(events), 7):  # small batches, each partly repeating the one before
        aggregate(stack, events[max(first - 3, 0) : first + 7])
    summary = call(api, shop, "GET", "/reports/summary")
    assert summary["points"]["outstanding"] == balances(api, shop)
    assert call(api, shop, "GET", "/reports/reconciliation")["in_balance"]


def test_the_local_mapping_batches_as_the_template_says(
    api: Api, stack: Stack, shop: dict[str, str], history: dict[str, Any]
) -> None:
    """BatchSize and MaximumBatchingWindowInSeconds come from the template: a short batch waits out the window
    (locally as on AWS, the aggregator runs per batch, not per record), a full one goes at once."""
    function = lambdas.functions()["AggregatesFunction"]
    assert (function.stream_batch_size, function.stream_window) == (500, 5.0)
    total = len(records(stack))
    waiting = StreamPoller(function, stack.tables["LoyaltyTable"], window=3600)
    assert waiting.poll_once() == 0 and waiting.poll_once() == 0  # fewer than 500 records, within the window
    assert call(api, shop, "GET", "/reports/summary")["orders"]["count"] == 0
    small = StreamPoller(function, stack.tables["LoyaltyTable"], batch_size=5, window=3600)
    assert small.poll_once() == 5  # a full batch goes at once
    assert waiting.drain() >= total - 5  # the rest (and what the aggregator wrote), without waiting: drain flushes
    assert call(api, shop, "GET", "/reports/summary")["points"]["outstanding"] == balances(api, shop)
    # Through the Streams API (a stack on another endpoint), as the in-process read above.
    members = call(api, shop, "GET", "/reports/summary")["members"]["total"]
    call(api, shop, "POST", "/members", {"member_id": "late"})
    assert StreamPoller(function, stack.tables["LoyaltyTable"], trim=False).drain() > 0
    assert call(api, shop, "GET", "/reports/summary")["members"]["total"] == members + 1


def test_daily_rows_give_each_days_flows_and_its_levels_at_the_days_end(
    api: Api, stack: Stack, shop: dict[str, str], service: Services
) -> None:
    call(
        api,
        shop,
        "PUT",
        "/program",
        {"currency": "CNY", "timezone": "Asia/Shanghai", "expiry": {"purchase": {"policy": "never"}}},
    )
    call(api, shop, "POST", "/members", {"member_id": "m1"})
    today = datetime.now(UTC).astimezone(ZoneInfo("Asia/Shanghai")).date()
    send(stack, shop["shop_id"], paid("o1", "m1", "100.00"), "d1")  # paid 2026-11-01 10:00Z, earned now
    drain(stack)
    call(api, shop, "POST", "/members/m1/redemptions", {"points": 40, "reason": "x"}, **{"Idempotency-Key": "r1"})
    poller(stack).drain()
    first, last = today - timedelta(days=2), today
    report = call(api, shop, "GET", f"/reports/daily?from={first}&until={last}")
    days = {row["day"]: row for row in report["days"]}
    assert list(days) == [str(first + timedelta(days=n)) for n in range(3)]
    assert days[str(today)]["points"]["issued"] == 100 and days[str(today)]["points"]["spent"] == 40
    assert days[str(today)]["points"]["outstanding"] == 60
    assert days[str(first)]["points"]["outstanding"] == 0 and days[str(first)]["members"]["total"] == 0
    assert days[str(today)]["members"]["total"] == 1


def test_a_daily_report_names_a_bad_range(api: Api, shop: dict[str, str]) -> None:
    status, body = api.call(
        "GET", f"/v1/shops/{shop['shop_id']}/reports/daily?from=2026-02-01&until=2026-01-01", key=shop["api_key"]
    )
    assert status == 400 and body["error"]["field"] == "until"
    status, body = api.call("GET", f"/v1/shops/{shop['shop_id']}/reports/daily?from=2026-02-30", key=shop["api_key"])
    assert status == 400


def test_a_refused_transaction_leaves_nothing_on_the_stream(stack: Stack) -> None:
    client = boto3.client("dynamodb")
    table = stack.tables["LoyaltyTable"]
    before = len(records(stack))
    with pytest.raises(client.exceptions.TransactionCanceledException):
        client.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"PK": {"S": "SHOP#x#A"}, "SK": {"S": "A"}}}},
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"PK": {"S": "SHOP#x#B"}, "SK": {"S": "B"}},
                        "ConditionExpression": "attribute_exists(PK)",
                    }
                },
            ]
        )
    assert len(records(stack)) == before


def test_expired_points_are_counted_on_their_day(
    api: Api, stack: Stack, shop: dict[str, str], service: Services
) -> None:
    call(
        api,
        shop,
        "PUT",
        "/program",
        {"currency": "CNY", "timezone": "Asia/Shanghai", "expiry": {"purchase": {"policy": "days", "days": 30}}},
    )
    call(api, shop, "POST", "/members", {"member_id": "m1"})
    send(stack, shop["shop_id"], paid("o1", "m1", "100.00"), "d1")
    drain(stack)
    run_expiry(stack, datetime.now(UTC) + timedelta(days=40))
    poller(stack).drain()
    summary = call(api, shop, "GET", "/reports/summary")
    assert summary["points"]["issued"] == 100 and summary["points"]["expired"] == 100
    assert summary["points"]["outstanding"] == 0 == balances(api, shop, ("m1",))


def test_the_event_source_mapping_delivers_exactly_the_items_figures_are_made_of() -> None:
    function = lambdas.functions()["AggregatesFunction"]
    patterns = [json.loads(f["Pattern"]) for f in function.stream_filters]
    images = {image for pattern in patterns for image in pattern["dynamodb"]}
    assert images == {"NewImage", "OldImage"}
    for pattern in patterns:
        (image,) = pattern["dynamodb"].values()
        assert set(image["type"]["S"]) == FIGURE_TYPES
