"""The points mall (积分商城): a shop lists items; a member exchanges points (and cash, collected by the shop) for
them. Each exchange is one transaction: its idempotency record, units from stock shards, the member's count
for the item, the points spent oldest-expiring first, the exchange, and for a coupon item the coupon itself.
Goods exchanges then move through the shop's fulfilment; a cancellation gives the points back to lots like those
they came from, and the units back to the stock, in one transaction too. Rules in domain/mall.py."""

import random
import secrets
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger

from loyalty.domain import points as account
from loyalty.domain.errors import Conflict, InvalidInput, NotFound, Retryable
from loyalty.domain.ledger import iso
from loyalty.domain.mall import CANCELLED, MAX_QUANTITY, Exchange, Item, ItemRequest, first_status, may_move
from loyalty.domain.money import format_amount, parse_amount
from loyalty.service.cache import TTLCache
from loyalty.service.coupons import Coupons
from loyalty.service.idempotency import fingerprint, replay
from loyalty.service.members import Members
from loyalty.service.shops import Shops
from loyalty.store import idempotency as idempotency_store
from loyalty.store import mall as mall_store
from loyalty.store import points as point_store
from loyalty.store.dynamo import Dynamo, TransactionCancelled
from loyalty.store.events import Events
from loyalty.store.keys import digest

logger = Logger(child=True)
MAX_ATTEMPTS = 8
# Stock shards per item: as many as units, up to 16. Small stocks are the flash ones: every unit its own item, so
# a rush contends per unit, not on one counter. An exchange may take its units from several shards.
MAX_STOCK_SHARDS = 16


