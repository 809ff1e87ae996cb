"""Points lapse through the expire-points run and are announced through remind-expiring; all on moto."""

import inspect
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.domain.members import Profile
from loyalty.runtime import Services
from loyalty.store import points as point_store
from loyalty.store.keys import member_pk
from tests.conftest import Api
from tests.helpers import capture_events, captured, check_invariants, drain, paid, refunded, run_expiry, send

ZONE = "Asia/Shanghai"


def run(function: str, time: datetime) -> dict[str, Any]:
    event = lambdas.schedule_event(time.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    return dict(lambdas.invoke(lambdas.functions()[function], event))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.fixture
def shop_id(api: Api, shop: dict[str, str]) -> str:
    sid = shop["shop_id"]
    program = {"timezone": ZONE, "expiry": {"purchase": {"policy": "end_of_next_year"}}, "expiry_reminder_days": 30}
    assert api.call("PUT", f"/v1/shops/{sid}/program", key=shop["api_key"], body=program)[0] == 200
    for member in ("m1", "m2"):  # they agree to marketing: reminders are marketing
        body = {"member_id": member, "marketing_consent": True}
        api.call("POST", f"/v1/shops/{sid}/members", key=shop["api_key"], body=body)
    return sid


def earn(stack: Stack, shop_id: str, order: str, paid_at: str, total: str = "100.00", member: str = "m1") -> None:
    send(stack, shop_id, paid(order, member_id=member, total=total, paid_at=paid_at))
    drain(stack)


def test_points_lapse_at_the_end_of_next_year_local_time(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], shop_id: str
) -> None:
    earn(stack, shop_id, "june", "2025-06-01T10:00:00+08:00", "100.00")
    earn(stack, shop_id, "eve", "2025-12-31T23:59:59+08:00", "50.00")  # the last second of 2025 in Shanghai
    earn(stack, shop_id, "dawn", "2026-01-01T00:00:00+08:00", "20.00")  # the first of 2026
    status, body = api.call("GET", f"/v1/shops/{shop_id}/members/m1", key=shop["api_key"])
    assert status == 200
    assert body["points"]["expiring"] == [
        {"points": 150, "expires_at": "2026-12-31T15:59:59.000000Z"},
        {"points": 20, "expires_at": "2027-12-31T15:59:59.000000Z"},
    ]
    assert run_expiry(stack, at("2026-12-31T23:59:59+08:00"))["applied"] == 0  # still valid
    report = run_expiry(stack, at("2027-01-01T00:00:01+08:00"))
    assert (report["due"], report["applied"]) == (2, 2)
    assert check_invariants(service, shop_id, "m1")["available"] == 20
    assert run_expiry(stack, at("2027-01-01T00:00:01+08:00"))["applied"] == 0  # re-run: nothing twice
    assert run_expiry(stack, at("2028-01-01T00:00:01+08:00"))["applied"] == 1
    assert check_invariants(service, shop_id, "m1")["available"] == 0
    entries = api.call("GET", f"/v1/shops/{shop_id}/members/m1/ledger", key=shop["api_key"])[1]["items"]
    lapsed = {e["reference"]: e for e in entries if e["reason"] == "points.expired"}
    # The two lots of 2025 lapse at one instant: one entry, naming each; the lot of 2026 a year later, alone.
    assert {reference: e["points"] for reference, e in lapsed.items()} == {"june": -150, "dawn": -20}
    assert lapsed["june"]["detail"]["lots"] == [
        {"source": "purchase", "reference": "june", "points": 100},
        {"source": "purchase", "reference": "eve", "points": 50},
    ]


def test_spent_points_do_not_lapse_and_spending_takes_the_soonest_first(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], shop_id: str
) -> None:
    earn(stack, shop_id, "old", "2025-03-01T10:00:00+08:00", "100.00")
    earn(stack, shop_id, "new", "2026-03-01T10:00:00+08:00", "100.00")
    status, _ = api.call(
        "POST",
        f"/v1/shops/{shop_id}/members/m1/redemptions",
        key=shop["api_key"],
        body={"points": 130, "reason": "gift"},
        headers={"Idempotency-Key": "spend-1"},
    )
    assert status == 201  # 100 from the lot lapsing end of 2026, then 30 from the next
    report = run_expiry(stack, at("2027-01-01T00:00:01+08:00"))
    assert (report["due"], report["applied"]) == (0, 0)  # the emptied lot left the index when it was spent
    assert run_expiry(stack, at("2028-01-01T00:00:01+08:00"))["applied"] == 1
    assert check_invariants(service, shop_id, "m1") == {"available": 0, "pending": 0, "debt": 0}


