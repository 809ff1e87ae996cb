"""Real threads against a real moto server: conditions, not luck, keep the books right."""

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from infra.local.resources import table_definition
from loyalty.domain.errors import InsufficientPoints, Retryable
from loyalty.domain.members import Profile
from loyalty.service.loyalty import Loyalty
from loyalty.store.dynamo import Dynamo
from tests.helpers import check_invariants, event_model, paid

pytestmark = pytest.mark.server


@pytest.fixture
def service(moto_server: str) -> Any:
    name = f"conc-{uuid.uuid4().hex[:8]}"
    boto3.client("dynamodb").create_table(**table_definition(table_name=name))
    yield Loyalty(Dynamo(name), cache_seconds=0)


def fresh(service: Loyalty) -> Loyalty:
    """Another Lambda container: its own clients and connections, the same table."""
    return Loyalty(Dynamo(service.db.table_name), cache_seconds=0)


def with_retries(call: Any, attempts: int = 20) -> Any:
    """What a client does with a 503 (Retryable): try again."""
    for _ in range(attempts - 1):
        try:
            return call()
        except Retryable:
            continue
    return call()


def test_concurrent_redemptions_never_overspend(service: Loyalty) -> None:
    shop_id = service.create_shop("Race")["shop_id"]
    service.enrol(shop_id, Profile(member_id="m1"))
    for n in range(10):  # 10 lots of 100 points
        service.apply_order_event(shop_id, event_model(paid(f"o{n}", paid_at=f"2026-11-{n + 1:02d}T08:00:00Z")))

    def redeem(n: int) -> str:
        worker = fresh(service)
        try:
            with_retries(lambda: worker.redeem(shop_id, "m1", key=f"k{n}", points=70, reason="race"))
        except InsufficientPoints:
            return "short"
        return "ok"

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = Counter(pool.map(redeem, range(20)))
    assert outcomes == {"ok": 14, "short": 6}  # 14 x 70 = 980 of 1000
    assert check_invariants(service, shop_id, "m1") == {"available": 20, "pending": 0, "debt": 0}


def test_the_same_payment_delivered_concurrently_counts_once(service: Loyalty) -> None:
    shop_id = service.create_shop("Dup")["shop_id"]
    service.enrol(shop_id, Profile(member_id="m1"))
    event = event_model(paid("o1", total="88.00"))

    def deliver(_: int) -> str:
        return str(with_retries(lambda: fresh(service).apply_order_event(shop_id, event)))

    with ThreadPoolExecutor(max_workers=10) as pool:
        outcomes = Counter(pool.map(deliver, range(10)))
    assert outcomes["applied"] == 1 and outcomes["duplicate"] == 9
    assert check_invariants(service, shop_id, "m1")["available"] == 88


def test_concurrent_orders_and_redemptions_for_one_member_all_add_up(service: Loyalty) -> None:
    shop_id = service.create_shop("Busy")["shop_id"]
    service.enrol(shop_id, Profile(member_id="m1"))
    service.apply_order_event(shop_id, event_model(paid("seed", total="500.00")))

    def work(n: int) -> str:
        worker = fresh(service)
        if n % 2:
            with_retries(lambda: worker.apply_order_event(shop_id, event_model(paid(f"o{n}", total="10.00"))))
            return "earned"
        with_retries(lambda: worker.redeem(shop_id, "m1", key=f"k{n}", points=30, reason="busy"))
        return "spent"

    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = Counter(pool.map(work, range(24)))
    assert outcomes == {"earned": 12, "spent": 12}
    assert check_invariants(service, shop_id, "m1")["available"] == 500 + 12 * 10 - 12 * 30
