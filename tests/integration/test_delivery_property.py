"""At-least-once, any order: delivering a shop's order events shuffled and with duplicates ends exactly where
delivering each once, in order, ends. Each example runs on a fresh moto table (moto copies the table on every
transaction item, so a small table keeps this fast)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loyalty.domain.program import Program
from loyalty.runtime import Services
from loyalty.store import points as point_store
from tests.helpers import cancelled, check_invariants, event_model, fresh_shop, paid, refunded

MEMBERS = ["m1", "m2"]
RECENT = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


@st.composite
def order_histories(draw: st.DrawFn) -> list[dict[str, Any]]:
    """A few orders, each paid, then perhaps refunded in parts and perhaps cancelled: in business order."""
    events: list[dict[str, Any]] = []
    for n in range(draw(st.integers(min_value=1, max_value=3))):
        order_id = f"o{n}"
        amounts = draw(st.lists(st.integers(min_value=1, max_value=50_000), min_size=1, max_size=3))
        total = sum(amounts) + draw(st.integers(min_value=0, max_value=2_000))  # shipping is not earned on
        lines = [
            {
                "sku": f"s{i}",
                "category": draw(st.sampled_from(["tea", "tobacco", "featured"])),
                "amount": f"{a // 100}.{a % 100:02d}",
            }
            for i, a in enumerate(amounts)
        ]
        member = draw(st.sampled_from(MEMBERS))
        events.append(
            paid(order_id, member_id=member, total=f"{total // 100}.{total % 100:02d}", lines=lines, paid_at=RECENT)
        )
        for r in range(draw(st.integers(min_value=0, max_value=3))):
            amount = draw(st.integers(min_value=1, max_value=total))
            events.append(refunded(order_id, f"{order_id}-r{r}", f"{amount // 100}.{amount % 100:02d}"))
        if draw(st.booleans()):
            events.append(cancelled(order_id))
    return events


def outcome(service: Services, shop_id: str) -> dict[str, Any]:
    result = {}
    for member_id in MEMBERS:
        balances = check_invariants(service, shop_id, member_id)
        entries = point_store.ledger_all(service.db, shop_id, member_id)
        result[member_id] = {
            **balances,
            "ledger_points": sum(e.points for e in entries),
            "ledger_pending": sum(e.pending for e in entries),
            "entries": sorted((e.reason, e.reference, e.points, e.pending) for e in entries),
        }
    return result


def deliver(program: Program, events: list[dict[str, Any]]) -> dict[str, Any]:
    with fresh_shop(program, MEMBERS) as (service, shop_id):
        for event in events:
            service.orders.apply(shop_id, event_model(event))
        return outcome(service, shop_id)


def without_entries(result: dict[str, Any]) -> dict[str, Any]:
    return {member: {k: v for k, v in figures.items() if k != "entries"} for member, figures in result.items()}


PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
PROGRAMS = st.builds(
    lambda days, policy: Program.model_validate(
        {"pending_days": days, "clawback": policy, "category_multipliers": {"tobacco": 0, "featured": 2}}
    ),
    st.sampled_from([0, 30]),
    st.sampled_from(["stop_at_zero", "allow_negative"]),
)


@PROPERTY
@given(history=order_histories(), data=st.data(), program=PROGRAMS)
def test_shuffled_duplicated_delivery_matches_in_order_once(
    aws: None, history: list[dict[str, Any]], data: st.DataObject, program: Program
) -> None:
    """Balances and ledger sums agree. (The entries themselves may differ: a refund that overtook its
    payment is settled inside the payment's entry rather than in one of its own.)"""
    duplicates = data.draw(st.lists(st.sampled_from(history), max_size=len(history) * 2), label="duplicates")
    shuffled = data.draw(st.permutations(history + duplicates), label="delivery order")
    assert without_entries(deliver(program, shuffled)) == without_entries(deliver(program, history))


@PROPERTY
@given(history=order_histories(), data=st.data(), program=PROGRAMS)
def test_replays_add_no_ledger_entry(
    aws: None, history: list[dict[str, Any]], data: st.DataObject, program: Program
) -> None:
    """Redelivering events already applied changes nothing at all, not even a zero-point entry."""
    replays = data.draw(st.lists(st.sampled_from(history), min_size=1, max_size=len(history) * 2), label="replays")
    assert deliver(program, history + replays) == deliver(program, history)


@st.composite
def histories_paying_with_points(draw: st.DrawFn) -> list[dict[str, Any]]:
    """m1 pays part of an order with points (10 points a yuan), then perhaps refunds in parts and cancels."""
    amounts = draw(st.lists(st.integers(min_value=100, max_value=50_000), min_size=1, max_size=3))
    goods = sum(amounts)
    points = draw(st.integers(min_value=1, max_value=min(500, goods // 10)))  # worth at most the goods
    paid_total = goods - points * 10
    lines = [{"sku": f"s{i}", "category": "tea", "amount": f"{a // 100}.{a % 100:02d}"} for i, a in enumerate(amounts)]
    payment = paid("o1", total=f"{paid_total // 100}.{paid_total % 100:02d}", lines=lines, paid_at=RECENT)
    payment["data"]["points_used"] = points
    events = [payment]
    for r in range(draw(st.integers(min_value=0, max_value=3))):
        amount = draw(st.integers(min_value=1, max_value=max(paid_total, 1)))
        events.append(refunded("o1", f"r{r}", f"{amount // 100}.{amount % 100:02d}"))
    if draw(st.booleans()):
        events.append(cancelled("o1"))
    return events


POINTS_PROGRAMS = st.builds(
    lambda days, returns: Program.model_validate(
        {"pending_days": days, "points_offset": {"points_per_unit": 10}, "refund_returns": {"points": returns}}
    ),
    st.sampled_from([0, 30]),
    st.sampled_from(["proportional", "never"]),
)


@PROPERTY
@given(history=histories_paying_with_points(), data=st.data(), program=POINTS_PROGRAMS)
def test_points_used_as_payment_come_back_the_same_in_any_order(
    aws: None, history: list[dict[str, Any]], data: st.DataObject, program: Program
) -> None:
    """Points spent by a payment and given back by its refunds and cancellation end at the same balance however
    the events arrive, and the ledger and lots agree with it at the end (check_invariants)."""
    seed = paid("seed", total="500.00", paid_at=RECENT)  # 500 points, available at once with pending_days 0
    seed["data"]["paid_at"] = "2026-01-01T00:00:00Z"  # earned long ago, so available in any program
    duplicates = data.draw(st.lists(st.sampled_from(history), max_size=len(history)), label="duplicates")
    shuffled = data.draw(st.permutations(history + duplicates), label="delivery order")
    assert without_entries(deliver(program, [seed, *shuffled])) == without_entries(deliver(program, [seed, *history]))
