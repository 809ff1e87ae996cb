"""The loyalty service: every use case the handlers call. One instance per Lambda container."""

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from loyalty.domain.errors import Conflict, InvalidInput, NotFound, Retryable
from loyalty.domain.expiry import expiring_soon, lapse
from loyalty.domain.ledger import Balance, LedgerEntry, iso, spend
from loyalty.domain.members import Member, Profile
from loyalty.domain.orders import OrderEvent, OrderPaid, OrderState
from loyalty.domain.program import Program
from loyalty.domain.settle import activate, is_duplicate, settle
from loyalty.domain.tiers import MemberTier, TierChange, review, window_total
from loyalty.service.cache import TTLCache
from loyalty.store import members as member_store
from loyalty.store import orders as order_store
from loyalty.store import shops as shop_store
from loyalty.store.dynamo import Dynamo, Item, TransactionCancelled
from loyalty.store.events import Events
from loyalty.store.keys import (
    ACTIVATE_JOB,
    EXPIRE_JOB,
    IDEMPOTENCY_SK,
    PUBLISH_JOB,
    REMIND_JOB,
    REMIND_PREFIX,
    REVIEW_JOB,
    due_pk,
    idempotency_pk,
    member_pk,
    tier_decision_sk,
)
from loyalty.store.shops import ShopRecord

logger = Logger(child=True)

# Attempts at an optimistic write before giving the event back to the queue (or a 503 to the caller).
MAX_ATTEMPTS = 8


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunReport:
    """What a scheduled run did; `complete` False means it stopped for time and the next run resumes."""

    job: str
    time: str
    due: int = 0
    applied: int = 0
    skipped: int = 0
    complete: bool = True
    days: list[str] = field(default_factory=list)
    published: int = 0  # events published by the run (tier.changed from the outbox)


