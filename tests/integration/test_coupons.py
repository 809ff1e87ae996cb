"""Coupons through the API, the order queue and the expiry run, on moto."""

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.runtime import Services
from tests.conftest import Api
from tests.helpers import (
    cancelled,
    capture_events,
    captured,
    check_invariants,
    dead_letters,
    drain,
    paid,
    refunded,
    send,
)

TODAY = datetime.now(UTC).replace(microsecond=0)


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


class Shop:
    """A shop with members m1 and m2, spoken to through the API."""

    def __init__(self, api: Api, shop: dict[str, str]) -> None:
        self.api, self.id, self.key = api, shop["shop_id"], shop["api_key"]
        for member in ("m1", "m2"):
            assert self.call("POST", "/members", {"member_id": member})[0] == 201

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/shops/{self.id}{path}", key=self.key, body=body, headers=headers)

    def template(self, **fields: Any) -> str:
        body = {"name": "20 off 199", "kind": "amount_off", "amount": "20.00", "min_spend": "199.00", "stock": 100}
        body |= {"valid_days_after_claim": 7} if "valid_until" not in fields else {}
        status, answer = self.call("POST", "/coupon-templates", body | fields)
        assert status == 201, answer
        return str(answer["template_id"])

    def claim(self, template_id: str, key: str, member: str = "m1") -> tuple[int, Any]:
        return self.call(
            "POST", f"/members/{member}/coupons", {"template_id": template_id}, headers={"Idempotency-Key": key}
        )

    def coupons(self, member: str = "m1", status: str | None = None) -> list[dict[str, Any]]:
        code, body = self.call("GET", f"/members/{member}/coupons" + (f"?status={status}" if status else ""))
        assert code == 200, body
        return list(body["items"])

    def program(self, **fields: Any) -> None:
        assert self.call("PUT", "/program", fields)[0] == 200


@pytest.fixture
def tea(api: Api, shop: dict[str, str]) -> Shop:
    return Shop(api, shop)


def order(order_id: str, total: str, codes: list[str], points: int = 0, member: str = "m1") -> dict[str, Any]:
    event = paid(order_id, member_id=member, total=total, paid_at=stamp(TODAY - timedelta(minutes=5)))
    event["data"] |= {"coupon_codes": codes, "points_used": points}
    return event


def test_template_claim_replay_and_listing(tea: Shop) -> None:
    template = tea.template(per_member_limit=2)
    status, first = tea.claim(template, "claim-1")
    assert status == 201 and first["code"] and first["coupon_id"].startswith("cpn_")
    assert tea.claim(template, "claim-1") == (201, first)  # a replay answers as the first call did
    assert tea.claim(template, "claim-2")[0] == 201
    status, over = tea.claim(template, "claim-3")
    assert (status, over["error"]["code"]) == (409, "limit_reached")
    listed = tea.coupons()
    assert {c["code"] for c in listed} >= {first["code"]} and len(listed) == 2
    assert listed[0]["status"] == "available" and listed[0]["amount"] == "20.00"
    status, view = tea.call("GET", f"/coupon-templates/{template}")
    assert (status, view["issued"], view["left"]) == (200, 2, 98)
    status, other = tea.claim(tea.template(), "claim-1")  # the same key for another template
    assert (status, other["error"]["field"]) == (409, "Idempotency-Key")


