"""Real threads against a real moto server: conditions, not luck, keep the books right."""

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from infra.local.resources import table_definition
from loyalty.domain.cards import BatchRequest
from loyalty.domain.coupons import NotApplicable, TemplateRequest
from loyalty.domain.errors import Conflict, InsufficientPoints, NotFound, Retryable
from loyalty.domain.lottery import LotteryRequest
from loyalty.domain.mall import ItemRequest
from loyalty.domain.members import Profile
from loyalty.domain.program import Program
from loyalty.runtime import Services
from loyalty.store import points as point_store
from loyalty.store.dynamo import Dynamo
from loyalty.store.keys import member_pk
from tests.helpers import check_invariants, check_wallet, event_model, paid

pytestmark = pytest.mark.server


@pytest.fixture
def service(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    name = f"conc-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(**table_definition(table_name=name))
    # This server has only the default bus (an earlier test's stack may have left its own bus's name behind).
    monkeypatch.setenv("EVENT_BUS_NAME", "default")
    yield Services(Dynamo(name), cache_seconds=0)


def fresh(service: Services) -> Services:
    """Another Lambda container: its own clients and connections, the same table."""
    return Services(Dynamo(service.db.table_name), cache_seconds=0)


def with_retries(call: Any, attempts: int = 20) -> Any:
    """What a client does with a 503 (Retryable): try again."""
    for _ in range(attempts - 1):
        try:
            return call()
        except Retryable:
            continue
    return call()


def test_concurrent_redemptions_never_overspend(service: Services) -> None:
    shop_id = service.shops.create_shop("Race")["shop_id"]
    service.members.enrol(shop_id, Profile(member_id="m1"))
    for n in range(10):  # 10 lots of 100 points
        service.orders.apply(shop_id, event_model(paid(f"o{n}", paid_at=f"2026-11-{n + 1:02d}T08:00:00Z")))

    def redeem(n: int) -> str:
        worker = fresh(service)
        try:
            with_retries(lambda: worker.points.redeem(shop_id, "m1", key=f"k{n}", points=70, reason="race"))
        except InsufficientPoints:
            return "short"
        return "ok"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = Counter(pool.map(redeem, range(20)))
    assert outcomes == {"ok": 14, "short": 6}  # 14 x 70 = 980 of 1000
    assert check_invariants(service, shop_id, "m1") == {"available": 20, "pending": 0, "debt": 0}


def test_the_same_payment_delivered_concurrently_counts_once(service: Services) -> None:
    shop_id = service.shops.create_shop("Dup")["shop_id"]
    service.members.enrol(shop_id, Profile(member_id="m1"))
    event = event_model(paid("o1", total="88.00"))

    def deliver(_: int) -> str:
        return str(with_retries(lambda: fresh(service).orders.apply(shop_id, event)))

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = Counter(pool.map(deliver, range(10)))
    assert outcomes["applied"] == 1 and outcomes["duplicate"] == 9
    assert check_invariants(service, shop_id, "m1")["available"] == 88


def test_concurrent_orders_and_redemptions_for_one_member_all_add_up(service: Services) -> None:
    shop_id = service.shops.create_shop("Busy")["shop_id"]
    service.members.enrol(shop_id, Profile(member_id="m1"))
    service.orders.apply(shop_id, event_model(paid("seed", total="500.00")))

    def work(n: int) -> str:
        worker = fresh(service)
        if n % 2:
            with_retries(lambda: worker.orders.apply(shop_id, event_model(paid(f"o{n}", total="10.00"))))
            return "earned"
        with_retries(lambda: worker.points.redeem(shop_id, "m1", key=f"k{n}", points=30, reason="busy"))
        return "spent"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = Counter(pool.map(work, range(24)))
    assert outcomes == {"earned": 12, "spent": 12}
    assert check_invariants(service, shop_id, "m1")["available"] == 500 + 12 * 10 - 12 * 30


# ---------------------------------------------------------------------------- coupons


def coupon_shop(service: Services, members: int, **template: Any) -> tuple[str, str]:
    shop_id = service.shops.create_shop("Flash sale")["shop_id"]
    for n in range(members):
        service.members.enrol(shop_id, Profile(member_id=f"m{n}"))
    shards = template.pop("stock_shards", None)
    fields = {"name": "10 off", "kind": "amount_off", "amount": "10.00", "valid_days_after_claim": 7} | template
    created = service.coupons.create_template(shop_id, TemplateRequest.model_validate(fields), stock_shards=shards)
    return shop_id, created.template_id


def claim_outcome(service: Services, shop_id: str, member: str, template_id: str, key: str) -> str:
    try:
        with_retries(lambda: fresh(service).coupons.claim(shop_id, member, template_id, key=key))
    except Conflict as exc:
        return exc.code
    return "issued"


@pytest.mark.parametrize("stock_shards", [1, 4])
def test_500_concurrent_claims_on_a_stock_of_100_issue_exactly_100(service: Services, stock_shards: int) -> None:
    shop_id, template_id = coupon_shop(service, 125, stock=100, per_member_limit=4, stock_shards=stock_shards)

    def claim(n: int) -> str:
        return claim_outcome(service, shop_id, f"m{n % 125}", template_id, key=f"k{n}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = Counter(pool.map(claim, range(500)))
    assert outcomes == {"issued": 100, "out_of_stock": 400}
    held = sum(len(service.coupons.coupons(shop_id, f"m{n}")) for n in range(125))
    assert held == 100 and service.coupons.template_view(shop_id, template_id)["left"] == 0


def test_20_concurrent_claims_by_one_member_with_a_limit_of_1_issue_1(service: Services) -> None:
    shop_id, template_id = coupon_shop(service, 1, stock=100, per_member_limit=1)

    def claim(n: int) -> str:
        return claim_outcome(service, shop_id, "m0", template_id, key=f"k{n}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = Counter(pool.map(claim, range(20)))
    assert outcomes == {"issued": 1, "limit_reached": 19}
    assert len(service.coupons.coupons(shop_id, "m0")) == 1
    assert service.coupons.template_view(shop_id, template_id)["issued"] == 1


def test_one_coupon_in_two_concurrent_paid_orders_is_used_once(service: Services) -> None:
    shop_id, template_id = coupon_shop(service, 1, stock=10, per_member_limit=5)

    def pay(order_id: str, code: str) -> str:
        event = paid(order_id, member_id="m0", total="90.00", paid_at=datetime.now(UTC).isoformat())
        event["data"]["lines"][0]["amount"] = "100.00"  # 100.00 of goods, 10.00 off: 90.00 paid, 90 points
        event["data"]["coupon_codes"] = [code]
        try:
            return str(with_retries(lambda: fresh(service).orders.apply(shop_id, event_model(event))))
        except NotApplicable as exc:
            return exc.reason

    for race in range(3):  # three races, each for a fresh coupon
        code = service.coupons.claim(shop_id, "m0", template_id, key=f"k{race}")["code"]
        with ThreadPoolExecutor(max_workers=2) as pool:
            outcomes = Counter(pool.map(pay, [f"r{race}-o1", f"r{race}-o2"], [code, code]))
        assert outcomes == {"applied": 1, "already_used": 1}
        used = [c for c in service.coupons.coupons(shop_id, "m0") if c["code"] == code]
        assert used[0]["status"] == "used" and used[0]["order_id"].startswith(f"r{race}-")
    assert check_invariants(service, shop_id, "m0")["available"] == 3 * 90  # only the winners earned


def test_concurrent_invocations_of_one_function_each_get_a_container(
    moto_server: str, api: Any, shop: dict[str, str]
) -> None:
    """Lambda never runs two invocations in one container at once; Powertools' resolver keeps per-request state
    (app.context), so the local stack must not either: concurrent requests once answered 500 (KeyError '_route').
    Against the moto server, which applies one DynamoDB request at a time as DynamoDB does: the in-process mock
    has no lock, and concurrent transactions there could answer 409 (seen once in 48 enrolments)."""
    import threading

    from infra.local import lambdas

    sid, key = shop["shop_id"], shop["api_key"]
    start = threading.Barrier(8)

    def enrol(n: int) -> int:
        start.wait() if n < 8 else None
        status, _ = api.call("POST", f"/v1/shops/{sid}/members", key=key, body={"member_id": f"c{n}"})
        return int(status)

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = Counter(pool.map(enrol, range(48)))
    assert statuses == {201: 48}, statuses
    function = lambdas.functions()["ApiFunction"]
    assert lambdas.handler(function) is not None  # the first container is still there for the tests' own use


def test_two_containers_resolving_at_once_each_read_their_own_request(
    moto_server: str, api: Any, shop: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Powertools keeps the event being resolved on a class attribute (`BaseRouter.current_event`), shared by every
    resolver of the process: fine on Lambda (one invocation per process), not in the local stack, whose
    containers are threads. A request that read its body after another container had started resolving read the
    other's: an enrolment answered 200 "replay" for a member never written, another was enrolled twice (1 or 2 in
    5,000 under `make bench-local`; once in CI as a 200 among 48 concurrent enrolments)."""
    import threading
    import time

    from aws_lambda_powertools.event_handler.middlewares.openapi_validation import (
        OpenAPIRequestValidationMiddleware as Validation,
    )

    from infra.local import lambdas

    sid, key = shop["shop_id"], shop["api_key"]
    reading, release = threading.Event(), threading.Event()
    get_body = Validation._get_body
    calls = iter(range(1_000))

    def held_body(self: Any, app: Any) -> Any:
        if next(calls) == 0:  # the first request stops just before reading its body
            reading.set()
            assert release.wait(10)
        return get_body(self, app)

    monkeypatch.setattr(Validation, "_get_body", held_body)

    def enrol(member_id: str) -> tuple[int, Any]:
        return api.call("POST", f"/v1/shops/{sid}/members", key=key, body={"member_id": member_id})  # type: ignore[no-any-return]

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(enrol, "first")
        assert reading.wait(10), first.result()
        assert pool.submit(enrol, "second").result(timeout=30)[0] == 201  # in another container: the first is busy
        release.set()
        status, body = first.result(timeout=30)
    assert (status, body["member_id"]) == (201, "first"), body
    for member_id in ("first", "second"):
        status, body = api.call("GET", f"/v1/shops/{sid}/members/{member_id}", key=key)
        assert (status, body["member_id"]) == (200, member_id), body
    # The routers now belong to the second container's resolver too; the first reads its own Lambda context (the
    # time it has left), not the second's, once the second's deadline has passed.
    time.sleep(lambdas.functions()["ApiFunction"].timeout + 0.5)
    status, body = api.call("GET", f"/v1/shops/{sid}/reports/reconciliation", key=key)
    assert (status, body["complete"], body["members_read"]) == (200, True, 2), body


def test_concurrent_activities_stay_within_the_caps(service: Services) -> None:
    """Many containers at once: the counters' conditions, not the reads, keep the grants within the caps."""
    shop_id = service.shops.create_shop("Busy")["shop_id"]
    behaviours = {"review": {"points": 20, "daily_cap": 30}, "share": {"points": 10, "monthly_cap": 25}}
    service.shops.set_program(shop_id, Program.model_validate({"behaviours": behaviours, "behaviour_monthly_cap": 45}))
    service.members.enrol(shop_id, Profile(member_id="m1"))

    def send(n: int) -> int:
        worker = fresh(service)
        behaviour = "review" if n % 2 else "share"
        return int(with_retries(lambda: worker.engagement.activity(shop_id, "m1", behaviour, f"r{n}"))[1]["points"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        granted = list(pool.map(send, range(16)))
    assert sum(granted) == 45  # 30 of review (its daily cap) and 25 of share would be 55: the monthly cap wins
    assert check_invariants(service, shop_id, "m1")["available"] == 45


def _mall_item(service: Services, shop_id: str, **fields: Any) -> str:
    request = ItemRequest.model_validate({"kind": "goods", "name": "Gift", "points": 10, "stock": 20} | fields)
    return str(service.mall.create_item(shop_id, request)["item_id"])


def test_a_flash_exchange_never_oversells(service: Services) -> None:
    """300 members exchange at once for 100 units: exactly 100 succeed."""
    shop_id = service.shops.create_shop("Flash")["shop_id"]
    members = [f"m{n}" for n in range(300)]
    for member in members:
        service.members.enrol(shop_id, Profile(member_id=member))
        service.orders.apply(shop_id, event_model(paid(f"o-{member}", member_id=member, total="50.00")))
    item = _mall_item(service, shop_id, stock=100)

    def exchange(member: str) -> str:
        worker = fresh(service)
        try:
            with_retries(lambda: worker.mall.exchange(shop_id, member, item, 1, key=f"k-{member}"))
        except Conflict as exc:
            return exc.code
        return "ok"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = Counter(pool.map(exchange, members))
    assert outcomes == {"ok": 100, "out_of_stock": 200}
    assert service.mall.item_view(shop_id, item)["stock_left"] == 0
    balances = Counter(service.members.member(shop_id, m).balance.available for m in members)
    assert balances == {40: 100, 50: 200}  # the 100 who got one paid 10 points; nobody else paid anything
    for member in members[:10]:  # the ledger explains each balance (check_invariants scans: too slow at this size)
        available = service.members.member(shop_id, member).balance.available
        assert available == sum(e.points for e in point_store.ledger_all(service.db, shop_id, member))
        assert available == sum(lot.remaining for lot in point_store.lots(service.db, shop_id, member))


def test_one_members_concurrent_exchanges_stop_at_their_limit(service: Services) -> None:
    shop_id = service.shops.create_shop("Limit")["shop_id"]
    service.members.enrol(shop_id, Profile(member_id="m1"))
    service.orders.apply(shop_id, event_model(paid("o1", total="500.00")))
    item = _mall_item(service, shop_id, per_member_limit=3)

    def exchange(n: int) -> str:
        try:
            with_retries(lambda: fresh(service).mall.exchange(shop_id, "m1", item, 1, key=f"k{n}"))
        except Conflict as exc:
            return exc.code
        return "ok"

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = Counter(pool.map(exchange, range(20)))
    assert outcomes == {"ok": 3, "limit_reached": 17}
    assert check_invariants(service, shop_id, "m1")["available"] == 470


def test_concurrent_draws_stop_at_the_daily_limit_and_never_pass_a_prizes_stock(service: Services) -> None:
    shop_id = service.shops.create_shop("Spin")["shop_id"]
    service.members.enrol(shop_id, Profile(member_id="m1"))
    service.members.enrol(shop_id, Profile(member_id="m2"))
    service.orders.apply(shop_id, event_model(paid("o1", total="500.00")))
    service.orders.apply(shop_id, event_model(paid("o2", member_id="m2", total="500.00")))
    prizes = [
        {"prize_id": "tea", "kind": "points", "points": 1, "weight": 1, "stock": 5},
        {"prize_id": "thanks", "kind": "nothing", "weight": 0},
    ]
    limited = service.lotteries.create(
        shop_id,
        LotteryRequest.model_validate(
            {"name": "Limited", "cost_points": 10, "daily_limit": 3, "prizes": prizes, "consolation": "thanks"}
        ),
    )["lottery_id"]
    generous = service.lotteries.create(
        shop_id,
        LotteryRequest.model_validate(
            {"name": "Stock", "cost_points": 1, "daily_limit": 100, "prizes": prizes, "consolation": "thanks"}
        ),
    )["lottery_id"]

    def draw(lottery_id: str, member: str, n: int) -> str:
        try:
            _, answer = with_retries(
                lambda: fresh(service).lotteries.draw(shop_id, member, lottery_id, key=f"{lottery_id}{n}")
            )
        except Conflict as exc:
            return exc.code
        return str(answer["prize_id"])

    with ThreadPoolExecutor(max_workers=10) as pool:
        limited_outcomes = Counter(pool.map(lambda n: draw(limited, "m1", n), range(50)))
        stock_outcomes = Counter(pool.map(lambda n: draw(generous, "m2", n), range(20)))
    assert limited_outcomes == {"tea": 3, "limit_reached": 47}  # tea has stock 5: all three draws win it
    assert stock_outcomes == {"tea": 5, "thanks": 15}  # each lottery's prizes have their own stock
    check_invariants(service, shop_id, "m1")
    check_invariants(service, shop_id, "m2")


def test_concurrent_wallet_payments_never_overdraw(service: Services, stack: Any) -> None:
    shop_id = service.shops.create_shop("Wallet")["shop_id"]
    service.shops.set_program(shop_id, Program.model_validate({"wallet": {}}))
    service.members.enrol(shop_id, Profile(member_id="m1"))
    top_up = paid("t1", total="1000.00")
    top_up["data"]["top_up"] = True
    service.orders.apply(shop_id, event_model(top_up))

    def pay(n: int) -> str:
        event = paid(f"o{n}", total="30.00")
        event["data"]["wallet_used"] = "30.00"
        worker = fresh(service)
        for _ in range(40):  # SQS redelivers what contention refused
            try:
                return str(worker.orders.apply(shop_id, event_model(event)))
            except Retryable as exc:
                if exc.code == "insufficient_balance":
                    return "short"
        raise AssertionError("never settled")

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = Counter(pool.map(pay, range(40)))
    assert outcomes == {"applied": 33, "short": 7}  # 33 x 30 = 990 of 1000
    assert check_wallet(service, shop_id, "m1") == (1000, 0)  # 10.00 left, in minor units


def test_one_gift_card_redeemed_by_many_at_once_pays_once(service: Services, stack: Any) -> None:
    shop_id = service.shops.create_shop("Cards")["shop_id"]
    service.shops.set_program(shop_id, Program.model_validate({"wallet": {}}))
    members = [f"m{n}" for n in range(8)]
    for member in members:
        service.members.enrol(shop_id, Profile(member_id=member))
    request = BatchRequest(batch_id="b1", value="50.00", count=1, expires_at=datetime(2100, 1, 1, tzinfo=UTC))
    [code] = service.cards.issue(shop_id, request)["codes"]

    def redeem(member: str) -> str:
        try:
            with_retries(lambda: fresh(service).cards.redeem(shop_id, member, code=code, key=f"k-{member}"))
        except NotApplicable:
            return "refused"
        return "redeemed"

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = Counter(pool.map(redeem, members))
    assert outcomes == {"redeemed": 1, "refused": 7}
    assert sum(sum(check_wallet(service, shop_id, member)) for member in members) == 5000


def test_an_erasure_racing_orders_and_redemptions_loses_nothing_and_leaves_nothing_behind(service: Services) -> None:
    """Each order or redemption lands before the erasure's first transaction (and moves with the member) or
    after it (and finds no member): never in the old partition once it has been emptied."""
    shop_id = service.shops.create_shop("Race")["shop_id"]
    service.members.enrol(shop_id, Profile(member_id="m1", phone="+8613800138000"))
    for n in range(5):
        service.orders.apply(shop_id, event_model(paid(f"o{n}", paid_at=f"2026-11-{n + 1:02d}T08:00:00Z")))

    def act(n: int) -> str:
        worker = fresh(service)
        try:
            if n == 0:
                return (
                    "erased"
                    if with_retries(lambda: worker.privacy.erase(shop_id, "m1", lambda: False))["complete"]
                    else "cut"
                )
            if n % 2:
                event = event_model(paid(f"r{n}", paid_at="2026-11-20T08:00:00Z"))
                with_retries(lambda: worker.orders.apply(shop_id, event))
                return "paid"
            with_retries(lambda: worker.points.redeem(shop_id, "m1", key=f"k{n}", points=10, reason="race"))
            return "redeemed"
        except (Conflict, Retryable, NotFound) as exc:  # after the erasure: no such member
            return type(exc).__name__

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(act, [1, 2, 3, 0, 4, 5, 6, 7, 8, 9, 10, 11]))
    assert "erased" in outcomes, outcomes
    pseudonym = service.privacy.erase(shop_id, "m1", lambda: False)["member_id"]  # the same answer, asked again
    assert service.db.query_page(member_pk(shop_id, "m1"), "", limit=10)[0] == []  # nothing left behind
    balance = check_invariants(service, shop_id, pseudonym)
    landed = point_store.ledger_all(service.db, shop_id, pseudonym)
    # Every success the callers saw is in the pseudonym's ledger: 5 orders before, then what won the race.
    paid_ok = outcomes.count("paid")
    redeemed_ok = outcomes.count("redeemed")
    assert len([e for e in landed if e.reason == "order.paid"]) == 5 + paid_ok
    assert len([e for e in landed if e.reason == "redemption"]) == redeemed_ok
    assert balance["available"] == 100 * (5 + paid_ok) - 10 * redeemed_ok