def test_a_refund_after_part_of_the_orders_points_lapsed_takes_nothing_twice(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], shop_id: str
) -> None:
    earn(stack, shop_id, "o1", "2025-05-01T10:00:00+08:00", "100.00")
    earn(stack, shop_id, "o2", "2026-05-01T10:00:00+08:00", "100.00")
    api.call(
        "POST",
        f"/v1/shops/{shop_id}/members/m1/redemptions",
        key=shop["api_key"],
        body={"points": 40, "reason": "gift"},
        headers={"Idempotency-Key": "spend-1"},
    )
    run_expiry(stack, at("2027-01-02T00:00:00+08:00"))  # o1's remaining 60 lapse
    assert service.members.member(shop_id, "m1").balance.available == 100
    send(stack, shop_id, refunded("o1", "r1", "100.00"))  # o1 refunded in full
    drain(stack)
    # The member keeps nothing of o1: 60 already lapsed, so only the 40 they spent comes back from o2.
    assert check_invariants(service, shop_id, "m1")["available"] == 60


def test_a_run_stopped_half_way_is_finished_by_the_next(stack: Stack, service: Services, shop_id: str) -> None:
    for n in (0, 3):
        service.members.enrol(shop_id, Profile(member_id=f"m{n}"))
    for n in range(4):  # four members, a lot each: four transactions (one member's lots would lapse as one)
        earn(stack, shop_id, f"o{n}", "2025-05-01T10:00:00+08:00", member=f"m{n}")
    calls = iter(range(100))
    when = at("2027-01-01T00:00:01+08:00")
    first = service.runs.expire_points(when, service.points, should_stop=lambda: next(calls) >= 2)
    assert (first.applied, first.complete) == (3, False)
    second = service.runs.expire_points(when, service.points)
    assert (second.applied, second.complete) == (1, True)
    for n in range(4):
        assert check_invariants(service, shop_id, f"m{n}")["available"] == 0


def test_a_late_event_counts_at_its_own_time(stack: Stack, service: Services, shop_id: str) -> None:
    """An order paid in 2024, heard of only now: its points lapsed at the end of 2025 and go at the next run."""
    earn(stack, shop_id, "late", "2024-03-01T10:00:00+08:00")
    assert service.members.member(shop_id, "m1").balance.available == 100
    report = service.runs.expire_points(datetime.now(UTC) + timedelta(seconds=1), service.points)
    assert report.applied == 1
    assert check_invariants(service, shop_id, "m1")["available"] == 0


def test_reminders_go_once_per_member_and_expiry_date(
    api: Api, stack: Stack, shop: dict[str, str], shop_id: str
) -> None:
    # Earned in year y, the points lapse at the end of y + 1 and are reminded of 30 days before. The orders must
    # be in the past and the reminders in the future (due work is filed no earlier than today): the latest such y.
    today = datetime.now(UTC)
    y = today.year if today >= datetime(today.year, 10, 2, tzinfo=UTC) else today.year - 1
    url = capture_events(stack)
    earn(stack, shop_id, "a", f"{y}-03-01T10:00:00+08:00", "100.00", member="m1")
    earn(stack, shop_id, "b", f"{y}-09-01T10:00:00+08:00", "50.00", member="m1")  # same expiry: one reminder
    earn(stack, shop_id, "c", f"{y}-09-01T10:00:00+08:00", "30.00", member="m2")
    # m3 never agreed to marketing: not reminded (and the reminder is not kept for later).
    api.call("POST", f"/v1/shops/{shop_id}/members", key=shop["api_key"], body={"member_id": "m3"})
    earn(stack, shop_id, "e", f"{y}-09-01T10:00:00+08:00", "30.00", member="m3")
    assert run("RemindExpiringFunction", at(f"{y + 1}-11-30T00:00:00+08:00"))["applied"] == 0  # 31 days ahead
    report = run("RemindExpiringFunction", at(f"{y + 1}-12-01T23:59:59+08:00"))  # 30 days ahead
    assert (report["due"], report["applied"]) == (3, 2)
    sent = captured(url)
    assert sorted((e["detail"]["member_id"], e["detail"]["points"]) for e in sent) == [("m1", 150), ("m2", 30)]
    assert {e["detail-type"] for e in sent} == {"points.expiring"}
    assert sent[0]["detail"]["expires_at"] == f"{y + 1}-12-31T15:59:59.000000Z"
    earn(stack, shop_id, "d", f"{y}-10-01T10:00:00+08:00", "10.00", member="m1")  # re-lists m1's reminder
    assert run("RemindExpiringFunction", at(f"{y + 1}-12-02T00:00:00+08:00"))["applied"] == 0
    assert run("RemindExpiringFunction", at(f"{y + 1}-12-02T00:00:00+08:00"))["due"] == 0
    assert captured(url) == []