class Mall:
    def __init__(
        self,
        db: Dynamo,
        shops: Shops,
        members: Members,
        coupons: Coupons,
        events: Events,
        *,
        clock: Callable[[], datetime],
        shards: int,
        cache_seconds: float,
    ) -> None:
        self.db = db
        self.shops = shops
        self.members = members
        self.coupons = coupons
        self.events = events
        self.clock = clock
        self.shards = shards
        self._items: TTLCache[tuple[Item, int] | None] = TTLCache(cache_seconds)

    # ------------------------------------------------------------------ the catalogue

    def create_item(self, shop_id: str, request: ItemRequest) -> dict[str, Any]:
        currency = self.shops.program(shop_id).currency
        if request.template_id is not None:
            self.coupons.template(shop_id, request.template_id)  # 404 naming template_id if it is not the shop's
        item = Item(
            item_id="itm_" + secrets.token_hex(8),
            kind=request.kind,
            name=request.name,
            points=request.points,
            stock=request.stock,
            per_member_limit=request.per_member_limit,
            template_id=request.template_id,
            sku=request.sku,
            image_url=request.image_url,
            ships=request.ships,
            cash=parse_amount(request.cash, currency) if request.cash else 0,
            starts=request.from_,
            until=request.until,
            tiers=request.tiers,
            visible=request.visible,
            created_at=self.clock(),
        )
        shards = min(MAX_STOCK_SHARDS, max(1, request.stock))
        mall_store.create_item(self.db, shop_id, item, shards)
        return self._view(item, request.stock, currency)

    def item(self, shop_id: str, item_id: str) -> tuple[Item, int]:
        found = self._items.get(f"{shop_id}|{item_id}", lambda: mall_store.get_item(self.db, shop_id, item_id))
        if found is None:
            raise NotFound(f"item {item_id} not found", field="item_id")
        return found

    def item_view(self, shop_id: str, item_id: str) -> dict[str, Any]:
        item, shards = self.item(shop_id, item_id)
        stock = mall_store.stock(self.db, shop_id, item_id, shards)
        view = self._view(item, sum(int(s["left"]) for s in stock.values()), self.shops.program(shop_id).currency)
        view["report"] = {
            "exchanged": sum(int(s["exchanged"]) for s in stock.values()),
            "cancelled": sum(int(s["cancelled"]) for s in stock.values()),
            "points": sum(int(s["points"]) for s in stock.values()),
        }
        return view

    def items(self, shop_id: str, *, member_id: str | None, limit: int, cursor: str | None) -> dict[str, Any]:
        """A page of the catalogue. For a member: only what they may exchange now (their tier, the item's window,
        stock left), so a page may hold fewer than `limit`; follow `next` to the end."""
        currency = self.shops.program(shop_id).currency
        tier = None
        if member_id is not None:
            tier = self._tier(shop_id, member_id)
        page, next_cursor = mall_store.items_page(self.db, shop_id, limit=limit, cursor=cursor)
        now = self.clock()
        if member_id is not None:
            page = [(item, shards) for item, shards in page if not item.why_not(tier, now)]
        left = mall_store.units_left(self.db, shop_id, page) if page else {}
        views = [
            self._view(item, left[item.item_id], currency)
            for item, _ in page
            if member_id is None or left[item.item_id] > 0
        ]
        return {"items": views, "next": next_cursor}

    # ------------------------------------------------------------------ exchanges

    def exchange(
        self, shop_id: str, member_id: str, item_id: str, quantity: int, *, key: str
    ) -> tuple[bool, dict[str, Any]]:
        """Exchange points for `quantity` units of an item: (created, answer). The same key answers as its first
        success did."""
        if not 1 <= quantity <= MAX_QUANTITY:
            raise InvalidInput(f"must be 1 to {MAX_QUANTITY}", field="quantity")
        request = fingerprint({"member_id": member_id, "item_id": item_id, "quantity": quantity})
        exchange_id = "exc_" + digest(f"{shop_id}|{member_id}|{key}")[:20]
        for _ in range(MAX_ATTEMPTS):
            item, shards = self.item(shop_id, item_id)
            state = mall_store.exchange_state(self.db, shop_id, member_id, item_id, shards, key)
            if state.replay is not None:
                return False, replay(state.replay, request)
            if item.kind == "coupon" and quantity != 1:
                raise InvalidInput("coupon items are exchanged one at a time", field="quantity")
            member = state.member
            if member is None:
                raise NotFound(f"member {member_id} not found", field="member_id")
            program = self.shops.program(shop_id)
            now = self.clock()
            tier = program.tier_of(member.tier.tier)
            why = item.why_not(tier.name if tier else None, now)
            if why:
                raise Conflict(why, field="item_id", code="not_eligible")
            takes = units_from(state.stock, quantity)
            if takes is None:
                raise Conflict("this item is out of stock", field="item_id", code="out_of_stock")
            points = item.points * quantity
            lots = point_store.lots(self.db, shop_id, member_id)
            move = account.spend(
                member.balance,
                lots,
                points,
                reason="mall.exchange",
                reference=exchange_id,
                at=now,
                detail={"item_id": item_id, "quantity": quantity},
                field="item_id",
            )
            coupon = None
            if item.template_id is not None:
                coupon = self.coupons.coupon_for(shop_id, item.template_id, member_id, now)
                if coupon is None:
                    raise Conflict("this item's coupon cannot be given now", field="item_id", code="out_of_stock")
            status = first_status(item)
            exchange = Exchange(
                exchange_id=exchange_id,
                item_id=item_id,
                kind=item.kind,
                member_id=member_id,
                quantity=quantity,
                points=points,
                cash=item.cash * quantity,
                status=status,
                coupon={"code": coupon.coupon.code, "expires_at": iso(coupon.coupon.expires_at)} if coupon else None,
                history=[{"status": status, "at": iso(now)}],
                at=now,
            )
            answer = self._exchange_view(exchange, program.currency)
            tx = self.db.transaction()
            idempotency_store.add_record(
                tx, shop_id, member_id, "exchange", key, request=request, response=answer, now=now
            )
            actions = mall_store.add_exchange(
                tx, shop_id, exchange, takes=takes, limit=item.per_member_limit, draws=move.draws, shards=self.shards
            )
            point_store.add_move(tx, shop_id, member_id, move, guard=member.balance, now=now, shards=self.shards)
            claim = self.coupons.add_claim(tx, shop_id, coupon, now) if coupon is not None else None
            try:
                self.db.commit(tx)
            except TransactionCancelled as exc:
                if exc.failed(actions.limit):
                    raise Conflict(
                        f"member {member_id} has exchanged this item {item.per_member_limit} time(s), the limit",
                        field="item_id",
                        code="limit_reached",
                    ) from exc
                if claim is not None and exc.failed(claim.limit):
                    raise Conflict(
                        "the member has their limit of this coupon", field="item_id", code="limit_reached"
                    ) from exc
                continue  # a shard emptied, the balance moved, a replay landed, a code collided: read again
            self._publish(shop_id, answer)
            return True, answer
        raise Retryable("too much contention on this item or member; try again")

    def exchanges(self, shop_id: str, member_id: str, *, limit: int, cursor: str | None) -> dict[str, Any]:
        self.members.member(shop_id, member_id)
        currency = self.shops.program(shop_id).currency
        page, next_cursor = mall_store.member_exchanges(self.db, shop_id, member_id, limit=limit, cursor=cursor)
        return {"items": [self._exchange_view(e, currency) for e in page], "next": next_cursor}

    def exchange_view(self, shop_id: str, exchange_id: str) -> dict[str, Any]:
        found = mall_store.get_exchange(self.db, shop_id, exchange_id)
        if found is None:
            raise NotFound(f"exchange {exchange_id} not found", field="exchange_id")
        return self._exchange_view(found[0], self.shops.program(shop_id).currency)

    def move(self, shop_id: str, exchange_id: str, to: str) -> dict[str, Any]:
        """The shop moves a goods exchange on: (awaiting_payment →) pending → shipped → delivered, or cancelled (its
        points back to lots like those they came from, its units back to the stock). Moving it to the status it has
        answers as it is."""
        currency = self.shops.program(shop_id).currency
        for _ in range(MAX_ATTEMPTS):
            found = mall_store.get_exchange(self.db, shop_id, exchange_id)
            if found is None:
                raise NotFound(f"exchange {exchange_id} not found", field="exchange_id")
            exchange, takes, draws = found
            why = may_move(exchange, to)
            if why:
                raise Conflict(why, field="status", code="invalid_transition")
            if to == exchange.status:
                return self._exchange_view(exchange, currency)
            now = self.clock()
            tx = self.db.transaction()
            mall_store.add_status(tx, shop_id, exchange, to, now, takes=takes, shards=self.shards)
            if to == CANCELLED:
                member = self.members.member(shop_id, exchange.member_id)
                back = account.give_back(
                    member.balance,
                    draws,
                    reason="mall.cancelled",
                    reference=exchange_id,
                    at=now,
                    detail={"item_id": exchange.item_id, "quantity": exchange.quantity},
                )
                point_store.add_move(
                    tx, shop_id, exchange.member_id, back, guard=member.balance, now=now, shards=self.shards
                )
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                continue  # moved meanwhile, or the member's debt did: read again
            history = [*exchange.history, {"status": to, "at": iso(now)}]
            answer = self._exchange_view(exchange.model_copy(update={"status": to, "history": history}), currency)
            self._publish(shop_id, answer)
            return answer
        raise Retryable("too much contention on this exchange; try again")

    # ------------------------------------------------------------------ views

    def _tier(self, shop_id: str, member_id: str) -> str | None:
        tier = self.shops.program(shop_id).tier_of(self.members.member(shop_id, member_id).tier.tier)
        return tier.name if tier else None

    def _publish(self, shop_id: str, answer: dict[str, Any]) -> None:
        """Publish the exchange's step, then take it out of the outbox (where its transaction listed it). If
        EventBridge refuses, the step stays in the outbox and the nightly run publishes it (review-tiers' last
        step): the exchange is made either way, so the caller is answered as it is."""
        try:
            self.events.publish("mall.exchange.changed", {"shop_id": shop_id, **answer})
        except Retryable:
            logger.warning("mall.exchange.changed left in the outbox", extra={"shop_id": shop_id})
            return
        mall_store.mark_published(self.db, shop_id, answer)

    def publish_pending(self, pk: str, sk: str) -> bool:
        """Publish an exchange's step still in the outbox; False if it was published since it was listed."""
        found = mall_store.unpublished_exchange(self.db, pk, sk)
        if found is None:
            return False
        shop_id, exchange = found
        self._publish(shop_id, self._exchange_view(exchange, self.shops.program(shop_id).currency))
        return True

    @staticmethod
    def _view(item: Item, left: int, currency: str) -> dict[str, Any]:
        view: dict[str, Any] = {
            "item_id": item.item_id,
            "kind": item.kind,
            "name": item.name,
            "points": item.points,
            "stock": item.stock,
            "stock_left": left,
            "per_member_limit": item.per_member_limit,
            "template_id": item.template_id,
            "sku": item.sku,
            "image_url": item.image_url,
            "ships": item.ships,
            "cash": format_amount(item.cash, currency) if item.cash else None,
            "from": iso(item.starts) if item.starts else None,
            "until": iso(item.until) if item.until else None,
            "tiers": item.tiers,
            "visible": item.visible,
        }
        return {k: v for k, v in view.items() if v is not None}

    @staticmethod
    def _exchange_view(exchange: Exchange, currency: str) -> dict[str, Any]:
        view: dict[str, Any] = {
            "exchange_id": exchange.exchange_id,
            "item_id": exchange.item_id,
            "member_id": exchange.member_id,
            "quantity": exchange.quantity,
            "points": exchange.points,
            "status": exchange.status,
            "history": exchange.history,
            "at": iso(exchange.at),
        }
        if exchange.cash:
            view["cash"] = format_amount(exchange.cash, currency)
        if exchange.coupon:
            view["coupon"] = exchange.coupon
        return view


def units_from(stock: dict[int, Any], quantity: int) -> dict[int, int] | None:
    """Which shards `quantity` units come from (shard -> units): shards with units left, in random order, so
    concurrent exchanges spread over them; None if all of them together hold fewer."""
    open_shards = [(n, int(s["left"])) for n, s in stock.items() if int(s["left"]) > 0]
    random.shuffle(open_shards)
    takes: dict[int, int] = {}
    for shard, left in open_shards:
        take = min(left, quantity - sum(takes.values()))
        if take:
            takes[shard] = take
    return takes if sum(takes.values()) == quantity else None
