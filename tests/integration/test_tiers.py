"""Tiers: rise at once when an order crosses a threshold, fall only at a review; all on moto."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.runtime import Services
from loyalty.store import members as member_store
from tests.conftest import Api
from tests.helpers import check_invariants, drain, paid, refunded, send

NOW = datetime.now(UTC).replace(microsecond=0)
LADDER = [
    {"name": "normal", "threshold": 0, "multiplier": 1},
    {"name": "silver", "threshold": 1000, "multiplier": 1.2},
    {"name": "gold", "threshold": 5000, "multiplier": 1.5, "discount_percent": 5},
    {"name": "diamond", "threshold": 20000, "multiplier": 2, "birthday_coupons": ["tpl-cake"]},
]


def days_ago(days: float) -> str:
    return (NOW - timedelta(days=days)).isoformat()


def program(**overrides: Any) -> dict[str, Any]:
    return {
        "tiers": LADDER,
        "tier_metric": "spend",
        "tier_window_days": 365,
        "tier_valid_days": 365,
        "tier_downgrade": "one_down",
        **overrides,
    }


@pytest.fixture
def sid(api: Api, shop: dict[str, str]) -> str:
    shop_id = shop["shop_id"]
    assert api.call("PUT", f"/v1/shops/{shop_id}/program", key=shop["api_key"], body=program())[0] == 200
    api.call("POST", f"/v1/shops/{shop_id}/members", key=shop["api_key"], body={"member_id": "m1"})
    return shop_id


def buy(stack: Stack, shop_id: str, order: str, total: str, when: str) -> None:
    send(stack, shop_id, paid(order, total=total, paid_at=when))
    drain(stack)


def member(api: Api, shop: dict[str, str], member_id: str = "m1") -> dict[str, Any]:
    status, body = api.call("GET", f"/v1/shops/{shop['shop_id']}/members/{member_id}", key=shop["api_key"])
    assert status == 200
    return dict(body)


def review(time: datetime) -> dict[str, Any]:
    event = lambdas.schedule_event(time.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return dict(lambdas.invoke(lambdas.functions()["ReviewTiersFunction"], event))


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ([{"name": "a", "threshold": 10}], "first tier"),
        ([{"name": "a", "threshold": 0}, {"name": "b", "threshold": 0}], "rise"),
        ([{"name": "a", "threshold": 0}, {"name": "a", "threshold": 5}], "unique"),
        ([{"name": "a", "threshold": 0}, {"name": "b", "threshold": "x"}], "threshold"),
    ],
)
def test_a_bad_ladder_is_refused(api: Api, shop: dict[str, str], tiers: list[dict[str, Any]], message: str) -> None:
    status, body = api.call("PUT", f"/v1/shops/{shop['shop_id']}/program", key=shop["api_key"], body={"tiers": tiers})
    assert (status == 400 and body["error"]["field"].startswith("tiers")) or message in body["error"]["message"]
    assert status == 400


def test_new_members_start_on_the_base_tier(api: Api, shop: dict[str, str], sid: str) -> None:
    body = member(api, shop)
    assert (body["tier"], body["tier_review_at"]) == ("normal", None)


def test_crossing_a_threshold_upgrades_at_once_and_the_tier_multiplies_earning(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], sid: str
) -> None:
    buy(stack, sid, "o1", "600.00", days_ago(30))
    assert member(api, shop)["tier"] == "normal"
    buy(stack, sid, "o2", "500.00", days_ago(20))  # 1,100 in the window: silver, earned at the old rate
    body = member(api, shop)
    assert body["tier"] == "silver" and body["points"]["available"] == 1100
    assert body["tier_review_at"].startswith((NOW - timedelta(days=20) + timedelta(days=365)).date().isoformat())
    buy(stack, sid, "o3", "100.00", days_ago(10))  # silver earns 1.2x
    assert member(api, shop)["points"]["available"] == 1100 + 120
    buy(stack, sid, "o4", "19000.00", days_ago(5))  # straight to diamond, skipping gold
    assert member(api, shop)["tier"] == "diamond"
    history = member_store.tier_history(service.db, sid, "m1")
    assert [(c.from_tier, c.to_tier, c.reason) for c in history] == [
        (None, "silver", "upgrade"),
        ("silver", "diamond", "upgrade"),
    ]
    check_invariants(service, sid, "m1")


def test_refunds_lower_the_metric_but_never_demote_before_the_review(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], sid: str
) -> None:
    buy(stack, sid, "o1", "1200.00", days_ago(10))
    assert member(api, shop)["tier"] == "silver"
    send(stack, sid, refunded("o1", "r1", "1200.00"))
    drain(stack)
    body = member(api, shop)
    assert body["tier"] == "silver" and body["points"]["available"] == 0
    assert service.members.member(sid, "m1").tier.qualifying == {(NOW - timedelta(days=10)).date().isoformat(): 0}


def test_spending_points_does_not_lower_the_metric(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], sid: str
) -> None:
    buy(stack, sid, "o1", "1000.00", days_ago(100))  # silver, reviewed 365 days later
    buy(stack, sid, "o2", "1000.00", days_ago(50))  # spent again during the tier year
    api.call(
        "POST",
        f"/v1/shops/{sid}/members/m1/redemptions",
        key=shop["api_key"],
        body={"points": 2200, "reason": "all of it"},
        headers={"Idempotency-Key": "k"},
    )
    report = review(NOW + timedelta(days=265, seconds=1))  # o1 has left the window, o2 has not
    assert report["applied"] == 1
    body = member(api, shop)
    assert body["tier"] == "silver" and body["points"]["available"] == 0  # retained on o2 alone
    assert [c.reason for c in member_store.tier_history(service.db, sid, "m1")] == ["upgrade", "retained"]


@pytest.mark.parametrize(("policy", "after"), [("one_down", "gold"), ("recompute", "normal")])
def test_a_failed_review_moves_down_per_policy(
    api: Api, stack: Stack, shop: dict[str, str], sid: str, policy: str, after: str
) -> None:
    api.call("PUT", f"/v1/shops/{sid}/program", key=shop["api_key"], body=program(tier_downgrade=policy))
    buy(stack, sid, "o1", "25000.00", days_ago(364))
    assert member(api, shop)["tier"] == "diamond"
    assert review(NOW)["applied"] == 0  # not due yet
    report = review(NOW + timedelta(days=2))  # due, and the order has left the 365-day window
    assert (report["due"], report["applied"]) == (1, 1)
    assert member(api, shop)["tier"] == after
    assert review(NOW + timedelta(days=2))["applied"] == 0  # re-run: nothing twice


def test_editing_the_ladder_never_demotes_before_the_review(
    api: Api, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    buy(stack, sid, "o1", "1500.00", days_ago(10))
    assert member(api, shop)["tier"] == "silver"
    harder = [dict(t) for t in LADDER]
    harder[1]["threshold"], harder[2]["threshold"] = 3000, 6000
    assert api.call("PUT", f"/v1/shops/{sid}/program", key=shop["api_key"], body=program(tiers=harder))[0] == 200
    buy(stack, sid, "o2", "10.00", days_ago(5))
    assert member(api, shop)["tier"] == "silver"
    review(NOW + timedelta(days=356))  # the review applies the new ladder: 1,510 < 3,000, one down
    assert member(api, shop)["tier"] == "normal"


def test_points_metric(api: Api, stack: Stack, shop: dict[str, str], sid: str) -> None:
    api.call(
        "PUT",
        f"/v1/shops/{sid}/program",
        key=shop["api_key"],
        body=program(
            tier_metric="points",
            tiers=[{"name": "normal", "threshold": 0}, {"name": "vip", "threshold": 150, "multiplier": 2}],
        ),
    )
    buy(stack, sid, "o1", "100.00", days_ago(3))
    assert member(api, shop)["tier"] == "normal"
    buy(stack, sid, "o2", "50.00", days_ago(2))
    assert member(api, shop)["tier"] == "vip"
    buy(stack, sid, "o3", "10.00", days_ago(1))
    assert member(api, shop)["points"]["available"] == 170


def test_a_late_order_counts_in_the_window_of_its_own_time(
    api: Api, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    buy(stack, sid, "recent", "800.00", days_ago(1))
    buy(stack, sid, "ancient", "800.00", days_ago(400))  # heard of late: its window ends 400 days ago
    assert member(api, shop)["tier"] == "normal"


def test_tier_changes_are_published(api: Api, stack: Stack, shop: dict[str, str], sid: str) -> None:
    sqs, events = boto3.client("sqs"), boto3.client("events")
    url = sqs.create_queue(QueueName=f"{stack.buses['LoyaltyEventBus']}-tiers")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    bus = stack.buses["LoyaltyEventBus"]
    events.put_rule(Name="tiers", EventBusName=bus, EventPattern=json.dumps({"detail-type": ["tier.changed"]}))
    events.put_targets(Rule="tiers", EventBusName=bus, Targets=[{"Id": "q", "Arn": arn}])
    buy(stack, sid, "o1", "5000.00", days_ago(1))
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    details = [json.loads(m["Body"])["detail"] for m in messages]
    assert [(d["member_id"], d["from_tier"], d["to_tier"], d["reason"]) for d in details] == [
        ("m1", None, "gold", "upgrade")
    ]
    assert review(NOW)["published"] == 0  # the outbox is empty: it was published at once


def test_a_review_already_overdue_when_filed_is_still_found(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], sid: str
) -> None:
    """A late order whose tier validity ended before it arrived: its review is due in the past. It is filed
    under today, the earliest day a run still visits, not under its due day, which no run will visit again."""
    short = program(tier_valid_days=30)
    assert api.call("PUT", f"/v1/shops/{sid}/program", key=shop["api_key"], body=short)[0] == 200
    assert review(NOW)["applied"] == 0  # a run has been: the next starts from today
    buy(stack, sid, "late", "1200.00", days_ago(40))  # silver, review due 10 days ago
    assert member(api, shop)["tier_review_at"] < NOW.isoformat()
    report = review(NOW + timedelta(minutes=1))
    assert report["applied"] == 1
    assert member(api, shop)["tier_review_at"] > NOW.isoformat()  # reviewed (kept: 1,200 in the window)