class Loyalty:
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
        self.clock = clock

    # ------------------------------------------------------------------ shops and credentials

    def create_shop(self, name: str, currency: str | None = None) -> dict[str, str]:
        shop_id = "shp_" + secrets.token_hex(8)
        api_key = f"{shop_id}.{secrets.token_urlsafe(32)}"
        webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        program = Program(currency=currency) if currency else Program()
        record = ShopRecord(shop_id, name, _sha256(api_key), webhook_secret)
        shop_store.create_shop(self.db, record, program, self.clock())
        return {"shop_id": shop_id, "api_key": api_key, "webhook_secret": webhook_secret}

    def shop(self, shop_id: str) -> ShopRecord | None:
        return self._shops.get(shop_id, lambda: shop_store.get_shop(self.db, shop_id))

    def authenticate(self, api_key: str, shop_id: str) -> None:
        """Raises PermissionError('unauthenticated'|'forbidden'). A key only ever opens its own shop."""
        key_shop = api_key.split(".", 1)[0]
        record = self.shop(key_shop) if key_shop.startswith("shp_") else None
        if record is None or not hmac.compare_digest(record.api_key_sha256, _sha256(api_key)):
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
        return expiring_soon(member_store.lots(self.db, shop_id, member_id))

    def find_members(self, shop_id: str, kind: str, normalised: str) -> list[Member]:
        member_id = member_store.find_member_id(self.db, shop_id, kind, normalised)
        found = member_store.get_member(self.db, shop_id, member_id) if member_id else None
        return [found] if found else []

    def ledger(
        self, shop_id: str, member_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[LedgerEntry], str | None]:
        self.member(shop_id, member_id)
        start = _decode_cursor(cursor, member_pk(shop_id, member_id)) if cursor else None
        entries, last = member_store.ledger_page(self.db, shop_id, member_id, limit=limit, start=start)
        return entries, _encode_cursor(last) if last else None

    # ------------------------------------------------------------------ redemptions

    def redeem(self, shop_id: str, member_id: str, *, key: str, points: int, reason: str) -> dict[str, Any]:
        """Spend available points, oldest-expiring lots first. The same key answers as its first success did."""
        request = _sha256(json.dumps({"member_id": member_id, "points": points, "reason": reason}, sort_keys=True))
        record_pk = idempotency_pk(shop_id, "redemption", key)
        for _ in range(MAX_ATTEMPTS):
            stored = self.db.get(record_pk, IDEMPOTENCY_SK)
            if stored is not None:
                return _replay(stored, request)
            now = self.clock()
            member = self.member(shop_id, member_id)
            lots = member_store.lots(self.db, shop_id, member_id)
            draws = spend(member.balance, lots, points)
            entry = LedgerEntry(
                points=-points,
                reason="redemption",
                reference=key,
                at=now,
                detail={"note": reason, "draws": [d.model_dump() for d in draws]},
            )
            response = {
                "redemption_id": key,
                "member_id": member_id,
                "points": points,
                "balance": {"available": member.balance.available - points, "pending": member.balance.pending},
                "at": iso(now),
            }
            tx = self.db.transaction()
            tx.put(
                {
                    "PK": record_pk,
                    "SK": IDEMPOTENCY_SK,
                    "type": "idempotency",
                    "request_sha256": request,
                    "response": response,
                    "created_at": iso(now),
                },
                condition="attribute_not_exists(PK)",
            )
            member_store.add_balance_change(
                tx,
                shop_id,
                member_id,
                available=-points,
                pending=0,
                debt=0,
                now=now,
                expect_available=member.balance.available,
                expect_debt=member.balance.debt,
                at_least=points,
            )
            member_store.add_draws(tx, shop_id, member_id, draws)
            member_store.add_entry(tx, shop_id, member_id, entry)
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
        if isinstance(event, OrderPaid):
            # Fast path for a new order: one write, conditioned on the order not existing yet. Without tiers it
            # assumes a member without debt (the write checks); with tiers, earning and upgrades depend on the
            # member's tier state, so the member is read first (one read, one write).
            now = self.clock()
            member = member_store.get_member(self.db, shop_id, event.data.member_id) if program.tiers else None
            if member is not None or not program.tiers:
                balance, tier = (member.balance, member.tier) if member else (Balance(), MemberTier())
                settlement = settle(
                    OrderState(order_id=order_id), event, program, now=now, balance=balance, lots=[], member_tier=tier
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
                        self._announce(shop_id, event.data.member_id, settlement.tier_change)
                    return "applied"
                except TransactionCancelled:
                    pass  # the order exists already, or the member is missing, in debt or changed: the careful path
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            previous = order_store.get_order(self.db, shop_id, order_id)
            state = previous or OrderState(order_id=order_id)
            if is_duplicate(state, event):
                return "duplicate"
            member_id = state.member_id or (event.data.member_id if isinstance(event, OrderPaid) else None)
            balance, lots, tier = Balance(), [], MemberTier()
            if member_id is not None:
                member = member_store.get_member(self.db, shop_id, member_id)
                if member is None:
                    raise Retryable(f"member {member_id} is not enrolled")
                balance, tier = member.balance, member.tier
                if state.credited > state.pending:  # some of the order's points are available: lots may be drawn
                    lots = member_store.lots(self.db, shop_id, member_id)
            settlement = settle(state, event, program, now=now, balance=balance, lots=lots, member_tier=tier)
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

    # ------------------------------------------------------------------ scheduled runs
    # Nightly, in this order: activate-pending, expire-points, remind-expiring (template.yaml's schedules).

    def activate_pending(self, time: datetime, *, should_stop: Callable[[], bool] = lambda: False) -> RunReport:
        """Make pending points available once their return window has closed, for every shop."""
        # Points due at `time` itself activate (the window has closed), hence the inclusive bound.
        return self._run(
            "activate-pending",
            ACTIVATE_JOB,
            time,
            should_stop,
            lambda item: self._activate_order(*_order_of(item["PK"]), time),
            inclusive=True,
        )

    def expire_points(self, time: datetime, *, should_stop: Callable[[], bool] = lambda: False) -> RunReport:
        """Remove what is left of every lot past its expiry, one transaction and one ledger entry per lot."""
        return self._run("expire-points", EXPIRE_JOB, time, should_stop, lambda item: self._expire_lot(item, time))

    def remind_expiring(self, time: datetime, *, should_stop: Callable[[], bool] = lambda: False) -> RunReport:
        """Publish points.expiring once per member and expiry instant, expiry_reminder_days ahead."""
        return self._run(
            "remind-expiring",
            REMIND_JOB,
            time,
            should_stop,
            lambda item: self._remind(item["PK"], item["SK"], item["DuePK"], item["DueSK"], time),
            inclusive=True,
        )

    def review_tiers(self, time: datetime, *, should_stop: Callable[[], bool] = lambda: False) -> RunReport:
        """Review members whose tier validity has ended: keep, one down, or recompute (the program's policy).
        Then publish any tier.changed event an earlier attempt could not."""
        report = self._run(
            "review-tiers",
            REVIEW_JOB,
            time,
            should_stop,
            lambda item: self._review_member(item["PK"], time),
            inclusive=True,
        )
        if report.complete:
            outbox = self._run(
                "publish-tier-changes",
                PUBLISH_JOB,
                time,
                should_stop,
                lambda item: self._publish_decision(item["PK"], item["SK"]),
                inclusive=True,
            )
            report.published, report.complete = outbox.applied, outbox.complete
        return report

    def _run(
        self,
        job: str,
        index_job: str,
        time: datetime,
        should_stop: Callable[[], bool],
        handle: Callable[[Item], bool],
        *,
        inclusive: bool = False,
        lookback_days: int = 7,
    ) -> RunReport:
        """Find due work through the sparse DueIndex, day by day and shard by shard, from where the last complete
        run left off up to `time`, and handle each item in its own conditional transaction. Re-running, or
        resuming a run that stopped half way, changes nothing twice: handled items have left the index."""
        report = RunReport(job=job, time=iso(time))
        state_key = (f"SCHEDULE#{job}", "STATE")
        saved = self.db.get(*state_key)
        first = date.fromisoformat(saved["resume_from"]) if saved else time.date() - timedelta(days=lookback_days)
        first = min(first, time.date())
        # DueSK starts with the due instant: everything due before `time` (or at it, when inclusive).
        until = iso(time) + ("~" if inclusive else "")
        day = first
        while day <= time.date():
            report.days.append(day.isoformat())
            for shard in range(self.shards):
                start: Item | None = None
                while True:
                    items, start = self.db.query_due(due_pk(index_job, day.isoformat(), shard), until, start=start)
                    for item in items:
                        report.due += 1
                        if handle(item):
                            report.applied += 1
                        else:
                            report.skipped += 1
                        if should_stop():
                            report.complete = False
                            return report
                    if start is None:
                        break
            day += timedelta(days=1)
        # Today may still gain due items; resume from it (never from a simulated future) next time.
        resume = min(time.date(), self.clock().date())
        self.db.put({"PK": state_key[0], "SK": state_key[1], "resume_from": resume.isoformat(), "last_run": iso(time)})
        return report

    def _activate_order(self, shop_id: str, order_id: str, time: datetime) -> bool:
        program = self.program(shop_id)
        for _ in range(MAX_ATTEMPTS):
            state = order_store.get_order(self.db, shop_id, order_id)
            if state is None or state.member_id is None:
                return False
            member = member_store.get_member(self.db, shop_id, state.member_id)
            if member is None:
                return False
            settlement = activate(state, program, now=time, balance=member.balance)
            if settlement is None:
                return False
            try:
                order_store.commit_settlement(
                    self.db,
                    shop_id,
                    settlement,
                    previous=state,
                    guard=member.balance,
                    now=time,
                    shards=self.shards,
                    remind_days=program.expiry_reminder_days,
                )
            except TransactionCancelled:
                continue
            return True
        raise Retryable(f"order {order_id}: too much contention")

    def _review_member(self, pk: str, time: datetime) -> bool:
        shop_id, member_id = _member_of(pk)
        program = self.program(shop_id)
        for _ in range(MAX_ATTEMPTS):
            member = member_store.get_member(self.db, shop_id, member_id)
            state = member.tier if member else None
            if not program.tiers or state is None or state.review_at is None or state.review_at > time:
                return False  # reviewed already (the index lags), or no longer under review
            total = window_total(state.qualifying, time, program.tier_window_days, program.timezone)
            change = review(
                program.tiers,
                state,
                total,
                time,
                metric=program.tier_metric,
                exponent=program.exponent,
                valid_days=program.tier_valid_days,
                policy=program.tier_downgrade,
            )
            tx = self.db.transaction()
            member_store.add_balance_change(
                tx,
                shop_id,
                member_id,
                available=0,
                pending=0,
                debt=0,
                now=time,
                tier=member_store.TierUpdate(
                    day=None, delta=0, change=change, expect_rev=state.rev, shards=self.shards
                ),
            )
            member_store.add_tier_decision(tx, shop_id, member_id, change, self.shards)
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                continue  # an order moved the member's tier state meanwhile: decide again
            self._announce(shop_id, member_id, change)
            return True
        raise Retryable(f"member {member_id}: too much contention")

    def _announce(self, shop_id: str, member_id: str, change: TierChange) -> None:
        """Publish tier.changed now; if that fails the decision stays in the outbox for the review run."""
        if not change.moved:
            return
        try:
            self._publish(shop_id, member_id, change)
        except Exception:  # the outbox keeps it: never fail a settled event for a notification
            logger.warning("tier.changed left in the outbox", extra={"shop_id": shop_id})

    def _publish_decision(self, pk: str, sk: str) -> bool:
        item = self.db.get(pk, sk)
        if item is None or "DuePK" not in item:
            return False
        shop_id, member_id = _member_of(pk)
        self._publish(
            shop_id, member_id, TierChange.model_validate({k: item[k] for k in TierChange.model_fields if k in item})
        )
        return True

    def _publish(self, shop_id: str, member_id: str, change: TierChange) -> None:
        self.events.publish(
            "tier.changed", {"shop_id": shop_id, "member_id": member_id, **change.model_dump(mode="json")}
        )
        self.db.update(member_pk(shop_id, member_id), tier_decision_sk(change), "REMOVE DuePK, DueSK")

    def _expire_lot(self, item: Item, time: datetime) -> bool:
        """Lapse one lot. The index's copy of the lot is tried first (one read per lot due); if the lot changed
        since (spent from, or lapsed by an earlier run), the condition refuses and the lot is read afresh."""
        pk, sk = item["PK"], item["SK"]
        shop_id, member_id = _member_of(pk)
        lot = member_store.lot_from_index(item)
        for _ in range(MAX_ATTEMPTS):
            entry = lapse(lot, time) if lot else None
            if lot is None or entry is None:
                return False  # spent, or already expired by an earlier run, or not due yet
            try:
                member_store.commit_lapse(self.db, shop_id, member_id, lot, entry, time)
            except TransactionCancelled:
                lot = member_store.get_lot(self.db, pk, sk)  # read the remainder as it is now
                continue
            return True
        raise Retryable(f"lot {sk}: too much contention")

    def _remind(self, pk: str, sk: str, due_pk_: str, due_sk: str, time: datetime) -> bool:
        shop_id, member_id = _member_of(pk)
        if not member_store.mark_reminded(self.db, pk, sk, time):
            return False
        expires = datetime.fromisoformat(sk.removeprefix(REMIND_PREFIX).replace("Z", "+00:00"))
        points = member_store.lots_expiring_at(self.db, shop_id, member_id, expires)
        if points <= 0:
            return False
        try:
            self.events.publish(
                "points.expiring",
                {
                    "shop_id": shop_id,
                    "member_id": member_id,
                    "points": points,
                    "expires_at": iso(expires),
                    "reminder_id": f"{member_id}:{iso(expires)}",
                },
            )
        except Exception:
            member_store.unmark_reminded(self.db, pk, sk, (due_pk_, due_sk))
            raise
        return True


def _sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _order_of(pk: str) -> tuple[str, str]:
    _, shop_id, _, order_id = pk.split("#", 3)
    return shop_id, order_id


def _member_of(pk: str) -> tuple[str, str]:
    _, shop_id, _, member_id = pk.split("#", 3)
    return shop_id, member_id


def _replay(stored: Item, request: str) -> dict[str, Any]:
    if not hmac.compare_digest(str(stored["request_sha256"]), request):
        raise Conflict("this Idempotency-Key was used for a different request", field="Idempotency-Key")
    response: dict[str, Any] = stored["response"]
    return response


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