def test_a_stale_index_copy_of_a_lot_is_read_again_before_it_lapses(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], shop_id: str
) -> None:
    """On AWS the due index lags the table; the run's write is conditioned on the remainder it saw."""
    earn(stack, shop_id, "o1", "2024-05-01T10:00:00+08:00", "100.00")  # lapsed at the end of 2025
    [stale] = index_copies(service, shop_id)
    spend_30(api, shop, shop_id)
    assert service.points.lapse_together([stale], datetime.now(UTC)) == 1  # the index said 100; 70 were left
    assert check_invariants(service, shop_id, "m1")["available"] == 0
    entries = point_store.ledger_all(service.db, shop_id, "m1")
    assert [e.points for e in entries if e.reason == "points.expired"] == [-70]


def index_copies(service: Services, shop_id: str) -> list[dict[str, Any]]:
    """m1's lots as the due index projects them, to be handed to a lapse after they changed."""
    lots = point_store.lots(service.db, shop_id, "m1")
    pk = member_pk(shop_id, "m1")
    return [{"PK": pk, "SK": f"LOT#{lot.lot_id}", **lot.model_dump(mode="json", exclude={"lot_id"})} for lot in lots]


def spend_30(api: Api, shop: dict[str, str], shop_id: str) -> None:
    status, _ = api.call(
        "POST",
        f"/v1/shops/{shop_id}/members/m1/redemptions",
        key=shop["api_key"],
        body={"points": 30, "reason": "gift"},
        headers={"Idempotency-Key": "spend"},
    )
    assert status == 201


def test_a_members_year_of_lots_lapses_in_one_transaction(stack: Stack, service: Services, shop_id: str) -> None:
    """With end_of_next_year, all of a member's lots of a year expire at one instant: the due index files them side
    by side, and one transaction (the balance, one entry, each lot and its order's count) takes them all."""
    for n in range(5):
        earn(stack, shop_id, f"a{n}", f"2025-0{n + 1}-10T10:00:00+08:00", "10.00")  # m1: 5 lots, one instant
    earn(stack, shop_id, "b0", "2025-03-10T10:00:00+08:00", "30.00", member="m2")
    service.db.requests.clear()
    report = service.runs.expire_points(at("2027-01-01T00:00:01+08:00"), service.points)
    assert (report.due, report.applied) == (6, 6)
    assert service.db.requests["TransactWriteItems"] == 2  # one per member, not one per lot
    assert check_invariants(service, shop_id, "m1") == {"available": 0, "pending": 0, "debt": 0}
    assert check_invariants(service, shop_id, "m2")["available"] == 0
    [entry] = [e for e in point_store.ledger_all(service.db, shop_id, "m1") if e.reason == "points.expired"]
    assert entry.points == -50 and [lot["reference"] for lot in entry.detail["lots"]] == [f"a{n}" for n in range(5)]
    # Each order counts its own lapsed points: a refund now takes nothing twice.
    send(stack, shop_id, refunded("a2", "r1", "10.00"))
    drain(stack)
    assert check_invariants(service, shop_id, "m1")["available"] == 0
    assert service.runs.expire_points(at("2027-01-01T00:00:01+08:00"), service.points).applied == 0  # re-run


def test_lots_lapsing_together_read_again_when_one_changed(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], shop_id: str
) -> None:
    """The index's copies are stale: one lot was spent from since. The transaction is refused whole, the lots are
    read again, and what is left of each lapses; nothing is taken twice."""
    earn(stack, shop_id, "o1", "2024-05-01T10:00:00+08:00", "100.00")  # both lapsed at the end of 2025
    earn(stack, shop_id, "o2", "2024-06-01T10:00:00+08:00", "50.00")
    stale = index_copies(service, shop_id)
    spend_30(api, shop, shop_id)
    assert service.points.lapse_together(stale, datetime.now(UTC)) == 2  # the index said 150; 120 were left
    assert check_invariants(service, shop_id, "m1")["available"] == 0
    entries = point_store.ledger_all(service.db, shop_id, "m1")
    assert [e.points for e in entries if e.reason == "points.expired"] == [-120]


