"""DynamoDB requests per business event, and our path against the raw DynamoDB calls it makes.

    make bench        (python -m bench.requests_per_event)

Runs on moto in process. For each business event it counts the DynamoDB API calls our code makes (the figure
that drives cost on AWS). Then it replays, with plain boto3 against the same starting table, the exact
TransactWriteItems calls our path made for N paid orders, and prints the time ratio ours / raw: what our
parsing, rules and retries cost on top of the writes themselves.
"""

import json
import os
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from infra.local.offline import use_in_process_moto

use_in_process_moto()

import boto3
from moto import mock_aws

from infra.local.resources import table_definition
from loyalty.domain.access import Caller
from loyalty.domain.cards import BatchRequest as BatchRequestModel
from loyalty.domain.coupons import TemplateRequest
from loyalty.domain.errors import Conflict
from loyalty.domain.integrations import IntegrationSettings
from loyalty.domain.lottery import LotteryRequest
from loyalty.domain.mall import ItemRequest
from loyalty.domain.members import Profile, ProfileChange
from loyalty.domain.orders import EVENT_TYPES
from loyalty.domain.program import Program
from loyalty.runtime import Services
from loyalty.service.coupons import QuoteRequest
from loyalty.store.dynamo import Dynamo
from loyalty.store.keys import member_pk
from loyalty.store.queue import Queues

N = 200
SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "platforms"
PAID_AT = (datetime.now(UTC) - timedelta(days=1)).isoformat()


def paid(order_id: str, member_id: str = "m1") -> Any:
    return EVENT_TYPES["order.paid"].model_validate(
        {
            "type": "order.paid",
            "data": {
                "order_id": order_id,
                "member_id": member_id,
                "currency": "CNY",
                "total": "100.00",
                "paid_at": PAID_AT,
                "lines": [
                    {"sku": "tea", "category": "tea", "amount": "60.00"},
                    {"sku": "cup", "category": "ware", "amount": "40.00"},
                ],
            },
        }
    )


def refunded(order_id: str, refund_id: str) -> Any:
    return EVENT_TYPES["order.refunded"].model_validate(
        {"type": "order.refunded", "data": {"order_id": order_id, "refund_id": refund_id, "amount": "25.00"}}
    )


def cancelled(order_id: str) -> Any:
    return EVENT_TYPES["order.cancelled"].model_validate({"type": "order.cancelled", "data": {"order_id": order_id}})


def fresh_table(name: str) -> Services:
    client = boto3.client("dynamodb")
    if name in client.list_tables()["TableNames"]:
        client.delete_table(TableName=name)
    client.create_table(**table_definition(table_name=name))
    return Services(Dynamo(name), cache_seconds=3600)


def measure(service: Services, action: Any) -> Counter[str]:
    service.db.requests.clear()
    action()
    return Counter(service.db.requests)


