"""Orders and the one transaction that settles an order event."""

from collections.abc import Callable
from datetime import datetime

from loyalty.domain.ledger import Balance
from loyalty.domain.orders import OrderState
from loyalty.domain.settle import Settlement
from loyalty.store import coupons, engagement, members, points, wallet
from loyalty.store.dynamo import Dynamo, Item, Transaction, model_of
from loyalty.store.keys import ACTIVATE_JOB, ORDER_SK, due_keys, order_pk


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
    referral_due: datetime | None = None,
    also: Callable[[Transaction], object] | None = None,
) -> None:
    """Write the whole effect of one event in one TransactWriteItems.

    The order item is the event's idempotency record: it is created only if absent (`previous` None) or
    replaced only at the version it was read at, and it records the payment, each refund id and the
    cancellation. A replay or a concurrent duplicate therefore fails the condition and changes nothing.
    `guard` is the member balance the settlement was computed from (None: computed assuming a fresh balance,
    which the member's condition then requires: the one-write fast path of a payment). `referral_due`: this is a
    referred member's first paid order; its referral is due then (and the member's first order is marked, once).
    `also` adds the caller's own record to the transaction (an API request's idempotency key).
    """
    tx = db.transaction()
    _put_order(tx, shop_id, settlement, previous, now, shards)
    order = settlement.order
    if settlement.move is not None and order.member_id is not None:
        tier = None
        if settlement.qualifying or settlement.tier_change or settlement.tier_rev is not None:
            tier = members.TierUpdate(
                day=settlement.qualifying_day,
                delta=settlement.qualifying,
                change=settlement.tier_change,
                expect_rev=settlement.tier_rev,
                shards=shards,
            )
        points.add_move(
            tx,
            shop_id,
            order.member_id,
            settlement.move,
            guard=guard or Balance(),
            now=now,
            shards=shards,
            remind_days=remind_days,
            tier=tier,
            first_order=order.order_id if referral_due is not None else None,
        )
        if referral_due is not None:
            engagement.add_referral_due(
                tx, shop_id, order.member_id, order.order_id, referral_due, now=now, shards=shards
            )
        if settlement.tier_change:
            members.add_tier_decision(tx, shop_id, order.member_id, settlement.tier_change, shards, now=now)
        if settlement.wallet is not None:
            wallet.add_move(
                tx, shop_id, order.member_id, settlement.wallet, now=now, shards=shards, remind_days=remind_days
            )
        if settlement.savings and settlement.savings_month:
            wallet.add_savings(tx, shop_id, order.member_id, settlement.savings_month, settlement.savings)
        for code in settlement.coupons_used:
            coupons.add_use(tx, shop_id, order.member_id, code, order.order_id, now)
        for code, expires in settlement.coupons_returned.items():
            coupons.add_return(tx, shop_id, order.member_id, code, order.order_id, expires, now=now, shards=shards)
    if also is not None:
        also(tx)
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


def add_lapsed(tx: Transaction, shop_id: str, order_id: str, points: int) -> None:
    """Count points of the order that expired unspent, so a later refund does not take them a second time."""
    tx.update(
        {"PK": order_pk(shop_id, order_id), "SK": ORDER_SK},
        "ADD expired :lapsed",
        values={":lapsed": points},
        condition="attribute_exists(PK)",
    )