def test_more_lots_than_one_transaction_takes_lapse_in_several(
    stack: Stack, service: Services, shop_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from loyalty.service import runs

    monkeypatch.setattr(runs, "MAX_TOGETHER", 2)  # 40 on AWS (2 actions a lot, within 100)
    for n in range(5):
        earn(stack, shop_id, f"o{n}", f"2025-0{n + 1}-10T10:00:00+08:00", "10.00")
    service.db.requests.clear()
    report = service.runs.expire_points(at("2027-01-01T00:00:01+08:00"), service.points)
    assert (report.due, report.applied) == (5, 5)
    assert service.db.requests["TransactWriteItems"] == 3  # 2 + 2 + 1: each group's entry its own key
    assert check_invariants(service, shop_id, "m1")["available"] == 0


def test_a_first_run_far_ahead_of_today_still_finds_what_is_due(stack: Stack, service: Services, shop_id: str) -> None:
    """Found by the lifecycle property: a lot already past its expiry is filed under today; a first run
    simulated a year ahead must look back from today, not from its own time."""
    earn(stack, shop_id, "old", "2024-03-01T10:00:00+08:00")  # lapsed at the end of 2025
    report = service.runs.expire_points(datetime.now(UTC) + timedelta(days=400), service.points)
    assert report.applied == 1
    assert check_invariants(service, shop_id, "m1")["available"] == 0


def test_a_shard_worker_short_of_time_queues_where_it_stopped_and_the_rest_follows(
    stack: Stack, service: Services, shop_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service.members.enrol(shop_id, Profile(member_id="m3"))
    for n in range(3):  # three members' lots: each lapses on its own (one member's would lapse together)
        earn(stack, shop_id, f"o{n}", "2025-06-01T10:00:00+08:00", "10.00", member=f"m{n + 1}")
    worker = inspect.getmodule(lambdas.handler(lambdas.functions()["ExpirePointsShardFunction"]))
    monkeypatch.setattr(worker, "MARGIN_MS", 10**9)  # every worker finds its time up after one lot
    report = run_expiry(stack, at("2027-01-01T00:00:01+08:00"))
    assert (report["due"], report["applied"]) == (3, 3)
    assert report["workers"] == report["day_shards"] + 3  # each lot's worker queued one continuation
    for n in range(3):
        assert check_invariants(service, shop_id, f"m{n + 1}")["available"] == 0


def test_the_dispatch_is_one_message_per_day_shard_and_resumes_from_today(stack: Stack, service: Services) -> None:
    first = run_expiry(stack, datetime.now(UTC))
    assert first["day_shards"] == 8 * service.shards  # a first run looks back a week, today included
    again = run_expiry(stack, datetime.now(UTC))
    assert again["day_shards"] == service.shards  # then from today


def test_points_given_back_to_two_lots_of_one_expiry_lapse_whole(
    api: Api, stack: Stack, service: Services, shop: dict[str, str], shop_id: str
) -> None:
    """Two orders of one year earn lots of one expiry; an order paying with points from both is cancelled, so the
    points come back to two lots of that expiry with one reference. The run lapses both, one entry each (their
    ledger keys once collided, and the second lot could never lapse)."""
    program = {
        "timezone": ZONE,
        "expiry": {"purchase": {"policy": "end_of_next_year"}},
        "points_offset": {"points_per_unit": 10},
        "category_multipliers": {"gift": 0},  # the spending order earns nothing, so nothing is netted on return
    }
    assert api.call("PUT", f"/v1/shops/{shop_id}/program", key=shop["api_key"], body=program)[0] == 200
    year = datetime.now(UTC).year
    earn(stack, shop_id, "a", f"{year}-01-02T10:00:00+08:00", "100.00")
    earn(stack, shop_id, "b", f"{year}-01-03T10:00:00+08:00", "100.00")
    spend = paid("c", total="150.00", paid_at=f"{year}-01-04T10:00:00+08:00")
    spend["data"]["lines"][0].update({"amount": "165.00", "category": "gift"})
    spend["data"]["points_used"] = 150  # 15.00, from both lots (100 and 50)
    send(stack, shop_id, spend)
    drain(stack)
    send(stack, shop_id, {"type": "order.cancelled", "data": {"order_id": "c"}})
    drain(stack)
    assert check_invariants(service, shop_id, "m1")["available"] == 200
    report = run_expiry(stack, datetime(year + 2, 1, 2, tzinfo=UTC))
    assert report["applied"] == 3  # order b's lot (50 left) and the two lots the 150 came back to (100 and 50)
    assert check_invariants(service, shop_id, "m1")["available"] == 0
