"""The points mall through the API function, under its own IAM policy: listing, exchanging, fulfilment and
cancellation, with the books checked after each step."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.domain.errors import Retryable
from loyalty.runtime import Services
from loyalty.store import points as point_store
from loyalty.store.events import Events
from tests.conftest import Api
from tests.helpers import capture_events, captured, check_invariants, drain, paid, send


class Mall:
    """A shop with members m1 (1,000 points) and m2 (100), spoken to through the API."""

    def __init__(self, api: Api, shop: dict[str, str], stack: Stack) -> None:
        self.api, self.id, self.key = api, shop["shop_id"], shop["api_key"]
        for member, total in (("m1", "1000.00"), ("m2", "100.00")):
            assert self.call("POST", "/members", {"member_id": member})[0] == 201
            send(stack, self.id, paid(f"o-{member}", member_id=member, total=total))
        assert drain(stack) == [{"batchItemFailures": []}]

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/shops/{self.id}{path}", key=self.key, body=body, headers=headers)

    def item(self, **fields: Any) -> str:
        body = {"kind": "goods", "name": "Tea towel", "points": 150, "stock": 10, "ships": True} | fields
        status, answer = self.call("POST", "/mall/items", body)
        assert status == 201, answer
        return str(answer["item_id"])

    def exchange(self, item_id: str, key: str, member: str = "m1", quantity: int = 1) -> tuple[int, Any]:
        body = {"item_id": item_id, "quantity": quantity}
        return self.call("POST", f"/members/{member}/exchanges", body, headers={"Idempotency-Key": key})

    def available(self, member: str = "m1") -> int:
        return int(self.call("GET", f"/members/{member}")[1]["points"]["available"])


@pytest.fixture
def mall(api: Api, shop: dict[str, str], stack: Stack) -> Mall:
    return Mall(api, shop, stack)


def test_a_goods_exchange_is_paid_in_points_once_and_shipped(mall: Mall, stack: Stack, service: Services) -> None:
    events = capture_events(stack)
    item = mall.item()
    status, listed = mall.call("GET", "/mall/items?member_id=m1")
    assert status == 200 and [i["item_id"] for i in listed["items"]] == [item]
    assert listed["items"][0] | {"item_id": None} == {
        "item_id": None,
        "kind": "goods",
        "name": "Tea towel",
        "points": 150,
        "stock": 10,
        "stock_left": 10,
        "ships": True,
        "visible": True,
    }
    status, first = mall.exchange(item, "k1", quantity=2)
    assert status == 201, first
    assert (first["points"], first["status"], first["quantity"]) == (300, "pending", 2)
    assert mall.exchange(item, "k1", quantity=2) == (200, first)  # a replay answers as the first call did
    assert mall.available() == 700
    assert check_invariants(service, mall.id, "m1")["available"] == 700
    entries = point_store.ledger_all(service.db, mall.id, "m1")
    assert [(e.reason, e.points) for e in entries][-1] == ("mall.exchange", -300)

    exchange_id = first["exchange_id"]
    for step in ("shipped", "shipped", "delivered"):  # moving to the status it has answers as it is
        status, moved = mall.call("PUT", f"/mall/exchanges/{exchange_id}", {"status": step})
        assert status == 200 and moved["status"] == step
    assert [h["status"] for h in moved["history"]] == ["pending", "shipped", "delivered"]
    status, refused = mall.call("PUT", f"/mall/exchanges/{exchange_id}", {"status": "cancelled"})
    assert (status, refused["error"]["code"]) == (409, "invalid_transition")
    report = mall.call("GET", f"/mall/items/{item}")[1]
    assert (report["stock_left"], report["report"]) == (8, {"exchanged": 2, "cancelled": 0, "points": 300})
    published = [(e["detail-type"], e["detail"]["status"]) for e in captured(events)]
    assert ("mall.exchange.changed", "pending") in published and ("mall.exchange.changed", "delivered") in published
    mine = mall.call("GET", "/members/m1/exchanges")[1]["items"]
    assert [e["exchange_id"] for e in mine] == [exchange_id]


def test_points_and_cash_wait_for_the_shops_platform_to_collect_the_cash(mall: Mall) -> None:
    item = mall.item(cash="9.90")
    assert mall.call("GET", f"/mall/items/{item}")[1]["cash"] == "9.90"
    status, made = mall.exchange(item, "k1", quantity=2)
    assert status == 201 and (made["points"], made["cash"], made["status"]) == (300, "19.80", "awaiting_payment")
    path = f"/mall/exchanges/{made['exchange_id']}"
    assert mall.call("PUT", path, {"status": "shipped"})[1]["error"]["code"] == "invalid_transition"  # not paid
    status, paid_for = mall.call("PUT", path, {"status": "pending"})  # the platform collected 19.80
    assert status == 200 and [h["status"] for h in paid_for["history"]] == ["awaiting_payment", "pending"]
    unpaid = mall.exchange(item, "k2")[1]
    status, dropped = mall.call("PUT", f"/mall/exchanges/{unpaid['exchange_id']}", {"status": "cancelled"})
    assert (status, dropped["status"]) == (200, "cancelled")
    assert mall.available() == 1000 - 300  # an unpaid exchange's points come back
    status, bad = mall.call(
        "POST",
        "/mall/items",
        {"kind": "coupon", "name": "x", "points": 1, "stock": 1, "template_id": "tpl_0000000000000000", "cash": "1.00"},
    )
    assert status == 400 and "cash" in bad["error"]["message"]


def test_a_cancelled_exchange_gives_the_points_back_to_lots_like_theirs(mall: Mall, service: Services) -> None:
    item = mall.item(per_member_limit=2)
    before = point_store.lots(service.db, mall.id, "m1")
    status, made = mall.exchange(item, "k1", quantity=2)
    assert status == 201
    assert mall.exchange(item, "k2")[1]["error"]["code"] == "limit_reached"
    status, cancelled = mall.call("PUT", f"/mall/exchanges/{made['exchange_id']}", {"status": "cancelled"})
    assert status == 200 and cancelled["status"] == "cancelled"
    assert mall.available() == 1000
    after = point_store.lots(service.db, mall.id, "m1")
    assert sum(lot.remaining for lot in after) == 1000
    assert {lot.expires_at for lot in after} == {lot.expires_at for lot in before}  # the same expiry as before
    assert any(lot.source == "returned" for lot in after)
    check_invariants(service, mall.id, "m1")
    report = mall.call("GET", f"/mall/items/{item}")[1]
    assert (report["stock_left"], report["report"]["cancelled"]) == (10, 2)
    assert mall.exchange(item, "k3", quantity=2)[0] == 201  # the limit counts what was not cancelled


def test_a_coupon_item_grants_its_coupon_in_the_same_exchange(mall: Mall, service: Services) -> None:
    body = {"name": "10 off", "kind": "amount_off", "amount": "10.00", "stock": 5, "valid_days_after_claim": 30}
    template = mall.call("POST", "/coupon-templates", body)[1]["template_id"]
    item = mall.item(kind="coupon", name="10 off for 100 points", points=100, ships=False, template_id=template)
    status, made = mall.exchange(item, "k1")
    assert status == 201 and made["status"] == "issued"
    coupons = mall.call("GET", "/members/m1/coupons")[1]["items"]
    assert [c["code"] for c in coupons] == [made["coupon"]["code"]]
    assert mall.exchange(item, "k2", quantity=2)[1]["error"]["field"] == "quantity"
    status, refused = mall.call("PUT", f"/mall/exchanges/{made['exchange_id']}", {"status": "cancelled"})
    assert (status, refused["error"]["code"]) == (409, "invalid_transition")
    assert check_invariants(service, mall.id, "m1")["available"] == 900


def test_what_is_refused_and_why(mall: Mall) -> None:
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    dear = mall.item(points=5000)
    assert mall.exchange(dear, "a")[1]["error"]["code"] == "insufficient_points"
    scarce = mall.item(stock=1)
    assert mall.exchange(scarce, "b")[0] == 201
    assert mall.exchange(scarce, "c", member="m2")[1]["error"]["code"] == "out_of_stock"
    gold = mall.item(tiers=["gold"])
    assert mall.exchange(gold, "d")[1]["error"]["code"] == "not_eligible"
    over = mall.item(until=past)
    assert mall.exchange(over, "e")[1]["error"]["code"] == "not_eligible"
    hidden = mall.item(visible=False)
    listed = {i["item_id"] for i in mall.call("GET", "/mall/items?member_id=m1")[1]["items"]}
    assert listed == {dear}  # out of stock, other tiers, ended and hidden items are not offered
    assert len(mall.call("GET", "/mall/items")[1]["items"]) == 5  # the shop sees them all
    assert hidden
    assert mall.exchange("itm_0000000000000000", "f")[0] == 404
    status, bad = mall.call("POST", "/mall/items", {"kind": "coupon", "name": "x", "points": 1, "stock": 1})
    assert status == 400 and "template_id" in bad["error"]["message"]
    status, bad = mall.call("POST", "/mall/items", {"kind": "goods", "name": "x", "points": 1.5, "stock": 1})
    assert status == 400 and bad["error"]["field"] == "points"
    assert mall.exchange(dear, "a")[1]["error"]["code"] == "insufficient_points"  # nothing was recorded


def test_another_shops_key_reaches_no_item(mall: Mall, api: Api) -> None:
    item = mall.item()
    other = api.call("POST", "/v1/shops", key="op_test_key", body={"name": "Other"})[1]
    status, _ = api.call("GET", f"/v1/shops/{mall.id}/mall/items/{item}", key=other["api_key"])
    assert status == 403
    status, _ = api.call("GET", f"/v1/shops/{other['shop_id']}/mall/items/{item}", key=other["api_key"])
    assert status == 404


def test_a_catalogue_page_reads_every_items_stock_at_once(mall: Mall, service: Services) -> None:
    """Eight items of 16 stock shards each: 128 stock items, read in two BatchGetItem calls (100 keys at most)."""
    items = {mall.item(name=f"Gift {n}", stock=16) for n in range(8)}
    service.db.requests.clear()
    status, page = mall.call("GET", "/mall/items?member_id=m1&limit=25")
    assert status == 200
    assert {i["item_id"] for i in page["items"]} == items
    assert {i["stock_left"] for i in page["items"]} == {16}
    assert service.db.requests["BatchGetItem"] == 2  # not one per item


def test_a_step_whose_event_could_not_be_published_is_published_by_the_outbox_run(
    mall: Mall, stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = capture_events(stack)
    item = mall.item()
    original = Events.publish

    def refused(self: Events, detail_type: str, detail: dict[str, Any]) -> None:
        raise Retryable("EventBridge is busy")

    monkeypatch.setattr(Events, "publish", refused)
    status, answer = mall.exchange(item, "k1")
    assert status == 201, answer  # the exchange is made; its event waits in the outbox
    monkeypatch.setattr(Events, "publish", original)
    assert mall.available() == 850
    run = lambdas.invoke(lambdas.functions()["ReviewTiersFunction"], lambdas.schedule_event(_now()))
    assert run["published"] == 1
    published = [e["detail"] for e in captured(events) if e["detail-type"] == "mall.exchange.changed"]
    assert [(e["item_id"], e["status"]) for e in published] == [(item, "pending")]
    again = lambdas.invoke(lambdas.functions()["ReviewTiersFunction"], lambdas.schedule_event(_now()))
    assert again["published"] == 0  # once out of the outbox, never again
    assert mall.exchange(item, "k1")[0] == 200  # the member's retry answers as the first call did


def _now() -> str:
    """A run's time a minute on (the outbox lists a step due at its own instant)."""
    return (datetime.now(UTC) + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
