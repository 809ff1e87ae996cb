"""The loyalty service: every use case the handlers call. One instance per Lambda container."""

import base64
import binascii
import hmac
import json
import os
import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from loyalty.domain import points as points_account
from loyalty.domain.coupons import Coupon, Template, normalise_code
from loyalty.domain.errors import InvalidInput, NotFound, Retryable
from loyalty.domain.expiry import expiring_soon
from loyalty.domain.integrations import Integration
from loyalty.domain.ledger import Balance, LedgerEntry, iso
from loyalty.domain.members import Member, Profile
from loyalty.domain.orders import OrderEvent, OrderPaid, OrderState
from loyalty.domain.program import Program
from loyalty.domain.settle import is_duplicate, settle
from loyalty.domain.tiers import MemberTier
from loyalty.service.cache import TTLCache
from loyalty.service.coupons import CouponService
from loyalty.service.idempotency import fingerprint, replay
from loyalty.service.platforms import PlatformService
from loyalty.service.runs import ScheduledRuns
from loyalty.store import idempotency as idempotency_store
from loyalty.store import members as member_store
from loyalty.store import orders as order_store
from loyalty.store import points as point_store
from loyalty.store import shops as shop_store
from loyalty.store.dynamo import Dynamo, Item, TransactionCancelled
from loyalty.store.events import Events
from loyalty.store.keys import digest, member_pk
from loyalty.store.shops import ShopRecord

# Attempts at an optimistic write before giving the event back to the queue (or a 503 to the caller).
MAX_ATTEMPTS = 8


SHOP_ID = re.compile(r"shp_[0-9a-f]{16}")  # what create_shop makes


def now_utc() -> datetime:
    return datetime.now(UTC)