def requests_per_event() -> list[tuple[str, Counter[str]]]:
    rows = []
    service = fresh_table("bench-requests")
    shop = service.shops.create_shop("Bench")["shop_id"]
    rows.append(("enrolment", measure(service, lambda: service.members.enrol(shop, Profile(member_id="m1")))))
    rows.append(
        ("order.paid, program not yet cached", measure(service, lambda: service.orders.apply(shop, paid("o0"))))
    )
    rows.append(("order.paid (program cached)", measure(service, lambda: service.orders.apply(shop, paid("o1")))))
    rows.append(("order.paid replayed", measure(service, lambda: service.orders.apply(shop, paid("o1")))))
    rows.append(
        (
            "order.refunded (points available)",
            measure(service, lambda: service.orders.apply(shop, refunded("o1", "r1"))),
        )
    )
    rows.append(("order.refunded replayed", measure(service, lambda: service.orders.apply(shop, refunded("o1", "r1")))))
    rows.append(
        (
            "order.cancelled (points available)",
            measure(service, lambda: service.orders.apply(shop, cancelled("o1"))),
        )
    )
    rows.append(
        ("redemption", measure(service, lambda: service.points.redeem(shop, "m1", key="k1", points=10, reason="bench")))
    )
    rows.append(
        (
            "redemption replayed",
            measure(service, lambda: service.points.redeem(shop, "m1", key="k1", points=10, reason="bench")),
        )
    )
    engaging = Program.model_validate(
        {
            "check_in": {"points": 5},
            "behaviours": {"review": {"points": 20, "daily_cap": 60}},
            "behaviour_monthly_cap": 300,
        }
    )
    service.shops.set_program(shop, engaging)
    service.shops.program(shop)  # warm the cache again
    rows.append(("check-in", measure(service, lambda: service.engagement.check_in(shop, "m1"))))
    rows.append(
        ("activity (a review)", measure(service, lambda: service.engagement.activity(shop, "m1", "review", "o1")))
    )
    rows.append(
        ("activity repeated", measure(service, lambda: service.engagement.activity(shop, "m1", "review", "o1")))
    )
    service.shops.set_program(shop, Program(pending_days=7))
    service.shops.program(shop)  # warm the cache again
    rows.append(("order.paid (pending)", measure(service, lambda: service.orders.apply(shop, paid("p1")))))
    rows.append(
        (
            "order.refunded (points pending)",
            measure(service, lambda: service.orders.apply(shop, refunded("p1", "pr1"))),
        )
    )
    for n in range(2, 12):
        service.orders.apply(shop, paid(f"p{n}"))
    run = measure(service, lambda: service.runs.activate_pending(datetime.now(UTC) + timedelta(days=7), service.orders))
    rows.append(("activate-pending run, 11 orders due", run))
    ladder = [{"name": "normal", "threshold": 0}, {"name": "silver", "threshold": 1000, "multiplier": "1.2"}]
    service.shops.set_program(shop, Program.model_validate({"tiers": ladder}))
    service.shops.program(shop)
    upgrading = measure(service, lambda: service.orders.apply(shop, paid("t1")))
    rows.append(("order.paid with tiers, upgrading the member", upgrading))
    rows.append(("order.paid with tiers", measure(service, lambda: service.orders.apply(shop, paid("t2")))))
    rows.extend(coupon_events(service, shop))
    rows.extend(mall_events(service, shop))
    rows.extend(wallet_events(service, shop))
    rows.extend(privacy_events(service, shop))
    rows.extend(platform_events())
    return rows


def privacy_events(service: Services, shop: str) -> list[tuple[str, Counter[str]]]:
    """A member who paid 10 orders (each a ledger entry, a lot and an order item naming them) changes their
    consent, then is erased: a whole erasure, its pages and re-pointed orders included."""
    service.members.enrol(shop, Profile(member_id="e1", phone="+8613800138000", email="e1@example.com"))
    for n in range(10):
        service.orders.apply(shop, paid(f"e{n}", member_id="e1"))
    consent, member = ProfileChange(marketing_consent=True), Caller(kind="member", shop_id=shop, member_id="e1")
    change = measure(service, lambda: service.members.change_profile(shop, "e1", consent, by=member))
    rows = [("profile change (consent)", change)]
    held = sum(1 for _ in service.db.query_all(member_pk(shop, "e1"), ""))
    rows.append(
        (
            f"erasure of a member holding {held} items, 10 orders",
            measure(service, lambda: service.privacy.erase(shop, "e1", lambda: False)),
        )
    )
    rows.append(("erasure replayed", measure(service, lambda: service.privacy.erase(shop, "e1", lambda: False))))
    return rows


def platform_events() -> list[tuple[str, Counter[str]]]:
    """A Shopify orders/paid delivery: what the webhook costs, then the consumer for a new and a known buyer."""
    service = fresh_table("bench-platforms")
    shop = service.shops.create_shop("Bench", currency="USD")["shop_id"]
    service.shops.program(shop)
    service.shops.shop(shop)
    integration = service.platforms.set_integration(shop, "shopify", IntegrationSettings(secret="bench-secret"))
    service.platforms.integration(shop, "shopify")
    os.environ["ORDERS_QUEUE_URL"] = boto3.client("sqs").create_queue(QueueName="bench-orders")["QueueUrl"]
    order = json.loads((SAMPLES / "shopify_orders_paid.json").read_text(), parse_float=Decimal)
    queues = Queues()
    rows = []

    def deliver(delivery: str, order_id: int) -> None:
        headers = {"x-shopify-topic": "orders/paid", "x-shopify-webhook-id": delivery}
        service.platforms.platform_delivery(shop, integration, headers, order | {"id": order_id}, queues)

    rows.append(("Shopify orders/paid webhook (config cached)", measure(service, lambda: deliver("d1", 1))))
    rows.append(("Shopify orders/paid webhook, delivery replayed", measure(service, lambda: deliver("d1", 1))))
    deliver("d2", 2)
    events = [
        json.loads(m["Body"])["event"]
        for m in boto3.client("sqs").receive_message(QueueUrl=os.environ["ORDERS_QUEUE_URL"], MaxNumberOfMessages=10)[
            "Messages"
        ]
    ]
    first, second = (EVENT_TYPES["order.paid"].model_validate(e) for e in events)
    rows.append(
        (
            "order.paid from Shopify, buyer enrolled on the way",
            measure(service, lambda: service.orders.apply(shop, first)),
        )
    )
    rows.append(("order.paid from Shopify, buyer known", measure(service, lambda: service.orders.apply(shop, second))))
    return rows


