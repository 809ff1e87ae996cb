"""Right of access (everything we hold on a member, for the shop's owner and for the member themselves) and right
to erasure (nothing personal left anywhere, every balance and report as it was)."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.api import members as members_api
from loyalty.runtime import Services
from loyalty.store import erasure as erasure_store
from loyalty.store.keys import member_pk
from tests.conftest import Api
from tests.helpers import capture_events, captured, check_invariants, drain, paid, refunded, send


def test_an_export_holds_everything_on_the_member_and_nothing_of_ours_or_of_others(
    api: Api, shop: dict[str, str], stack: Stack
) -> None:
    sid, key = shop["shop_id"], shop["api_key"]

    def call(method: str, path: str, body: object = None, token: str | None = None) -> tuple[int, object]:
        return api.call(method, f"/v1/shops/{sid}{path}", key=token or key, body=body)

    assert call("PUT", "/program", {"check_in": {"points": 5}})[0] == 200
    assert call("POST", "/members", {"member_id": "m1", "phone": "13800138000", "email": "ann@example.com"})[0] == 201
    assert call("POST", "/members", {"member_id": "m2"})[0] == 201
    send(stack, sid, paid("A1", member_id="m1", total="120.00"))
    send(stack, sid, paid("B1", member_id="m2", total="80.00"))
    assert drain(stack) == [{"batchItemFailures": []}]
    assert call("POST", "/members/m1/check-ins")[0] == 201

    status, export = call("GET", "/members/m1/export")
    assert status == 200
    assert isinstance(export, dict)
    assert export["profile"]["phone"] == "+8613800138000" and export["profile"]["email"] == "ann@example.com"
    assert [order["order_id"] for order in export["orders"]] == ["A1"]  # never m2's
    assert {entry["reason"] for entry in export["ledger"]} == {"order.paid", "check_in"}
    assert sum(lot["remaining"] for lot in export["lot"]) == 125
    assert "checkin" in export
    text = json.dumps(export)
    assert '"PK"' not in text and '"DuePK"' not in text and "MembersPK" not in text  # our keys, not their data

    token = call("POST", "/members/m1/tokens", {})[1]
    assert isinstance(token, dict)
    status, mine = api.call("GET", "/v1/me/export", key=token["token"])
    assert status == 200 and isinstance(mine, dict)
    assert {**mine, "exported_at": None} == {**export, "exported_at": None}
    assert call("GET", "/members/nobody/export")[0] == 404


def test_an_export_too_large_for_a_lambda_response_is_a_413(
    api: Api, shop: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members_api, "EXPORT_MAX_BYTES", 200)  # as a member with years of ledger would reach 6 MB
    sid, key = shop["shop_id"], shop["api_key"]
    assert api.call("POST", f"/v1/shops/{sid}/members", key=key, body={"member_id": "m1"})[0] == 201
    status, answer = api.call("GET", f"/v1/shops/{sid}/members/m1/export", key=key)
    assert status == 413 and answer["error"]["field"] == "member_id"


# ---------------------------------------------------------------------------- erasure

WHO = "wx-oQ7a9Zk3"  # an id as distinctive as a platform's: found anywhere in the table, it is a leak
PHONE, EMAIL, BIRTHDAY = "13912345678", "zhao.lei@example.com", "1990-05-17"


def _table_text(stack: Stack) -> str:
    """Every item of the table, as one text (a test's small table; production code never scans)."""
    items: list[Any] = []
    scan: dict[str, Any] = {"TableName": stack.tables["LoyaltyTable"]}
    client = boto3.client("dynamodb")
    while True:
        page = client.scan(**scan)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return json.dumps(items)
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _leaks(stack: Stack) -> list[str]:
    text = _table_text(stack)
    return [value for value in (WHO, PHONE, "+86" + PHONE, EMAIL, BIRTHDAY, "05-17") if value in text]


class Erasable:
    """A member who has done something of everything: orders, a refund, a check-in, a claimed coupon, a mall
    exchange, a lottery draw, a redemption and an adjustment (each with its stored answer)."""

    def __init__(self, api: Api, shop: dict[str, str], stack: Stack) -> None:
        self.api, self.sid, self.key, self.stack = api, shop["shop_id"], shop["api_key"], stack
        program = {"check_in": {"points": 5}, "birthday": {"points": 50}, "wallet": {"top_up_plans": []}}
        program["referral"] = {"referrer_points": 10, "referee_points": 5}
        self.ok("PUT", "/program", program)
        # m0 referred them, and they referred m4: each side's items name the other.
        code = self.ok("POST", "/members", {"member_id": "m0"})["referral_code"]
        profile = {"member_id": WHO, "phone": PHONE, "email": EMAIL, "birthday": BIRTHDAY, "referred_by": code}
        code = self.ok("POST", "/members", profile)["referral_code"]
        self.ok("POST", "/members", {"member_id": "m4", "referred_by": code})
        self.ok("POST", "/members", {"member_id": "m2", "phone": "13800138000"})
        send(stack, self.sid, paid("A1", member_id=WHO, total="300.00"))
        send(stack, self.sid, paid("A2", member_id=WHO, total="50.00"))
        send(stack, self.sid, paid("B1", member_id="m2", total="80.00"))
        assert drain(stack) == [{"batchItemFailures": []}]
        send(stack, self.sid, refunded("A2", "R1", "20.00"))
        assert drain(stack) == [{"batchItemFailures": []}]
        self.ok("POST", f"/members/{WHO}/check-ins")
        template = {"name": "5 off", "kind": "amount_off", "amount": "5.00", "stock": 10, "valid_days_after_claim": 30}
        self.template = self.ok("POST", "/coupon-templates", template)["template_id"]
        self.ok("POST", f"/members/{WHO}/coupons", {"template_id": self.template}, **{"Idempotency-Key": "c1"})
        grant = {"member_ids": [WHO, "m2"]}
        self.grant = self.ok("POST", f"/coupon-templates/{self.template}/grants", grant, **{"Idempotency-Key": "g1"})[
            "grant_id"
        ]  # it refuses them (one per member), so its report names them
        assert drain(stack, function_id="CouponGrantsFunction") == [{"batchItemFailures": []}]
        item = {"kind": "goods", "name": "Towel", "points": 10, "stock": 5, "ships": True}
        self.item = self.ok("POST", "/mall/items", item)["item_id"]
        self.ok("POST", f"/members/{WHO}/exchanges", {"item_id": self.item}, **{"Idempotency-Key": "x1"})
        prizes = [{"prize_id": "thanks", "kind": "nothing", "weight": 1}]
        lottery = {"name": "Spin", "cost_points": 1, "daily_limit": 5, "prizes": prizes, "consolation": "thanks"}
        self.lottery = self.ok("POST", "/lotteries", lottery)["lottery_id"]
        self.ok("POST", f"/members/{WHO}/draws", {"lottery_id": self.lottery}, **{"Idempotency-Key": "d1"})
        self.ok("POST", f"/members/{WHO}/redemptions", {"points": 7, "reason": "tea"}, **{"Idempotency-Key": "r1"})
        adjustment = {"points": 3, "reason": "goodwill"}
        self.ok("POST", f"/members/{WHO}/adjustments", adjustment, **{"Idempotency-Key": "a1"})

    def call(self, method: str, path: str, body: object = None, **headers: str) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/shops/{self.sid}{path}", key=self.key, body=body, headers=headers or None)

    def ok(self, method: str, path: str, body: object = None, **headers: str) -> Any:
        status, answer = self.call(method, path, body, **headers)
        assert status in (200, 201, 202), (method, path, status, answer)
        return answer

    def lottery_audit(self) -> list[Any]:
        """The lottery's digests of the days around now (the shop's day is one of them), of days with draws."""
        today = datetime.now(UTC).date()
        days = [self.ok("GET", f"/lotteries/{self.lottery}/audit?day={today + timedelta(days=n)}") for n in (-1, 0, 1)]
        return [day for day in days if day["draws"]]

    def reports(self) -> dict[str, Any]:
        return {
            "lottery": self.ok("GET", f"/lotteries/{self.lottery}/report"),
            "mall": self.ok("GET", f"/mall/items/{self.item}"),
            "coupons": self.ok("GET", f"/coupon-templates/{self.template}"),
        }


@pytest.fixture
def erasable(api: Api, shop: dict[str, str], stack: Stack) -> Erasable:
    return Erasable(api, shop, stack)


def test_after_an_erasure_nothing_personal_is_left_and_every_balance_and_report_adds_up(
    erasable: Erasable, stack: Stack, service: Services
) -> None:
    shop = erasable
    before = shop.ok("GET", f"/members/{WHO}")
    ledger = shop.ok("GET", f"/members/{WHO}/ledger?limit=100")["items"]
    reports = shop.reports()
    audit_before = shop.lottery_audit()
    assert len(audit_before) == 1
    assert _leaks(stack)  # the test can see them while they are there

    url = capture_events(stack)
    status, erased = shop.call("DELETE", f"/members/{WHO}")
    assert status == 200 and erased["erased"] is True and erased["complete"] is True
    pseudonym = erased["member_id"]
    assert pseudonym.startswith("mbr_") and pseudonym != WHO
    assert _leaks(stack) == []
    # The shop's other systems are told, once, to erase them too (the event is not kept in the table).
    (event,) = captured(url)
    assert (event["detail-type"], event["detail"]) == (
        "member.erased",
        {"shop_id": shop.sid, "member_id": WHO, "pseudonym": pseudonym},
    )

    after = shop.ok("GET", f"/members/{pseudonym}")
    assert after["points"] == {**before["points"], "expiring": after["points"]["expiring"]}
    assert "phone" not in after and "email" not in after and "birthday" not in after and after["erased_at"]
    assert "referral_code" not in after  # deleted with the contacts: it refers no one
    status, refused = shop.call("PATCH", f"/members/{pseudonym}", {"phone": PHONE})
    assert status == 409 and refused["error"]["code"] == "erased"  # a pseudonym is given no one's details
    assert not after["marketing_consent"]
    moved = shop.ok("GET", f"/members/{pseudonym}/ledger?limit=100")["items"]
    assert [(e["reason"], e["points"]) for e in moved] == [(e["reason"], e["points"]) for e in ledger]
    check_invariants(service, shop.sid, pseudonym)  # balance = ledger = lots, and its orders' pending
    assert shop.reports() == reports
    assert shop.lottery_audit() == audit_before  # the draws' proofs, and so the day's digest, are as published

    # The member id names no one now, and the contacts are free; asking again answers the same.
    assert shop.call("GET", f"/members/{WHO}")[0] == 404
    assert shop.call("GET", "/members?phone=13912345678")[1] == {"items": []}
    assert shop.call("DELETE", f"/members/{WHO}") == (200, erased)
    assert captured(url) == []  # a repeated request publishes nothing more
    # A refund of an order paid before the erasure still takes its points back, from the pseudonym's account.
    send(stack, shop.sid, refunded("A1", "R2", "100.00"))
    assert drain(stack) == [{"batchItemFailures": []}]
    assert shop.ok("GET", f"/members/{pseudonym}")["points"]["available"] == after["points"]["available"] - 100
    check_invariants(service, shop.sid, pseudonym)
    # The erasure is audited, by pseudonym.
    (entry,) = [e for e in shop.ok("GET", f"/audit?member={WHO}")["items"] if e["method"] == "DELETE"]
    assert WHO not in json.dumps(entry)
    # The grant's report, whom they referred, and who referred them, name the pseudonym.
    assert pseudonym in json.dumps(shop.ok("GET", f"/coupon-grants/{shop.grant}"))
    assert service.members.member(shop.sid, "m4").referrer == pseudonym
    assert service.db.get(member_pk(shop.sid, "m0"), f"REFEREE#{pseudonym}") is not None
    # The id may enrol again, and be erased in turn, under a pseudonym of its own; the phone may be a new member's.
    assert shop.call("POST", "/members", {"member_id": WHO})[0] == 201
    status, again = shop.call("DELETE", f"/members/{WHO}")
    assert status == 200 and again["complete"] and again["member_id"] not in (WHO, pseudonym)
    assert shop.call("DELETE", f"/members/{WHO}") == (200, again)
    assert _leaks(stack) == []
    assert shop.call("POST", "/members", {"member_id": "m3", "phone": PHONE})[0] == 201


def test_an_erasure_cut_short_is_finished_by_its_replay_or_the_nightly_outbox(
    erasable: Erasable, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    shop = erasable
    margin = members_api.ERASE_MARGIN_MS
    monkeypatch.setattr(members_api, "ERASE_MARGIN_MS", 10**9)  # the request stops before moving anything
    url = capture_events(stack)
    status, erased = shop.call("DELETE", f"/members/{WHO}")
    assert status == 200 and erased["complete"] is False and captured(url) == []
    assert shop.call("GET", f"/members/{WHO}")[0] == 404  # already no one: nothing more can be written to them
    monkeypatch.setattr(erasure_store, "PAGE", 4)  # several pages, so the run does it in steps
    now = (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = dict(lambdas.invoke(lambdas.functions()["ReviewTiersFunction"], lambdas.schedule_event(now)))
    assert report["complete"] is True and report["published"] >= 1
    assert _leaks(stack) == []
    assert [event["detail-type"] for event in captured(url)] == ["member.erased"]  # by the run, when it finished
    monkeypatch.setattr(members_api, "ERASE_MARGIN_MS", margin)
    assert shop.call("DELETE", f"/members/{WHO}") == (200, {**erased, "complete": True})


def test_a_member_whose_wallet_holds_their_money_is_not_erased_until_it_is_refunded(erasable: Erasable) -> None:
    shop = erasable
    top_up = {"amount": "10.00", "reference": "T1"}
    shop.ok("POST", "/members/m2/wallet/top-ups", top_up, **{"Idempotency-Key": "t1"})
    status, answer = shop.call("DELETE", "/members/m2")
    assert status == 409 and answer["error"]["field"] == "wallet"
    assert shop.ok("GET", "/members/m2")["member_id"] == "m2"  # nothing changed


def test_a_member_erases_themselves_and_their_token_opens_nothing_after(erasable: Erasable) -> None:
    shop = erasable
    token = shop.ok("POST", f"/members/{WHO}/tokens", {})["token"]
    status, erased = shop.api.call("DELETE", "/v1/me", key=token)
    assert status == 200 and erased["complete"] is True
    assert shop.api.call("GET", "/v1/me", key=token)[0] == 404
    assert shop.call("GET", f"/members/{erased['member_id']}")[0] == 200
