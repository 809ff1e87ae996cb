"""Orders and the one transaction that settles an order event."""

from datetime import datetime

from loyalty.domain.ledger import Balance
from loyalty.domain.orders import OrderState
from loyalty.domain.settle import Settlement
from loyalty.store import coupons, members
from loyalty.store.dynamo import Dynamo, Item, Transaction, model_of
from loyalty.store.keys import ACTIVATE_JOB, ORDER_SK, due_keys, order_pk

# Positions of the first two actions of a settlement transaction, for reading cancellation reasons.
ORDER_ACTION = 0
MEMBER_ACTION = 1


def get_order(db: Dynamo, shop_id: str, order_id: str) -> OrderState | None:
    item = db.get(order_pk(shop_id, order_id), ORDER_SK)
    return to_state(item) if item else None


def to_state(item: Item) -> OrderState:
    return model_of(OrderState, item)


def commit_settlement(
    db: Dynamo,
    shop_id: str,
    settlement: Settlement,
    *,
    previous: OrderState | None,
    guard: Balance | None,
    now: datetime,
    shards: int,
    remind_days: int = 0,
) -> None:
    """Write the whole effect of one event in one TransactWriteItems.

    The order item is the event's idempotency record: it is created only if absent (`previous` None) or
    replaced only at the version it was read at, and it records the payment, each refund id and the
    cancellation. A replay or a concurrent duplicate therefore fails the condition and changes nothing.
    `guard` is the member balance the settlement was computed from (None: computed assuming a fresh balance,
    which the member's condition then requires: the one-write fast path of a payment).
    """
    tx = db.transaction()
    _put_order(tx, shop_id, settlement, previous, now, shards)
    order = settlement.order
    if settlement.touches_member and order.member_id is not None:
        assert settlement.entry is not None
        read = guard or Balance()
        tier = None
        if settlement.qualifying or settlement.tier_change or settlement.tier_rev is not None:
            tier = members.TierUpdate(
                day=settlement.qualifying_day,
                delta=settlement.qualifying,
                change=settlement.tier_change,
                expect_rev=settlement.tier_rev,
                shards=shards,
            )
        members.add_balance_change(
            tx,
            shop_id,
            order.member_id,
            available=settlement.available,
            pending=settlement.pending,
            debt=settlement.debt,
            now=now,
            expect_available=read.available if settlement.reads == "all" else None,
            expect_debt=read.debt if settlement.reads in ("all", "debt") else None,
            tier=tier,
        )
        if settlement.tier_change:
            members.add_tier_decision(tx, shop_id, order.member_id, settlement.tier_change, shards, now=now)
        if settlement.new_lot:
            members.add_lot(
                tx, shop_id, order.member_id, settlement.new_lot, now=now, shards=shards, remind_days=remind_days
            )
        members.add_draws(tx, shop_id, order.member_id, settlement.draws)
        for lot in settlement.returned_lots:
            members.add_returned_lot(tx, shop_id, order.member_id, lot, now=now, shards=shards)
        members.add_entry(tx, shop_id, order.member_id, settlement.entry)
        for entry in settlement.more_entries:
            members.add_entry(tx, shop_id, order.member_id, entry)
        for code in settlement.coupons_used:
            coupons.add_use(tx, shop_id, order.member_id, code, order.order_id, now)
        for code, expires in settlement.coupons_returned.items():
            coupons.add_return(tx, shop_id, order.member_id, code, order.order_id, expires, now=now, shards=shards)
    db.commit(tx)


def _put_order(
    tx: Transaction, shop_id: str, settlement: Settlement, previous: OrderState | None, now: datetime, shards: int
) -> None:
    pk = order_pk(shop_id, settlement.order.order_id)
    item: Item = {
        "PK": pk,
        "SK": ORDER_SK,
        "type": "order",
        "shop_id": shop_id,
        **settlement.order.model_dump(mode="json"),
        "updated_at": now.isoformat(),
    }
    due = settlement.due_at
    if due is not None:
        item["DuePK"], item["DueSK"] = due_keys(ACTIVATE_JOB, due, pk, shards, now=now)
    if previous is None:
        tx.put(item, condition="attribute_not_exists(PK)")
    else:
        tx.put(item, condition="version = :v", values={":v": previous.version})
