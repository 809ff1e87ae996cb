"""Any interleaving of payments, refunds, cancellations, redemptions and expiry runs keeps the books straight:
after every step, available = sum of the ledger = sum of the lots - debt, nothing is negative that may not be,
and a replay of any step changes nothing."""

import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.domain.errors import InsufficientPoints
from loyalty.domain.program import Program
from loyalty.runtime import Services
from tests.helpers import cancelled, check_invariants, event_model, fresh_shop, paid, refunded

BASE = datetime(2025, 1, 1, tzinfo=UTC)


def steps() -> st.SearchStrategy[list[tuple[Any, ...]]]:
    order = st.integers(min_value=0, max_value=3)
    step = st.one_of(
        st.tuples(st.just("paid"), order, st.integers(min_value=1, max_value=500), st.integers(0, 600)),
        st.tuples(st.just("refund"), order, st.integers(min_value=1, max_value=500), st.integers(0, 2)),
        st.tuples(st.just("cancel"), order),
        st.tuples(st.just("redeem"), st.integers(min_value=1, max_value=400), st.integers(0, 9)),
        st.tuples(st.just("expire")),
    )
    return st.lists(step, min_size=1, max_size=14)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    history=steps(), clawback=st.sampled_from(["stop_at_zero", "allow_negative"]), pending_days=st.sampled_from([0, 10])
)
def test_any_interleaving_keeps_the_books(
    aws: None, history: list[tuple[Any, ...]], clawback: str, pending_days: int
) -> None:
    program = Program.model_validate(
        {"clawback": clawback, "pending_days": pending_days, "expiry": {"purchase": {"policy": "days", "days": 300}}}
    )
    with fresh_shop(program, ["m1"]) as (service, shop):
        for step in history:
            apply(service, shop, step)
            after = check_invariants(service, shop, "m1")
            apply(service, shop, step)  # the same step again: a replay changes nothing
            assert check_invariants(service, shop, "m1") == after
        # the end of it all: every lot past its expiry lapses, and the books still balance
        service.runs.activate_pending(datetime.now(UTC) + timedelta(days=20), service.orders)
        service.runs.expire_points(datetime.now(UTC) + timedelta(days=400), service.points)
        final = check_invariants(service, shop, "m1")
        assert final["available"] <= 0 and final["pending"] == 0


def apply(service: Services, shop: str, step: tuple[Any, ...]) -> None:
    kind = step[0]
    if kind == "paid":
        _, n, amount, day = step
        paid_at = (BASE + timedelta(days=day)).isoformat()
        service.orders.apply(shop, event_model(paid(f"o{n}", total=f"{amount}.00", paid_at=paid_at)))
    elif kind == "refund":
        _, n, amount, r = step
        service.orders.apply(shop, event_model(refunded(f"o{n}", f"o{n}-r{r}", f"{amount}.00")))
    elif kind == "cancel":
        service.orders.apply(shop, event_model(cancelled(f"o{step[1]}")))
    elif kind == "redeem":
        _, points, key = step
        with contextlib.suppress(InsufficientPoints):  # a short balance is an answer, not a failure
            service.points.redeem(shop, "m1", key=f"k{key}-{points}", points=points, reason="property")
    else:
        service.runs.expire_points(datetime.now(UTC) + timedelta(seconds=1), service.points)