def test_stock_runs_out_with_a_409(tea: Shop) -> None:
    template = tea.template(stock=2, per_member_limit=5)
    assert [tea.claim(template, f"k{n}")[0] for n in range(3)] == [201, 201, 409]
    assert tea.claim(template, "k9")[1]["error"]["code"] == "out_of_stock"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "amount_off"}, "amount"),
        ({"kind": "percent_off", "amount": None}, "percent"),
        ({"amount": "20.001"}, "amount"),
        ({"stock": 0}, "stock"),
        ({"valid_until": "2027-01-01T00:00:00Z"}, "valid_until"),  # both validity forms
    ],
)
def test_bad_templates_name_the_field(tea: Shop, body: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {
        "name": "n",
        "kind": "amount_off",
        "amount": "5.00",
        "stock": 10,
        "valid_days_after_claim": 3,
    }
    merged = {k: v for k, v in (base | body).items() if v is not None}
    if body.get("kind") == "amount_off" and "amount" not in body:
        merged.pop("amount")
    status, answer = tea.call("POST", "/coupon-templates", merged)
    assert status == 400 and (field in answer["error"]["message"] or answer["error"]["field"] == field), answer


def test_claims_for_unknown_members_and_templates(tea: Shop) -> None:
    template = tea.template()
    assert tea.claim(template, "k1", member="ghost")[0] == 404
    status, body = tea.call(
        "POST", "/members/m1/coupons", {"template_id": "tpl_0123456789abcdef"}, {"Idempotency-Key": "k"}
    )
    assert (status, body["error"]["field"]) == (404, "template_id")
    assert tea.claim(template, "k1")[0] == 201  # the refused claim stored nothing against its key


def test_quote_breakdown_and_refusals(tea: Shop) -> None:
    tea.program(points_offset={"points_per_unit": 20, "max_share": 0.5}, coupons_per_order=2)
    full_reduction = tea.claim(tea.template(), "a")[1]["code"]
    percent = tea.claim(
        tea.template(kind="percent_off", amount=None, percent=10, min_spend="0", max_discount="5.00"), "b"
    )[1]
    other = tea.claim(tea.template(), "c", member="m2")[1]["code"]
    lines = [
        {"sku": "tea-1", "category": "tea", "amount": "150.00"},
        {"sku": "cup", "category": "ware", "amount": "60.00"},
    ]
    status, quote = tea.call(
        "POST", "/checkout/quote", {"member_id": "m1", "lines": lines, "coupon_codes": [full_reduction]}
    )
    assert status == 200, quote
    assert quote | {"discounts": None} == {
        "currency": "CNY",
        "subtotal": "210.00",
        "discounts": None,
        "points_used": 0,
        "points_offset": "0.00",
        "points_max": 1900,  # half of 190.00 at 20 points a yuan
        "payable": "190.00",
        "member_discount": "0.00",
        "points_to_earn": 190,  # what is paid earns, after the coupon
        "earning": {"base": 190, "lines": 190},
    }
    assert quote["discounts"] == [{"code": full_reduction, "amount": "20.00"}]
    status, both = tea.call(
        "POST",
        "/checkout/quote",
        {"member_id": "m1", "lines": lines, "coupon_codes": [full_reduction, percent["code"]]},
    )
    assert both["payable"] == "185.00"  # 10% of 190.00 capped at 5.00
    status, refused = tea.call("POST", "/checkout/quote", {"member_id": "m1", "lines": lines, "coupon_codes": [other]})
    assert status == 422 and refused["error"] | {"message": None} == {
        "code": "not_applicable",
        "message": None,
        "field": "coupon_codes[0]",
        "reason": "not_this_members",
    }
    status, unknown = tea.call("POST", "/checkout/quote", {"member_id": "m1", "lines": lines, "coupon_codes": ["ZZZZ"]})
    assert (status, unknown["error"]["reason"]) == (422, "unknown_code")
    small = [{"sku": "cup", "category": "ware", "amount": "60.00"}]
    status, below = tea.call(
        "POST", "/checkout/quote", {"member_id": "m1", "lines": small, "coupon_codes": [full_reduction]}
    )
    assert (status, below["error"]["reason"]) == (422, "below_minimum")
    status, poor = tea.call("POST", "/checkout/quote", {"member_id": "m1", "lines": small, "points": 100})
    assert (status, poor["error"]["reason"], poor["error"]["field"]) == (422, "insufficient_points", "points")


def test_paying_with_a_coupon_and_points_in_one_transaction(tea: Shop, stack: Stack, service: Services) -> None:
    tea.program(points_offset={"points_per_unit": 20, "max_share": 0.5})
    send(stack, tea.id, paid("earlier", total="500.00", paid_at=stamp(TODAY - timedelta(days=2))))
    drain(stack)
    code = tea.claim(tea.template(), "a")[1]["code"]
    # 210.00 of goods, 20.00 off, 400 points pay 20.00: the member paid 170.00 and earns on that.
    event = order("o1", "170.00", [code], points=400)
    event["data"]["lines"] = [{"sku": "tea", "category": "tea", "amount": "210.00"}]
    send(stack, tea.id, event, delivery_id="d1")
    send(stack, tea.id, event, delivery_id="d1-again")  # redelivered: changes nothing
    drain(stack)
    assert dead_letters(stack) == []
    assert tea.coupons(status="used")[0]["order_id"] == "o1"
    assert check_invariants(service, tea.id, "m1")["available"] == 500 - 400 + 170
    reasons = [e.reason for e in service.points.ledger(tea.id, "m1", limit=10, cursor=None)[0]]
    assert "points.used" in reasons and "order.paid" in reasons


def test_one_coupon_two_orders_the_second_is_parked(tea: Shop, stack: Stack, service: Services) -> None:
    code = tea.claim(tea.template(), "a")[1]["code"]
    send(stack, tea.id, order("o1", "250.00", [code]), delivery_id="d1")
    send(stack, tea.id, order("o2", "250.00", [code]), delivery_id="d2")
    drain(stack)
    parked = dead_letters(stack)
    assert len(parked) == 1
    assert "already_used" not in parked[0]["MessageAttributes"]["code"]["StringValue"]
    assert "already" in parked[0]["MessageAttributes"]["reason"]["StringValue"]
    assert check_invariants(service, tea.id, "m1")["available"] == 230  # o1 only: 250.00 - 20.00


def test_cancel_gives_coupon_and_points_back_refund_follows_the_policy(
    tea: Shop, stack: Stack, service: Services
) -> None:
    tea.program(points_offset={"points_per_unit": 10, "max_share": 1})
    send(stack, tea.id, paid("earlier", total="300.00", paid_at=stamp(TODAY - timedelta(days=3))))
    drain(stack)
    code = tea.claim(tea.template(), "a")[1]["code"]
    event = order("o1", "160.00", [code], points=200)  # 200.00 of goods, 20.00 off, 200 points pay 20.00
    event["data"]["lines"][0]["amount"] = "200.00"
    send(stack, tea.id, event)
    drain(stack)
    assert check_invariants(service, tea.id, "m1")["available"] == 300 - 200 + 160
    # A refund of half what was paid: half the points used come back (proportional), the coupon does not.
    send(stack, tea.id, refunded("o1", "r1", "80.00"))
    drain(stack)
    assert tea.coupons(status="used")[0]["code"] == code
    assert check_invariants(service, tea.id, "m1")["available"] == 300 - 200 + 80 + 100
    send(stack, tea.id, cancelled("o1"))
    drain(stack)
    assert [c["code"] for c in tea.coupons(status="available")] == [code]
    assert check_invariants(service, tea.id, "m1")["available"] == 300  # everything back, nothing earned
    send(stack, tea.id, cancelled("o1"), delivery_id="again")
    drain(stack)
    assert check_invariants(service, tea.id, "m1")["available"] == 300


def test_coupons_never_come_back_under_a_keep_policy(tea: Shop, stack: Stack, service: Services) -> None:
    tea.program(refund_returns={"coupons": "never", "points": "never"})
    code = tea.claim(tea.template(), "a")[1]["code"]
    send(stack, tea.id, order("o1", "200.00", [code]))
    send(stack, tea.id, refunded("o1", "r1", "200.00"))  # all of it
    drain(stack)
    assert tea.coupons(status="used")[0]["code"] == code
    assert check_invariants(service, tea.id, "m1")["available"] == 0


def test_expiry_run_reminds_then_expires(tea: Shop, stack: Stack, service: Services) -> None:
    url = capture_events(stack)
    tea.program(coupon_reminder_days=2)
    assert tea.call("PATCH", "/members/m1", {"marketing_consent": True})[0] == 200  # a reminder is marketing
    tea.claim(tea.template(), "not-asked", member="m2")  # m2 did not agree to it: never reminded, still expired
    code = tea.claim(tea.template(), "a")[1]["code"]  # expires in 7 days
    used = tea.claim(tea.template(), "b")[1]["code"]
    send(stack, tea.id, order("o1", "250.00", [used]))
    drain(stack)
    function = lambdas.functions()["ExpireCouponsFunction"]

    def run(days: float) -> dict[str, Any]:
        event = lambdas.schedule_event(stamp(TODAY + timedelta(days=days)))
        return dict(lambdas.invoke(function, event))

    assert run(4)["published"] == 0
    assert run(5.5)["published"] == 1
    sent = captured(url)
    assert [(e["detail-type"], e["detail"]["code"]) for e in sent] == [("coupon.expiring", code)]
    assert run(5.6)["published"] == 0  # once
    assert tea.coupons(status="expired") == []
    assert run(8)["applied"] == 2
    assert [c["code"] for c in tea.coupons(status="expired")] == [code]
    assert len(tea.coupons("m2", status="expired")) == 1
    assert [c["code"] for c in tea.coupons(status="used")] == [used]
    assert run(9)["applied"] == 0


def test_bulk_grant_reports_what_it_granted_and_why_not(tea: Shop, stack: Stack) -> None:
    template = tea.template(stock=2)
    members = ["m1", "ghost", "m2", "m1"]  # m1 twice: granted once
    status, started = tea.call(
        "POST", f"/coupon-templates/{template}/grants", {"member_ids": members}, {"Idempotency-Key": "g1"}
    )
    assert status == 202 and started["status"] == "processing"
    again = tea.call("POST", f"/coupon-templates/{template}/grants", {"member_ids": members}, {"Idempotency-Key": "g1"})
    assert again[0] == 200 and again[1]["grant_id"] == started["grant_id"]
    # A replay of a grant not yet done queues it again (repairing one whose queueing was cut short); the report
    # below still counts each member once, and nobody is granted twice.
    queued = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.queues["CouponGrantsQueue"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    assert queued["Attributes"]["ApproximateNumberOfMessages"] == "2"
    drain(stack, function_id="CouponGrantsFunction")
    status, report = tea.call("GET", f"/coupon-grants/{started['grant_id']}")
    assert status == 200
    assert report | {"refusals": None} == {
        "grant_id": started["grant_id"],
        "template_id": template,
        "members": 3,
        "granted": 2,
        "refused": 1,
        "status": "done",
        "refusals": None,
    }
    assert report["refusals"] == [{"member_id": "ghost", "reason": "not_found"}]
    assert len(tea.coupons("m1")) == len(tea.coupons("m2")) == 1