def mall_events(service: Services, shop: str) -> list[tuple[str, Counter[str]]]:
    """The points mall: a goods exchange, its replay, a coupon exchange, a cancellation."""
    service.shops.set_program(shop, Program())
    service.shops.program(shop)
    for n in range(5):
        service.orders.apply(shop, paid(f"mall{n}"))
    goods = service.mall.create_item(
        shop, ItemRequest.model_validate({"kind": "goods", "name": "Gift", "points": 20, "stock": 100})
    )["item_id"]
    service.mall.item(shop, goods)  # the container has the item cached, as a warm one does
    template = service.coupons.create_template(
        shop,
        TemplateRequest.model_validate(
            {"name": "5 off", "kind": "amount_off", "amount": "5.00", "stock": 100, "valid_days_after_claim": 30}
        ),
    )
    service.coupons.template(shop, template.template_id)
    coupon = service.mall.create_item(
        shop,
        ItemRequest.model_validate(
            {"kind": "coupon", "name": "5 off", "points": 20, "stock": 100, "template_id": template.template_id}
        ),
    )["item_id"]
    service.mall.item(shop, coupon)
    made: dict[str, Any] = {}

    def exchange() -> None:
        made.update(service.mall.exchange(shop, "m1", goods, 1, key="x1")[1])

    rows = [("mall exchange (goods)", measure(service, exchange))]
    rows.append(("mall exchange replayed", measure(service, exchange)))
    rows.append(
        ("mall exchange (a coupon)", measure(service, lambda: service.mall.exchange(shop, "m1", coupon, 1, key="x2")))
    )
    rows.append(
        (
            "mall exchange cancelled",
            measure(service, lambda: service.mall.move(shop, made["exchange_id"], "cancelled")),
        )
    )
    prizes = [
        {"prize_id": "p5", "kind": "points", "points": 5, "weight": 1, "stock": 100},
        {"prize_id": "thanks", "kind": "nothing", "weight": 1},
    ]
    lottery = service.lotteries.create(
        shop,
        LotteryRequest.model_validate(
            {"name": "Spin", "cost_points": 1, "daily_limit": 100, "prizes": prizes, "consolation": "thanks"}
        ),
    )["lottery_id"]
    service.lotteries.lottery(shop, lottery)
    rows.append(("lottery draw", measure(service, lambda: service.lotteries.draw(shop, "m1", lottery, key="d1"))))
    rows.append(
        ("lottery draw replayed", measure(service, lambda: service.lotteries.draw(shop, "m1", lottery, key="d1")))
    )
    return rows


def wallet_events(service: Services, shop: str) -> list[tuple[str, Counter[str]]]:
    """Stored value: a top-up from the shop's backend, a payment with the wallet, its refund, a gift card."""
    service.shops.set_program(
        shop, Program.model_validate({"wallet": {"top_up_plans": [{"pay": "100.00", "bonus": "10.00"}]}})
    )
    service.shops.program(shop)
    secret = boto3.client("secretsmanager").create_secret(Name="bench-cards", SecretString="bench-secret")
    os.environ["CARD_SECRET_ARN"] = secret["ARN"]

    def top_up() -> None:
        service.wallet.top_up(shop, "m1", amount="500.00", reference="pay-1", key="w1")

    rows = [("wallet top-up (API)", measure(service, top_up))]
    rows.append(("wallet top-up replayed", measure(service, top_up)))
    pay = paid("w-o1")
    pay = pay.model_copy(update={"data": pay.data.model_copy(update={"wallet_used": "60.00"})})
    rows.append(("order.paid with the wallet", measure(service, lambda: service.orders.apply(shop, pay))))
    rows.append(
        (
            "order.refunded, paid with the wallet",
            measure(service, lambda: service.orders.apply(shop, refunded("w-o1", "r1"))),
        )
    )
    batch = BatchRequestModel(batch_id="b1", value="50.00", count=10, expires_at=datetime(2100, 1, 1, tzinfo=UTC))
    code = service.cards.issue(shop, batch)["codes"][0]
    rows.append(("gift card redeemed", measure(service, lambda: service.cards.redeem(shop, "m1", code=code, key="c1"))))
    return rows


