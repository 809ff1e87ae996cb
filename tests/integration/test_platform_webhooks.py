"""Shop platforms' webhooks (Shopify, WooCommerce, Stripe, Youzan): each documented sample, signed as its platform
signs, through the webhooks function and the order queue, on moto."""

import base64
import copy
import hashlib
import hmac
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local.resources import Stack
from loyalty.runtime import Services
from tests.conftest import OPERATOR_KEY, Api
from tests.helpers import check_invariants, check_wallet, dead_letters, drain

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "platforms"
SECRET = "shpss_test_secret_0123456789"
YOUZAN_CLIENT = "c346b8b39599aaa677"
YOUZAN_SECRET = "test_client_secret"


def sample(name: str) -> dict[str, Any]:
    return dict(json.loads((SAMPLES / f"{name}.json").read_text()))


def raw(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def b64_hmac(secret: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), data, hashlib.sha256).digest()).decode()


def shopify_headers(data: bytes, topic: str, delivery: str, secret: str = SECRET) -> dict[str, str]:
    return {"X-Shopify-Hmac-Sha256": b64_hmac(secret, data), "X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": delivery}


def woo_headers(data: bytes, delivery: str, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-WC-Webhook-Signature": b64_hmac(secret, data),
        "X-WC-Webhook-Topic": "order.updated",
        "X-WC-Webhook-Delivery-ID": delivery,
    }


