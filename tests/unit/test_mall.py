"""The mall's pure rules: who may exchange what, what an exchange may become, and that a cancellation gives back
exactly what the exchange spent, to lots that expire as the spent ones would have."""

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from loyalty.domain import points as account
from loyalty.domain.ledger import Balance, Lot
from loyalty.domain.mall import Exchange, Item, may_move

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def lots_from(sizes: list[tuple[int, int]]) -> list[Lot]:
    """Lots of (remaining, expiry day offset), oldest-expiring first as the store returns them."""
    lots = []
    for n, (remaining, days) in enumerate(sizes):
        expires = T0 + timedelta(days=days)
        earned = T0 - timedelta(days=n + 1)
        lots.append(
            Lot(
                lot_id=Lot.make_id(expires, earned, "purchase", f"o{n}"),
                remaining=remaining,
                granted=remaining,
                expires_at=expires,
                earned_at=earned,
                source="purchase",
                reference=f"o{n}",
            )
        )
    return sorted(lots, key=lambda lot: lot.lot_id)


@given(
    st.lists(st.tuples(st.integers(1, 500), st.integers(1, 800)), min_size=1, max_size=8),
    st.data(),
)
def test_a_cancellation_gives_back_exactly_what_was_spent_with_the_same_expiries(
    sizes: list[tuple[int, int]], data: st.DataObject
) -> None:
    lots = lots_from(sizes)
    total = sum(lot.remaining for lot in lots)
    points = data.draw(st.integers(1, total))
    spent = account.spend(Balance(available=total), lots, points, reason="mall.exchange", reference="x", at=T0)
    back = account.give_back(
        Balance(available=total - points), spent.draws, reason="mall.cancelled", reference="x", at=T0
    )
    assert back.available == points == -spent.available
    assert sum(e.points for e in spent.entries + back.entries) == 0
    assert sum(lot.remaining for lot in back.returned) == points
    taken = Counter[str]()
    for d in spent.draws:
        taken[d.lot_id.split("#", 1)[0]] += d.take
    given = Counter[str]()
    for lot in back.returned:
        given[lot.lot_id.split("#", 1)[0]] += lot.remaining
    assert given == taken  # per expiry instant


def test_points_given_back_repay_a_debt_first() -> None:
    lots = lots_from([(100, 30)])
    spent = account.spend(Balance(available=100), lots, 60, reason="r", reference="x", at=T0)
    back = account.give_back(Balance(available=-10, debt=10), spent.draws, reason="r", reference="x", at=T0)
    assert (back.available, back.debt, sum(lot.remaining for lot in back.returned)) == (60, -10, 50)


def test_who_may_exchange_what() -> None:
    item = Item(
        item_id="itm_1",
        kind="goods",
        name="Gift",
        points=10,
        stock=1,
        starts=T0,
        until=T0 + timedelta(days=7),
        tiers=["gold"],
        created_at=T0,
    )
    assert item.why_not("gold", T0 + timedelta(days=1)) is None
    assert item.why_not("silver", T0 + timedelta(days=1)) == "this item is for other tiers"
    assert item.why_not("gold", T0 - timedelta(seconds=1)) == "this item is not offered yet"
    assert item.why_not("gold", T0 + timedelta(days=7)) == "this item is no longer offered"
    assert item.model_copy(update={"visible": False}).why_not("gold", T0) == "this item is not offered"


def test_what_an_exchange_may_become() -> None:
    goods = Exchange(
        exchange_id="e", item_id="i", kind="goods", member_id="m", quantity=1, points=1, status="pending", at=T0
    )
    assert may_move(goods, "shipped") is None and may_move(goods, "cancelled") is None
    assert may_move(goods, "delivered") is not None  # not before it is shipped
    shipped = goods.model_copy(update={"status": "shipped"})
    assert may_move(shipped, "delivered") is None and may_move(shipped, "pending") is not None
    delivered = goods.model_copy(update={"status": "delivered"})
    assert may_move(delivered, "cancelled") is not None and may_move(delivered, "delivered") is None
    coupon = goods.model_copy(update={"kind": "coupon", "status": "issued"})
    assert may_move(coupon, "cancelled") is not None


@given(st.lists(st.integers(0, 5), min_size=1, max_size=16), st.integers(1, 30))
def test_an_exchanges_units_come_from_shards_that_hold_them(lefts: list[int], quantity: int) -> None:
    from loyalty.service.mall import units_from

    takes = units_from({n: {"left": left} for n, left in enumerate(lefts)}, quantity)
    if sum(lefts) < quantity:
        assert takes is None
    else:
        assert takes is not None and sum(takes.values()) == quantity
        assert all(0 < take <= lefts[shard] for shard, take in takes.items())