def coupon_events(service: Services, shop: str) -> list[tuple[str, Counter[str]]]:
    """Claims, the checkout quote, and orders that use coupons and points."""
    service.shops.set_program(shop, Program.model_validate({"points_offset": {"points_per_unit": 10}}))
    service.shops.program(shop)
    fields = {"name": "10 off", "kind": "amount_off", "amount": "10.00", "per_member_limit": 100}
    small = service.coupons.create_template(
        shop, TemplateRequest.model_validate(fields | {"stock": 100, "valid_days_after_claim": 7})
    )
    large = service.coupons.create_template(
        shop, TemplateRequest.model_validate(fields | {"stock": 4000, "valid_days_after_claim": 7})
    )
    sold = service.coupons.create_template(
        shop, TemplateRequest.model_validate(fields | {"stock": 1, "valid_days_after_claim": 7})
    )
    service.coupons.claim(shop, "m1", sold.template_id, key="sold")
    rows = []
    codes = []
    for name, template in (("coupon claim, first of its template", small), ("the same, stock in 16 shards", large)):
        counts = measure(
            service,
            lambda t=template: codes.append(
                service.coupons.claim(shop, "m1", t.template_id, key=f"c-{t.template_id}")["code"]
            ),
        )
        rows.append((name, counts))
    rows.append(
        (
            "coupon claim, template cached in the container",
            measure(service, lambda: service.coupons.claim(shop, "m1", small.template_id, key="second")),
        )
    )
    rows.append(
        (
            "coupon claim replayed",
            measure(
                service, lambda: service.coupons.claim(shop, "m1", small.template_id, key=f"c-{small.template_id}")
            ),
        )
    )
    rows.append(
        (
            "coupon claim, sold out (409)",
            measure(service, lambda: _refused(lambda: service.coupons.claim(shop, "m1", sold.template_id, key="late"))),
        )
    )
    cart = QuoteRequest.model_validate(
        {"member_id": "m1", "lines": [{"sku": "tea", "amount": "100.00"}], "coupon_codes": [codes[0]], "points": 50}
    )
    rows.append(("checkout quote, one coupon and points", measure(service, lambda: service.coupons.quote(shop, cart))))
    with_coupon = paid("c1")
    with_coupon = with_coupon.model_copy(
        update={"data": with_coupon.data.model_copy(update={"coupon_codes": [codes[0]]})}
    )
    rows.append(("order.paid with a coupon", measure(service, lambda: service.orders.apply(shop, with_coupon))))
    both = paid("c2")
    both = both.model_copy(
        update={"data": both.data.model_copy(update={"coupon_codes": [codes[1]], "points_used": 50})}
    )
    rows.append(("order.paid with a coupon and points", measure(service, lambda: service.orders.apply(shop, both))))
    rows.append(
        ("order.cancelled giving both back", measure(service, lambda: service.orders.apply(shop, cancelled("c2"))))
    )
    return rows


def _refused(call: Any) -> None:
    try:
        call()
    except Conflict:
        return
    raise AssertionError("expected a 409")