def stripe_headers(data: bytes, secret: str = SECRET, at: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if at is None else at
    signature = hmac.new(secret.encode(), f"{stamp}.".encode() + data, hashlib.sha256).hexdigest()
    return {"Stripe-Signature": f"t={stamp},v1={signature}"}


def youzan_headers(data: bytes, secret: str = YOUZAN_SECRET) -> dict[str, str]:
    sign = hashlib.md5(YOUZAN_CLIENT.encode() + data + secret.encode(), usedforsecurity=False).hexdigest()
    return {"Event-Sign": sign, "Event-Type": "trade_TradePaid", "Client-Id": YOUZAN_CLIENT}


class Store:
    """A shop with one platform connected."""

    def __init__(self, api: Api, platform: str, currency: str, program: dict[str, Any] | None = None, **settings: Any):
        status, shop = api.call("POST", "/v1/shops", key=OPERATOR_KEY, body={"name": platform, "currency": currency})
        assert status == 201
        self.api, self.id, self.key, self.platform = api, shop["shop_id"], shop["api_key"], platform
        if program:
            assert self.call("PUT", "/program", body={"currency": currency, **program})[0] == 200
        body = {"secret": YOUZAN_SECRET if platform == "youzan" else SECRET, **settings}
        if platform == "youzan":
            body["client_id"] = YOUZAN_CLIENT
        status, view = self.call("PUT", f"/integrations/{platform}", body=body)
        assert status == 200 and view["secret_set"] is True, view
        assert body["secret"] not in json.dumps(view)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/shops/{self.id}{path}", key=self.key, body=body)

    def deliver(self, data: bytes, headers: dict[str, str]) -> tuple[int, Any]:
        return self.api.call("POST", f"/v1/shops/{self.id}/webhooks/{self.platform}", raw=data, headers=headers)

    def points(self, member_id: str, service: Services) -> int:
        return check_invariants(service, self.id, member_id)["available"]


def queued(stack: Stack) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=stack.queues["OrdersQueue"], AttributeNames=["ApproximateNumberOfMessages"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


# ---------------------------------------------------------------------------- Shopify


def test_shopify_paid_then_refund(api: Api, stack: Stack, service: Services) -> None:
    store = Store(api, "shopify", "USD")
    order = (SAMPLES / "shopify_orders_paid.json").read_bytes()
    assert store.deliver(order, shopify_headers(order, "orders/paid", "d1", secret="wrong"))[0] == 401
    assert queued(stack) == 0
    status, answer = store.deliver(order, shopify_headers(order, "orders/paid", "d1"))
    assert (status, answer["events"]) == (200, ["order.paid"])
    assert store.deliver(order, shopify_headers(order, "orders/paid", "d1"))[1]["reason"] == "a delivery already taken"
    assert store.deliver(order, shopify_headers(order, "orders/paid", "d2"))[0] == 200  # a new delivery id: the
    drain(stack)  # order's own idempotency absorbs it
    member = "shopify-115310627314723954"
    assert store.points(member, service) == 414  # goods 414.95 USD (shipping 10.00 not earning), 1 point per dollar
    status, found = store.call("GET", "/members?email=john@example.com")
    assert [m["member_id"] for m in found["items"]] == [member]
    refund = (SAMPLES / "shopify_refunds_create.json").read_bytes()
    body = json.loads(refund, parse_float=Decimal)
    returned = int(sum(item["subtotal"] for item in body["refund_line_items"]) * 100)
    assert store.deliver(refund, shopify_headers(refund, "refunds/create", "d3"))[0] == 200
    drain(stack)
    assert store.points(member, service) == 414 * (41495 - returned) // 41495
    assert dead_letters(stack) == []


def test_shopify_uses_shop_money_and_discount_allocations_and_category_map(
    api: Api, stack: Stack, service: Services
) -> None:
    store = Store(
        api,
        "shopify",
        "USD",
        program={"category_multipliers": {"protection": 0, "glasses": 2}},
        category_map={"sku": {"LENS-PROTECT-2YR": "protection"}, "product_id": {"788032119674292922": "glasses"}},
    )
    order = sample("shopify_orders_paid")
    first = order["line_items"][0]  # Aviator sunglasses 89.99, now with 9.99 off, bought in euros
    first["discount_allocations"] = [
        {
            "amount": "9.99",
            "amount_set": {
                "shop_money": {"amount": "9.99", "currency_code": "USD"},
                "presentment_money": {"amount": "9.20", "currency_code": "EUR"},
            },
        }
    ]
    for item in order["line_items"]:
        item["price_set"]["presentment_money"] = {"amount": "1.00", "currency_code": "EUR"}
    data = raw(order)
    assert store.deliver(data, shopify_headers(data, "orders/paid", "x1"))[0] == 200
    drain(stack)
    # glasses x2: (80.00 + 159.99 + 119.99) x 2 = 719.96; protection x0; the leather case 24.99 x1
    assert store.points("shopify-115310627314723954", service) == 744


def test_shopify_guest_and_foreign_currency(api: Api, stack: Stack, service: Services) -> None:
    store = Store(api, "shopify", "CNY")
    order = sample("shopify_orders_paid")
    guest = copy.deepcopy(order)
    guest.update(customer=None, email=None, contact_email=None, phone=None)
    data = raw(guest)
    status, answer = store.deliver(data, shopify_headers(data, "orders/paid", "g1"))
    assert status == 200 and answer["accepted"] is False and "guest" in answer["reason"]
    data = raw(order)  # a USD store sending to a CNY program
    assert store.deliver(data, shopify_headers(data, "orders/paid", "g2"))[0] == 200
    drain(stack)
    parked = dead_letters(stack)
    assert len(parked) == 1 and "currency" in parked[0]["MessageAttributes"]["reason"]["StringValue"]
    assert check_invariants(service, store.id, "shopify-115310627314723954")["available"] == 0


# ---------------------------------------------------------------------------- WooCommerce


def test_woocommerce_ping_paid_and_refunded(api: Api, stack: Stack, service: Services) -> None:
    store = Store(api, "woocommerce", "USD")
    status, answer = store.deliver(b"webhook_id=15", {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and answer["accepted"] is False
    paid = (SAMPLES / "woocommerce_order_updated_paid.json").read_bytes()
    assert store.deliver(paid, woo_headers(paid, "w1", secret="nope"))[0] == 401
    assert store.deliver(paid, woo_headers(paid, "w1"))[0] == 200
    refunded = (SAMPLES / "woocommerce_order_updated_refunded.json").read_bytes()
    status, answer = store.deliver(refunded, woo_headers(refunded, "w2"))
    assert answer["events"] == ["order.paid", "order.refunded", "order.refunded"]
    drain(stack)
    guest = store.call("GET", "/members?email=john.doe@example.com")[1]["items"]  # customer_id 0: a guest
    assert len(guest) == 1 and guest[0]["points"]["available"] == 18  # lines 6.00 + 12.00; shipping and tax not
    # Order 723 (customer 26): lines 9.00 + 20.00 = 29 points; refunds 10.00 + 9.00 of 39.00 keep floor(29 x 20/39)
    assert store.points("woocommerce-26", service) == 14
    assert store.deliver(refunded, woo_headers(refunded, "w3"))[0] == 200  # the same refunds again: nothing new
    drain(stack)
    assert store.points("woocommerce-26", service) == 14


def test_woocommerce_statuses_that_do_not_earn(api: Api, stack: Stack) -> None:
    store = Store(api, "woocommerce", "USD")
    pending = sample("woocommerce_order_updated_paid") | {"status": "pending", "date_paid_gmt": None}
    data = raw(pending)
    status, answer = store.deliver(data, woo_headers(data, "p1"))
    assert status == 200 and answer["accepted"] is False and "not paid" in answer["reason"]
    assert queued(stack) == 0


# ---------------------------------------------------------------------------- Stripe


def test_stripe_session_then_refunds_both_ways(api: Api, stack: Stack, service: Services) -> None:
    store = Store(api, "stripe", "USD", program={"points_per_unit": 10})
    session = (SAMPLES / "stripe_checkout_session_completed.json").read_bytes()
    assert store.deliver(session, stripe_headers(session, secret="whsec_other"))[0] == 401
    assert store.deliver(session, stripe_headers(session, at=int(time.time()) - 301))[0] == 401  # stale
    assert store.deliver(session, stripe_headers(session))[0] == 200
    drain(stack)
    member = "stripe-cus_LIP5IRhcFCA5PK"
    assert store.points(member, service) == 50  # USD 5.00 x 10
    charge: dict[str, Any] = {
        "id": "evt_charge_1",
        "type": "charge.refunded",
        "data": {
            "object": {
                "id": "ch_1",
                "object": "charge",
                "amount": 500,
                "amount_refunded": 100,
                "currency": "usd",
                "payment_intent": "pi_3KboGzJ01yyFZ0ZA0ezqQmJw",
            }
        },
    }
    data = raw(charge)
    assert store.deliver(data, stripe_headers(data))[0] == 200
    refund = {
        "id": "evt_refund_1",
        "type": "refund.created",
        "data": {
            "object": sample("stripe_refund_object_official_fixture")
            | {"payment_intent": "pi_3KboGzJ01yyFZ0ZA0ezqQmJw"}
        },
    }
    data = raw(refund)  # the same USD 1.00 refund, reported as a refund object too
    assert store.deliver(data, stripe_headers(data))[0] == 200
    drain(stack)
    assert store.points(member, service) == 40  # 1.00 of 5.00 refunded once, however Stripe reports it
    later = copy.deepcopy(charge)
    later["id"] = "evt_charge_2"
    later["data"]["object"]["amount_refunded"] = 250  # cumulative: 2.50 refunded so far
    data = raw(later)
    store.deliver(data, stripe_headers(data))
    data = raw(charge | {"id": "evt_charge_1_late"})  # an older cumulative figure arriving late changes nothing
    store.deliver(data, stripe_headers(data))
    drain(stack)
    assert store.points(member, service) == 25


def test_stripe_zero_decimal_currency_and_unpaid_sessions(api: Api, stack: Stack, service: Services) -> None:
    store = Store(api, "stripe", "JPY", program={"points_per_unit": "0.01"})
    event = sample("stripe_checkout_session_completed")
    session = event["data"]["object"]
    session.update(
        currency="jpy",
        amount_subtotal=19990,
        amount_total=20790,
        total_details={"amount_discount": 990, "amount_shipping": 800, "amount_tax": 0},
    )
    data = raw(event)
    assert store.deliver(data, stripe_headers(data))[0] == 200
    drain(stack)
    assert store.points("stripe-cus_LIP5IRhcFCA5PK", service) == 190  # ¥19,000 of goods at 1 point per ¥100
    unpaid = copy.deepcopy(event)
    unpaid["id"] = "evt_unpaid"
    unpaid["data"]["object"]["payment_status"] = "unpaid"
    data = raw(unpaid)
    assert store.deliver(data, stripe_headers(data))[1]["accepted"] is False


# ---------------------------------------------------------------------------- Youzan


def test_youzan_trade_paid(api: Api, stack: Stack, service: Services) -> None:
    store = Store(api, "youzan", "CNY", program={"points_per_unit": 100}, member_match=["customer_id", "phone"])
    body = (SAMPLES / "youzan_trade_TradePaid.json").read_bytes().rstrip(b"\n")
    assert youzan_headers(body)["Event-Sign"] == "d8956c236f04d2016d32fc6826fe7427"  # the sample's own note
    status, answer = store.deliver(body, youzan_headers(body, secret="wrong"))
    assert status == 401
    status, answer = store.deliver(body, youzan_headers(body))
    assert status == 200 and answer["msg"] == "success" and answer["events"] == ["order.paid"]
    assert store.deliver(body, youzan_headers(body))[1]["msg"] == "success"  # a retry is answered the same way
    drain(stack)
    assert store.points("youzan-wREDACTEDyzopenid00000000", service) == 2  # two lines of 0.01 yuan, 100 a yuan
    assert store.call("GET", "/members?phone=13800000000")[1]["items"][0]["member_id"].startswith("youzan-")


def test_a_platform_order_of_top_up_skus_fills_the_wallet(api: Api, stack: Stack, service: Services) -> None:
    store = Store(
        api,
        "youzan",
        "CNY",
        program={"wallet": {}},
        member_match=["customer_id", "phone"],
        top_up_skus=["200107001", "200107010"],  # the sample's two lines
    )
    body = (SAMPLES / "youzan_trade_TradePaid.json").read_bytes().rstrip(b"\n")
    assert store.deliver(body, youzan_headers(body))[0] == 200
    drain(stack)
    member = "youzan-wREDACTEDyzopenid00000000"
    assert check_wallet(service, store.id, member) == (2, 0)  # 0.02 yuan paid in
    assert store.points(member, service) == 0  # a top-up earns no points
    assert dead_letters(stack) == []


def test_youzan_refund_and_close(api: Api, stack: Stack, service: Services) -> None:
    store = Store(api, "youzan", "CNY", program={"points_per_unit": 100})
    paid = (SAMPLES / "youzan_trade_TradePaid.json").read_bytes().rstrip(b"\n")
    store.deliver(paid, youzan_headers(paid))
    refund_msg = json.dumps({"tid": "E20210322174110094800093", "refund_id": "R1", "refunded_fee": "0.01"})
    refund = raw(
        {
            "type": "trade_refund_RefundSuccess",
            "msg_id": "m-r1",
            "id": "E20210322174110094800093",
            "msg": quote_plus(refund_msg),
        }
    )
    assert store.deliver(refund, youzan_headers(refund))[0] == 200
    drain(stack)
    assert store.points("youzan-wREDACTEDyzopenid00000000", service) == 1
    close = raw(
        {"type": "trade_TradeClose", "msg_id": "m-c1", "id": "E20210322174110094800093", "msg": quote_plus("{}")}
    )
    assert store.deliver(close, youzan_headers(close))[0] == 200
    drain(stack)
    assert store.points("youzan-wREDACTEDyzopenid00000000", service) == 0


# ---------------------------------------------------------------------------- edges


def test_integrations_never_show_their_secret_and_unknown_platforms(api: Api, stack: Stack) -> None:
    store = Store(api, "shopify", "USD", auto_enrol=False)
    status, view = store.call("GET", "/integrations/shopify")
    assert (
        status == 200 and view["secret_set"] is True and SECRET not in json.dumps(view) and view["auto_enrol"] is False
    )
    assert store.call("GET", "/integrations/stripe")[0] == 404
    assert store.call("PUT", "/integrations/magento", body={"secret": SECRET})[0] == 400
    status, answer = store.call("PUT", "/integrations/youzan", body={"secret": SECRET})
    assert (status, answer["error"]["field"]) == (400, "client_id")
    data = b"{}"
    assert store.deliver(data, {})[0] == 401
    assert api.call("POST", f"/v1/shops/{store.id}/webhooks/magento", raw=data)[0] == 404
    assert api.call("POST", f"/v1/shops/{store.id}/webhooks/stripe", raw=data, headers=stripe_headers(data))[0] == 401


def test_unknown_customers_wait_when_the_shop_does_not_auto_enrol(api: Api, stack: Stack, service: Services) -> None:
    store = Store(api, "shopify", "USD", auto_enrol=False, member_match=["email"])
    assert store.call("POST", "/members", body={"member_id": "vip-7", "email": "john@example.com"})[0] == 201
    order = (SAMPLES / "shopify_orders_paid.json").read_bytes()
    store.deliver(order, shopify_headers(order, "orders/paid", "e1"))
    drain(stack)
    assert store.points("vip-7", service) == 414  # matched by e-mail to the member the shop enrolled


def test_garbled_payloads_are_400_naming_the_field(api: Api, stack: Stack) -> None:
    store = Store(api, "shopify", "USD")
    order = sample("shopify_orders_paid")
    order["line_items"][0]["price_set"]["shop_money"]["amount"] = "eighty"
    data = raw(order)
    status, answer = store.deliver(data, shopify_headers(data, "orders/paid", "b1"))
    assert status == 400 and answer["error"]["field"] == "line_items[0].price"
    assert store.deliver(b"not json", shopify_headers(b"not json", "orders/paid", "b2"))[0] == 400
    assert queued(stack) == 0


@pytest.mark.parametrize("platform", ["shopify", "woocommerce", "stripe", "youzan"])
def test_every_platform_refuses_an_unsigned_delivery(api: Api, stack: Stack, platform: str) -> None:
    store = Store(api, platform, "CNY")
    assert store.deliver(b'{"id": 1}', {"Content-Type": "application/json"})[0] == 401
    assert queued(stack) == 0


# ---------------------------------------------------------------------------- never a 500

JUNK = st.one_of(st.none(), st.just(""), st.just("x"), st.integers(-5, 5), st.just([]), st.just({}), st.just("-1.00"))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside a JSON document."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, inner in value.items():
            found += paths(inner, (*prefix, key))
    elif isinstance(value, list):
        for index, inner in enumerate(value[:3]):
            found += paths(inner, (*prefix, index))
    return found


def replace(document: Any, path: tuple[Any, ...], new: Any) -> Any:
    changed = copy.deepcopy(document)
    target = changed
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return changed


FUZZED = {
    "shopify": ("shopify_orders_paid", lambda data: shopify_headers(data, "orders/paid", f"f{time.time_ns()}")),
    "woocommerce": ("woocommerce_order_updated_refunded", lambda data: woo_headers(data, f"f{time.time_ns()}")),
    "stripe": ("stripe_checkout_session_completed", stripe_headers),
    "youzan": ("youzan_trade_TradePaid.msg_decoded", youzan_headers),  # its msg, re-encoded below
}


@pytest.mark.parametrize("platform", sorted(FUZZED))
def test_mangled_payloads_get_a_4xx_or_are_taken_never_a_500(api: Api, stack: Stack, platform: str) -> None:
    store = Store(api, platform, "CNY" if platform == "youzan" else "USD")
    name, headers = FUZZED[platform]
    document = sample(name)
    every = paths(document)
    envelope = sample("youzan_trade_TradePaid")

    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(where=st.sampled_from(every), junk=JUNK)
    def deliver(where: tuple[Any, ...], junk: Any) -> None:
        mangled = replace(document, where, junk)
        if platform == "youzan":
            mangled = envelope | {"msg_id": f"f{time.time_ns()}", "msg": quote_plus(json.dumps(mangled))}
        data = raw(mangled)
        status, answer = store.deliver(data, headers(data))
        assert status in (200, 400), (where, junk, answer)

    deliver()
    drain(stack)  # whatever was taken, the consumer settles, retries or parks


WRONG = "a-secret-that-is-not-the-shops"
EVERY_SAMPLE = [
    ("shopify", "shopify_orders_paid", lambda data, secret: shopify_headers(data, "orders/paid", "s1", secret)),
    ("shopify", "shopify_refunds_create", lambda data, secret: shopify_headers(data, "refunds/create", "s2", secret)),
    ("woocommerce", "woocommerce_order_updated_paid", lambda data, secret: woo_headers(data, "w1", secret)),
    ("woocommerce", "woocommerce_order_updated_refunded", lambda data, secret: woo_headers(data, "w2", secret)),
    ("stripe", "stripe_checkout_session_completed", lambda data, secret: stripe_headers(data, secret)),
    ("youzan", "youzan_trade_TradePaid", lambda data, secret: youzan_headers(data, secret)),
]


@pytest.mark.parametrize(("platform", "name", "headers"), EVERY_SAMPLE, ids=[name for _, name, _ in EVERY_SAMPLE])
def test_every_sample_is_taken_signed_right_and_refused_signed_wrong(
    api: Api, stack: Stack, platform: str, name: str, headers: Any
) -> None:
    store = Store(api, platform, "CNY" if platform == "youzan" else "USD")
    data = (SAMPLES / f"{name}.json").read_bytes().rstrip(b"\n")
    assert store.deliver(data, headers(data, WRONG))[0] == 401
    assert queued(stack) == 0
    right = YOUZAN_SECRET if platform == "youzan" else SECRET
    status, answer = store.deliver(data, headers(data, right))
    assert status == 200 and answer["accepted"] is True, answer
    assert queued(stack) == len(answer["events"])


def test_the_stripe_refund_sample_is_taken_as_a_refund_event(api: Api, stack: Stack, service: Services) -> None:
    """The official refund object names a charge but no payment intent: recorded against the charge, waiting."""
    store = Store(api, "stripe", "USD")
    event = {
        "id": "evt_r",
        "type": "refund.created",
        "data": {"object": sample("stripe_refund_object_official_fixture")},
    }
    data = raw(event)
    assert store.deliver(data, stripe_headers(data, WRONG))[0] == 401
    status, answer = store.deliver(data, stripe_headers(data))
    assert (status, answer["events"]) == (200, ["order.refunded"])
    drain(stack)
    assert dead_letters(stack) == []
