"""The activate-pending run: EventBridge's `time` is "now"; due work comes from the sparse index, not a Scan."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.runtime import Services
from tests.conftest import Api
from tests.helpers import check_invariants, drain, paid, refunded, send

NOW = datetime.now(UTC).replace(microsecond=0)


def run(time: datetime) -> dict[str, Any]:
    function = lambdas.functions()["ActivatePendingFunction"]
    return dict(lambdas.invoke(function, lambdas.schedule_event(time.strftime("%Y-%m-%dT%H:%M:%SZ"))))


@pytest.fixture
def pending(api: Api, stack: Stack, shop: dict[str, str]) -> str:
    """Five members, each with one order inside a 7-day return window, paid a minute apart."""
    sid = shop["shop_id"]
    api.call("PUT", f"/v1/shops/{sid}/program", key=shop["api_key"], body={"pending_days": 7})
    for n in range(5):
        api.call("POST", f"/v1/shops/{sid}/members", key=shop["api_key"], body={"member_id": f"m{n}"})
        send(stack, sid, paid(f"o{n}", member_id=f"m{n}", paid_at=(NOW + timedelta(minutes=n)).isoformat()))
    drain(stack)
    return sid


def test_nothing_activates_before_the_window_closes(service: Services, pending: str) -> None:
    report = run(NOW + timedelta(days=6))
    assert (report["due"], report["applied"]) == (0, 0)
    assert service.members.member(pending, "m0").balance.pending == 100


def test_due_points_activate_once_and_a_rerun_changes_nothing(service: Services, pending: str) -> None:
    at = NOW + timedelta(days=7, minutes=2)  # m0, m1, m2 are due; m3, m4 not yet
    report = run(at)
    assert (report["due"], report["applied"], report["complete"]) == (3, 3, True)
    assert [service.members.member(pending, f"m{n}").balance.available for n in range(5)] == [100, 100, 100, 0, 0]
    assert run(at)["applied"] == 0
    report = run(NOW + timedelta(days=8))
    assert (report["due"], report["applied"]) == (2, 2)
    for n in range(5):
        assert check_invariants(service, pending, f"m{n}") == {"available": 100, "pending": 0, "debt": 0}


def test_a_run_stopped_half_way_is_finished_by_the_next(service: Services, pending: str) -> None:
    calls = iter(range(100))
    report = service.runs.activate_pending(
        NOW + timedelta(days=8), service.orders, should_stop=lambda: next(calls) >= 1
    )
    assert report.complete is False
    assert report.applied == 2
    report = service.runs.activate_pending(NOW + timedelta(days=8), service.orders)
    assert (report.applied, report.complete) == (3, True)
    assert sum(service.members.member(pending, f"m{n}").balance.available for n in range(5)) == 500


def test_refund_during_the_window_then_activation(service: Services, stack: Stack, pending: str) -> None:
    send(stack, pending, refunded("o0", "r1", "30.00"))
    drain(stack)
    run(NOW + timedelta(days=8))
    assert check_invariants(service, pending, "m0") == {"available": 70, "pending": 0, "debt": 0}


def test_a_run_reads_only_what_is_due(service: Services, pending: str) -> None:
    service.db.requests.clear()
    report = service.runs.activate_pending(NOW + timedelta(days=7, minutes=2), service.orders)
    # 8 days (7 days back + today) x 8 shards of index queries, then 2 reads and 1 write per due order.
    assert report.applied == 3
    assert service.db.requests["TransactWriteItems"] == 3
    assert service.db.requests["GetItem"] == 1 + 3 * 2
    assert "Scan" not in service.db.requests


def test_bad_schedule_event_is_refused(stack: Stack) -> None:
    function = lambdas.functions()["ActivatePendingFunction"]
    with pytest.raises(Exception, match="time"):
        lambdas.invoke(function, {"detail-type": "Scheduled Event"})