class Loyalty(ScheduledRuns, CouponService, PlatformService):
    def __init__(
        self,
        db: Dynamo | None = None,
        *,
        shards: int | None = None,
        cache_seconds: float | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.db = db or Dynamo()
        self.events = Events()
        self.shards = shards or int(os.environ.get("DUE_SHARDS", "8"))
        seconds = cache_seconds if cache_seconds is not None else float(os.environ.get("CONFIG_CACHE_SECONDS", "60"))
        self._shops: TTLCache[ShopRecord | None] = TTLCache(seconds)
        self._programs: TTLCache[Program | None] = TTLCache(seconds)
        self._integrations: TTLCache[Integration | None] = TTLCache(seconds)
        self._templates: TTLCache[tuple[Template, int] | None] = TTLCache(max(seconds, 3600))
        self.clock = clock

    # ------------------------------------------------------------------ shops and credentials

    def create_shop(self, name: str, currency: str | None = None) -> dict[str, str]:
        shop_id = "shp_" + secrets.token_hex(8)
        api_key = f"{shop_id}.{secrets.token_urlsafe(32)}"
        webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        program = Program(currency=currency) if currency else Program()
        record = ShopRecord(shop_id, name, digest(api_key), webhook_secret)
        shop_store.create_shop(self.db, record, program, self.clock())
        return {"shop_id": shop_id, "api_key": api_key, "webhook_secret": webhook_secret}

    def shop(self, shop_id: str) -> ShopRecord | None:
        """The shop, or None. Ids not of our shape cost no read, and an unknown id is remembered as unknown for
        the cache's time, so strangers repeating a made-up shop id do not reach the table."""
        if not SHOP_ID.fullmatch(shop_id):
            return None
        return self._shops.get(shop_id, lambda: shop_store.get_shop(self.db, shop_id), remember_missing=True)

    def authenticate(self, api_key: str, shop_id: str) -> None:
        """Raises PermissionError('unauthenticated'|'forbidden'). A key only ever opens its own shop."""
        key_shop = api_key.split(".", 1)[0]
        record = self.shop(key_shop)
        if record is None or not hmac.compare_digest(record.api_key_sha256, digest(api_key)):
            raise PermissionError("unauthenticated")
        if key_shop != shop_id:
            raise PermissionError("forbidden")

    def program(self, shop_id: str) -> Program:
        program = self._programs.get(shop_id, lambda: shop_store.get_program(self.db, shop_id))
        if program is None:
            raise NotFound(f"shop {shop_id} not found", field="shop_id")
        return program

    def set_program(self, shop_id: str, program: Program) -> Program:
        shop_store.put_program(self.db, shop_id, program, self.clock())
        self._programs.forget(shop_id)
        return program

    # ------------------------------------------------------------------ members

    def enrol(self, shop_id: str, profile: Profile) -> tuple[bool, Member]:
        return member_store.enrol(self.db, shop_id, profile, self.clock())

    def member(self, shop_id: str, member_id: str) -> Member:
        member = member_store.get_member(self.db, shop_id, member_id)
        if member is None:
            raise NotFound(f"member {member_id} not found", field="member_id")
        return member

    def expiring(self, shop_id: str, member_id: str) -> list[tuple[int, datetime]]:
        """The member's next expiring amounts, soonest first."""
        return expiring_soon(point_store.lots(self.db, shop_id, member_id))

    def find_members(self, shop_id: str, kind: str, normalised: str) -> list[Member]:
        member_id = member_store.find_member_id(self.db, shop_id, kind, normalised)
        found = member_store.get_member(self.db, shop_id, member_id) if member_id else None
        return [found] if found else []

    def ledger(
        self, shop_id: str, member_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[LedgerEntry], str | None]:
        self.member(shop_id, member_id)
        start = _decode_cursor(cursor, member_pk(shop_id, member_id)) if cursor else None
        entries, last = point_store.ledger_page(self.db, shop_id, member_id, limit=limit, start=start)
        return entries, _encode_cursor(last) if last else None

    # ------------------------------------------------------------------ redemptions

    def redeem(self, shop_id: str, member_id: str, *, key: str, points: int, reason: str) -> dict[str, Any]:
        """Spend available points, oldest-expiring lots first. The same key answers as its first success did."""
        request = fingerprint({"member_id": member_id, "points": points, "reason": reason})
        for _ in range(MAX_ATTEMPTS):
            stored = idempotency_store.get_record(self.db, shop_id, "redemption", key)
            if stored is not None:
                return replay(stored, request)
            now = self.clock()
            member = self.member(shop_id, member_id)
            lots = point_store.lots(self.db, shop_id, member_id)
            move = points_account.spend(
                member.balance, lots, points, reason="redemption", reference=key, at=now, detail={"note": reason}
            )
            response = {
                "redemption_id": key,
                "member_id": member_id,
                "points": points,
                "balance": {"available": member.balance.available - points, "pending": member.balance.pending},
                "at": iso(now),
            }
            tx = self.db.transaction()
            idempotency_store.add_record(tx, shop_id, "redemption", key, request=request, response=response, now=now)
            point_store.add_move(tx, shop_id, member_id, move, guard=member.balance, now=now, shards=self.shards)
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                continue  # a concurrent spend or replay: read again; the next look finds which
            return response
        raise Retryable("too much contention on this member; try again")

    # ------------------------------------------------------------------ order events

    def apply_order_event(self, shop_id: str, event: OrderEvent) -> str:
        """Settle one order event exactly once. Returns 'applied', 'recorded' (waits for its payment) or
        'duplicate'. Raises InvalidInput for events that can never apply, Retryable for ones that may later."""
        program = self.program(shop_id)
        order_id = event.data.order_id
        payer = ""
        if isinstance(event, OrderPaid):
            if event.data.member_id is None:  # a platform's order: find (or enrol) the member it belongs to
                assert event.data.customer is not None
                resolved = self.member_for_customer(shop_id, event.data.customer)
                event = event.model_copy(update={"data": event.data.model_copy(update={"member_id": resolved})})
            payer = event.data.member_id or ""
        if isinstance(event, OrderPaid) and not event.data.points_used:
            # Fast path for a new order: one write, conditioned on the order not existing yet. Without tiers it
            # assumes a member without debt (the write checks); with tiers, earning and upgrades depend on the
            # member's tier state, so the member is read first (one read, one write). Coupons are read by code
            # (one read each); the write requires each still available. Spending points needs the lots: the
            # careful path.
            now = self.clock()
            member = member_store.get_member(self.db, shop_id, payer) if program.tiers else None
            if member is not None or not program.tiers:
                balance, tier = (member.balance, member.tier) if member else (Balance(), MemberTier())
                coupons = self._order_coupons(shop_id, event)
                settlement = settle(
                    OrderState(order_id=order_id),
                    event,
                    program,
                    now=now,
                    balance=balance,
                    lots=[],
                    member_tier=tier,
                    coupons=coupons,
                )
                try:
                    order_store.commit_settlement(
                        self.db,
                        shop_id,
                        settlement,
                        previous=None,
                        guard=member.balance if member else None,
                        now=now,
                        shards=self.shards,
                        remind_days=program.expiry_reminder_days,
                    )
                    if settlement.tier_change:
                        self._announce(shop_id, payer, settlement.tier_change)
                    return "applied"
                except TransactionCancelled:
                    pass  # the order exists already, or the member is missing, in debt or changed: the careful path
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            previous = order_store.get_order(self.db, shop_id, order_id)
            state = previous or OrderState(order_id=order_id)
            if is_duplicate(state, event, program.currency):
                return "duplicate"
            member_id = state.member_id or payer or None
            balance, lots, tier = Balance(), [], MemberTier()
            spends = isinstance(event, OrderPaid) and event.data.points_used > 0
            if member_id is not None:
                member = member_store.get_member(self.db, shop_id, member_id)
                if member is None:
                    raise Retryable(f"member {member_id} is not enrolled")
                balance, tier = member.balance, member.tier
                if state.credited > state.pending or spends:  # lots may be drawn from
                    lots = point_store.lots(self.db, shop_id, member_id)
            coupons = self._order_coupons(shop_id, event) if not state.paid else {}
            settlement = settle(
                state, event, program, now=now, balance=balance, lots=lots, member_tier=tier, coupons=coupons
            )
            try:
                order_store.commit_settlement(
                    self.db,
                    shop_id,
                    settlement,
                    previous=previous,
                    guard=balance,
                    now=now,
                    shards=self.shards,
                    remind_days=program.expiry_reminder_days,
                )
            except TransactionCancelled:
                continue  # another event for this order or member won the race: re-read and settle again
            if settlement.tier_change and member_id:
                self._announce(shop_id, member_id, settlement.tier_change)
            return "applied" if settlement.order.paid else "recorded"
        raise Retryable(f"order {order_id}: too much contention")

    def _order_coupons(self, shop_id: str, event: OrderEvent) -> dict[str, Coupon]:
        if not isinstance(event, OrderPaid) or not event.data.coupon_codes:
            return {}
        codes = [normalise_code(code) for code in event.data.coupon_codes]
        return self.find_coupons(shop_id, event.data.member_id or "", codes)


def _encode_cursor(key: Item) -> str:
    return base64.urlsafe_b64encode(json.dumps(key, separators=(",", ":")).encode()).decode()


def _decode_cursor(cursor: str, pk: str) -> Item:
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error) as exc:
        raise InvalidInput("not a cursor this API returned", field="next") from exc
    # A cursor only ever continues the listing it came from: never another member's or shop's partition.
    if not isinstance(key, dict) or key.get("PK") != pk or not str(key.get("SK", "")).startswith("LEDGER#"):
        raise InvalidInput("not a cursor this API returned", field="next")
    return key
