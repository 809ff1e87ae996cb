"""RFM segments kept from the stream, their moves with time alone (the nightly review, through the due index),
and win-back campaigns: a coupon once per member and campaign, member.dormant, and what followed."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from infra.local.streams import StreamPoller
from loyalty.domain.members import Profile
from loyalty.runtime import Services
from loyalty.store.dynamo import Dynamo
from tests.conftest import Api
from tests.helpers import capture_events, captured, drain, paid, send

CHAMPION = {"champion_orders": 2, "champion_spend": "150.00", "at_risk_days": 45, "dormant_days": 90}


class Shop:
    def __init__(self, api: Api, stack: Stack, shop: dict[str, str]) -> None:
        self.api, self.stack, self.id, self.key = api, stack, shop["shop_id"], shop["api_key"]
        self.poller = StreamPoller(lambdas.functions()["AggregatesFunction"], stack.tables["LoyaltyTable"])

    def call(self, method: str, path: str, body: Any = None, expect: int | None = None, **headers: str) -> Any:
        status, answer = self.api.call(method, f"/v1/shops/{self.id}{path}", key=self.key, body=body, headers=headers)
        assert status == (expect or status) and (expect or status < 300), (status, answer)
        return answer

    def members(self, segment: str) -> list[str]:
        out, cursor = [], None
        while True:
            page = self.call("GET", f"/segments/{segment}/members?limit=2" + (f"&next={cursor}" if cursor else ""))
            out += [item["member_id"] for item in page["items"]]
            cursor = page["next"]
            if cursor is None:
                return sorted(out)

    def order(self, order_id: str, member: str, total: str, **data: Any) -> None:
        event = paid(order_id, member, total, paid_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"))
        event["data"] |= data
        send(self.stack, self.id, event, "d-" + order_id)
        drain(self.stack)
        self.poller.drain()

    def review(self, days_ahead: int) -> Any:
        when = (datetime.now(UTC) + timedelta(days=days_ahead)).strftime("%Y-%m-%dT%H:%M:%SZ")
        report = lambdas.invoke(lambdas.functions()["ReviewSegmentsFunction"], lambdas.schedule_event(when))
        self.poller.drain()
        return report


@pytest.fixture
def tea(api: Api, stack: Stack, shop: dict[str, str]) -> Shop:
    tea = Shop(api, stack, shop)
    tea.call("PUT", "/program", {"currency": "CNY", "timezone": "Asia/Shanghai", "segments": CHAMPION})
    for member in ("new1", "buyer", "champ"):
        tea.call("POST", "/members", {"member_id": member, "marketing_consent": member == "buyer"})
    tea.order("o1", "buyer", "20.00")
    tea.order("o2", "champ", "100.00")
    tea.order("o3", "champ", "100.00")
    return tea


def test_members_are_segmented_as_their_changes_stream_in(tea: Shop) -> None:
    assert tea.members("new") == ["new1"]
    assert tea.members("active") == ["buyer"]
    assert tea.members("champion") == ["champ"]
    summary = tea.call("GET", "/reports/summary")
    assert summary["members"]["by_segment"] == {"active": 1, "champion": 1, "new": 1}
    (champ,) = tea.call("GET", "/segments/champion/members")["items"]
    assert champ["orders"] == 2 and champ["spend"] == 20000 and champ["scores"]["f"] == 5
    tea.call("GET", "/segments/loyal/members", expect=404)
    tea.call("GET", "/segments/new/members?next=garbage", expect=400)


def test_members_who_stop_acting_become_at_risk_then_dormant(tea: Shop) -> None:
    assert tea.review(10)["applied"] == 0  # nothing changes segment yet... except the new member's newness
    tea.review(31)  # new1's 30 days are over: active (enrolled, no order, not yet idle)
    assert tea.members("active") == ["buyer", "new1"]
    tea.review(46)
    assert tea.members("at_risk") == ["buyer", "champ", "new1"]
    tea.review(91)
    assert tea.members("dormant") == ["buyer", "champ", "new1"]
    assert tea.call("GET", "/reports/summary")["members"]["by_segment"] == {"dormant": 3}
    assert tea.review(91)["applied"] == 0  # a repeated run moves nobody twice


def test_an_order_brings_a_dormant_member_back(tea: Shop) -> None:
    tea.review(91)
    tea.order("o4", "buyer", "30.00")
    assert "buyer" in tea.members("active") and "buyer" not in tea.members("dormant")


def test_a_win_back_campaign_reaches_each_member_once_and_counts_what_followed(
    api: Api, stack: Stack, shop: dict[str, str], service: Services
) -> None:
    tea = Shop(api, stack, shop)
    tea.call("PUT", "/program", {"currency": "CNY", "timezone": "Asia/Shanghai", "segments": CHAMPION})
    # Members who last acted 100 days ago (their shop's clock then), and one who did not consent to marketing.
    then = Services(Dynamo(service.db.table_name), cache_seconds=0, clock=lambda: datetime.now(UTC) - timedelta(100))
    for member in ("buyer", "quiet"):
        then.members.enrol(tea.id, Profile(member_id=member, marketing_consent=member == "buyer"))
    tea.poller.drain()
    template = tea.call(
        "POST",
        "/coupon-templates",
        {"name": "Come back", "kind": "amount_off", "amount": "10.00", "stock": 100, "valid_days_after_claim": 365},
    )["template_id"]
    campaign = tea.call(
        "POST", "/campaigns/win-back", {"segment": "dormant", "template_id": template, "message": "We miss you"}
    )
    events = capture_events(stack)
    tea.review(0)
    tea.review(1)  # the next night: nobody is reached twice
    report = tea.call("GET", f"/campaigns/win-back/{campaign['campaign_id']}")
    assert report["reached"] == 2
    coupons = tea.call("GET", "/members/buyer/coupons")["items"]
    assert [c["template_id"] for c in coupons] == [template]
    published = [e for e in captured(events) if e["detail-type"] == "member.dormant"]
    assert [e["detail"]["member_id"] for e in published] == ["buyer"]  # the one who consented to marketing
    assert published[0]["detail"]["campaigns"] == [
        {"campaign_id": campaign["campaign_id"], "code": coupons[0]["code"], "message": "We miss you"}
    ]
    tea.order("o5", "buyer", "50.00", coupon_codes=[coupons[0]["code"]])
    report = tea.call("GET", f"/campaigns/win-back/{campaign['campaign_id']}")
    assert report["coupons_used"] == 1 and report["orders_within_30_days"] == 1
    assert report["gmv_within_30_days"] == 5000 and report["win_back_rate"] == "0.5000"
    assert "buyer" in tea.members("active")


def test_a_campaign_names_what_is_wrong(tea: Shop) -> None:
    bad = tea.api.call(
        "POST",
        f"/v1/shops/{tea.id}/campaigns/win-back",
        key=tea.key,
        body={"segment": "champion", "template_id": "tpl_0000000000000000"},
    )
    assert bad[0] == 400 and bad[1]["error"]["field"] == "segment"
    missing = tea.api.call(
        "POST",
        f"/v1/shops/{tea.id}/campaigns/win-back",
        key=tea.key,
        body={"segment": "dormant", "template_id": "tpl_0000000000000000"},
    )
    assert missing[0] == 404 and missing[1]["error"]["field"] == "template_id"


def test_a_shop_has_a_bounded_number_of_campaigns(tea: Shop, monkeypatch: pytest.MonkeyPatch) -> None:
    from loyalty.service import segments

    monkeypatch.setattr(segments, "MAX_CAMPAIGNS", 2)  # the bound keeps the report items under 400 KB
    template = tea.call(
        "POST",
        "/coupon-templates",
        {"name": "Back", "kind": "amount_off", "amount": "5.00", "stock": 10, "valid_days_after_claim": 30},
    )["template_id"]
    for _ in range(2):
        tea.call("POST", "/campaigns/win-back", {"segment": "dormant", "template_id": template})
    refused = tea.call("POST", "/campaigns/win-back", {"segment": "dormant", "template_id": template}, expect=409)
    assert refused["error"]["code"] == "too_many_campaigns"