def ours_against_raw() -> tuple[float, float, int]:
    """N paid orders through our path, then the same TransactWriteItems replayed raw on the same start state."""
    service = fresh_table("bench-ratio")
    shop = service.shops.create_shop("Ratio")["shop_id"]
    members = [f"m{n}" for n in range(20)]
    for member in members:
        service.members.enrol(shop, Profile(member_id=member))
    service.shops.program(shop)
    client = service.db.client
    start_state = client.scan(TableName="bench-ratio")["Items"]  # bench only: snapshot to restore
    captured: list[dict[str, Any]] = []

    def capture(params: dict[str, Any], **_: Any) -> None:
        captured.append(params)

    client.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", capture)
    events = [paid(f"o{n}", members[n % len(members)]) for n in range(N)]
    began = time.perf_counter()
    for event in events:
        service.orders.apply(shop, event)
    ours = time.perf_counter() - began
    client.meta.events.unregister("provide-client-params.dynamodb.TransactWriteItems", capture)

    raw = boto3.client("dynamodb")
    raw.delete_table(TableName="bench-ratio")
    raw.create_table(**table_definition(table_name="bench-ratio"))
    for item in start_state:
        raw.put_item(TableName="bench-ratio", Item=item)
    began = time.perf_counter()
    for params in captured:
        raw.transact_write_items(**params)
    raw_seconds = time.perf_counter() - began
    return ours, raw_seconds, len(captured)


def stream_changes(table: str) -> list[Any]:
    """Every record on the table's stream, as the aggregator receives them."""
    from infra.local import lambdas
    from infra.local.streams import StreamPoller
    from loyalty.store.reports import change_of

    reader = StreamPoller(lambdas.functions()["AggregatesFunction"], table, trim=False)
    return [change_of(record) for record in reader.records()]


def aggregation_cost(orders: int = 300, batch: int = 100) -> list[str]:
    """What keeping the figures costs per order event: the stream's records of `orders` paid orders (one member
    each of 100) given to the aggregator in batches of `batch`, as Lambda gives them."""
    service = fresh_table("bench-aggregate")
    shop = service.shops.create_shop("Figures")["shop_id"]
    members = [f"m{n}" for n in range(100)]
    for member in members:
        service.members.enrol(shop, Profile(member_id=member))
    for n in range(orders):
        service.orders.apply(shop, paid(f"o{n}", members[n % len(members)]))
    changes = stream_changes("bench-aggregate")
    service.db.requests.clear()
    written = Counter[str]()

    def count(params: dict[str, Any], **_: Any) -> None:
        written["actions"] += len(params["TransactItems"])

    service.db.client.meta.events.register("provide-client-params.dynamodb.TransactWriteItems", count)
    for first in range(0, len(changes), batch):
        service.reports.aggregate("shard-1", changes[first : first + batch])
    requests = sum(service.db.requests.values())
    detail = ", ".join(f"{op} {n}" for op, n in sorted(service.db.requests.items()))
    service.db.requests.clear()
    summary = sum(measure(service, lambda: service.reports.summary(shop)).values())
    daily = sum(
        measure(
            service,
            lambda: service.reports.daily(
                shop, datetime.now(UTC).date() - timedelta(days=29), datetime.now(UTC).date()
            ),
        ).values()
    )
    today = datetime.now(UTC).date()
    page = sum(
        measure(
            service,
            lambda: (
                service.reports.overview(shop, today - timedelta(days=29), today),
                service.segments.campaign_reports(shop),
            ),
        ).values()
    )
    return [
        f"{orders} paid orders + {len(members)} enrolments: {len(changes)} stream records, in batches of {batch}",
        f"  requests {requests} ({detail}): {requests / orders:.3f} per order event",
        f"  items written {written['actions']}: {written['actions'] / orders:.2f} per order event",
        f"  a report page view: summary {summary} requests, 30 days daily {daily} requests",
        f"  a dashboard page view (summary, 30 days, win-back campaigns): {page} requests",
    ]


def main() -> None:
    from infra.local import moto_patches

    moto_patches.apply()  # as the local stack and the tests run moto: a transaction backs up its items only
    with mock_aws():
        rows = requests_per_event()
        print("DynamoDB requests per business event (moto, in process)")
        print(f"{'event':52} {'requests':>8}  by operation")
        for name, counts in rows:
            detail = ", ".join(f"{op} {n}" for op, n in sorted(counts.items()))
            print(f"{name:52} {sum(counts.values()):>8}  {detail}")
        ours, raw, calls = ours_against_raw()
        print(f"\n{N} paid orders: our path made {calls} TransactWriteItems ({calls / N:.2f} per order)")
        print(f"time ours / raw replay of the same calls: {ours / raw:.2f}  ({ours:.2f}s / {raw:.2f}s)")
        print("\nKeeping the figures (the aggregator on the table's stream)")
        for line in aggregation_cost():
            print(line)


if __name__ == "__main__":
    main()
