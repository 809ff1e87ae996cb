"""A member's points: what they hold and why (ledger, expiring amounts), spending them, their lots lapsing at
expiry and the reminders before it."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from loyalty.domain import points as account
from loyalty.domain.access import Caller
from loyalty.domain.engagement import local_day
from loyalty.domain.errors import CapReached, Retryable
from loyalty.domain.expiry import expires_at, expiring_soon
from loyalty.domain.ledger import Balance, LedgerEntry, iso
from loyalty.service.idempotency import fingerprint, replay
from loyalty.service.members import Members
from loyalty.service.reminders import publish_once
from loyalty.store import api_keys as key_store
from loyalty.store import idempotency as idempotency_store
from loyalty.store import orders as order_store
from loyalty.store import points as point_store
from loyalty.store.dynamo import Dynamo, Item, TransactionCancelled
from loyalty.store.events import Events
from loyalty.store.keys import member_of
from loyalty.store.points import MAX_TOGETHER

# Attempts at an optimistic write before a 503 to the caller (or leaving a lot to the next run).
MAX_ATTEMPTS = 8


class Points:
    def __init__(
        self, db: Dynamo, members: Members, events: Events, *, clock: Callable[[], datetime], shards: int
    ) -> None:
        self.db = db
        self.members = members
        self.events = events
        self.clock = clock
        self.shards = shards

    def expiring(self, shop_id: str, member_id: str) -> list[tuple[int, datetime]]:
        """The member's next expiring amounts, soonest first."""
        return expiring_soon(point_store.lots(self.db, shop_id, member_id))

    def ledger(
        self, shop_id: str, member_id: str, *, limit: int, cursor: str | None
    ) -> tuple[list[LedgerEntry], str | None]:
        self.members.member(shop_id, member_id)
        return point_store.ledger_page(self.db, shop_id, member_id, limit=limit, cursor=cursor)

    def redeem(self, shop_id: str, member_id: str, *, key: str, points: int, reason: str) -> dict[str, Any]:
        """Spend available points, oldest-expiring lots first. The same key answers as its first success did."""
        request = fingerprint({"member_id": member_id, "points": points, "reason": reason})
        for _ in range(MAX_ATTEMPTS):
            stored = idempotency_store.get_record(self.db, shop_id, member_id, "redemption", key)
            if stored is not None:
                return replay(stored, request)
            now = self.clock()
            member = self.members.member(shop_id, member_id)
            lots = point_store.lots(self.db, shop_id, member_id)
            move = account.spend(
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
            idempotency_store.add_record(
                tx, shop_id, member_id, "redemption", key, request=request, response=response, now=now
            )
            point_store.add_move(tx, shop_id, member_id, move, guard=member.balance, now=now, shards=self.shards)
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                continue  # a concurrent spend or replay: read again; the next look finds which
            return response
        raise Retryable("too much contention on this member; try again")

    def adjust(self, shop_id: str, member_id: str, *, key: str, points: int, reason: str, by: Caller) -> dict[str, Any]:
        """A manual correction by a staff key: positive points form a lot of source `adjustment` (expiring by the
        program's policy for it), negative ones are spent oldest-expiring first and never overdraw. The entry names
        the key and the reason; a key with a daily cap (support) counts the points against it, in the same
        transaction. The same key answers as its first success did."""
        request = fingerprint({"member_id": member_id, "points": points, "reason": reason})
        signed = {"note": reason, "key_id": by.key_id, "key_name": by.name}
        for _ in range(MAX_ATTEMPTS):
            stored = idempotency_store.get_record(self.db, shop_id, member_id, "adjustment", key)
            if stored is not None:
                return replay(stored, request)
            now = self.clock()
            program = self.members.shops.program(shop_id)
            member = self.members.member(shop_id, member_id)
            if points > 0:
                move = account.grant(
                    member.balance, points, reason="points.adjusted", reference=key, at=now, source="adjustment",
                    earned_at=now, expires_at=expires_at(program.expiry_rule("adjustment"), now, program.timezone),
                    detail=signed,
                )  # fmt: skip
            else:
                lots = point_store.lots(self.db, shop_id, member_id)
                move = account.spend(
                    member.balance, lots, -points, reason="points.adjusted", reference=key, at=now, detail=signed
                )
            after = member.balance.available + move.available
            response = {
                "adjustment_id": key,
                "member_id": member_id,
                "points": points,
                "reason": reason,
                "by": {"key_id": by.key_id, "name": by.name},
                "balance": {"available": after, "pending": member.balance.pending},
                "at": iso(now),
            }
            tx = self.db.transaction()
            idempotency_store.add_record(
                tx, shop_id, member_id, "adjustment", key, request=request, response=response, now=now
            )
            point_store.add_move(
                tx, shop_id, member_id, move, guard=member.balance, now=now, shards=self.shards,
                remind_days=program.expiry_reminder_days,
            )  # fmt: skip
            capped = key_store.add_adjusted(
                tx, shop_id, by.key_id or "", local_day(now, program.timezone).isoformat(), abs(points),
                by.adjustment_cap,
            )  # fmt: skip
            try:
                self.db.commit(tx)
            except TransactionCancelled as exc:
                if capped >= 0 and exc.failed(capped):
                    raise CapReached(
                        f"this key may adjust {by.adjustment_cap} points a day; today's are used up", field="points"
                    ) from exc
                continue  # a concurrent change or replay: read again; the next look finds which
            return response
        raise Retryable("too much contention on this member; try again")

    # ------------------------------------------------------------------ expiry and reminders (scheduled runs)

    def lapse_together(self, items: list[Item], time: datetime) -> int:
        """Lapse lots of one member that expire at one instant, as the due index lists them side by side (or one
        lot alone): one transaction with the balance, one ledger entry, each lot at the remainder it was read at,
        and for purchases each order's count of lapsed points. Returns how many lots lapsed. The index's copies are
        tried first (one read per lot due); if a lot changed since (spent from, or lapsed by an earlier run), the
        transaction is refused and the lots are read afresh. At most MAX_TOGETHER lots, so the transaction stays
        within DynamoDB's 100 actions (2 per lot, and the member and the entry)."""
        assert 0 < len(items) <= MAX_TOGETHER
        pk = items[0]["PK"]
        shop_id, member_id = member_of(pk)
        lots = [point_store.lot_from_index(item) for item in items]
        for _ in range(MAX_ATTEMPTS):
            read = {lot.lot_id: lot for lot in lots if lot is not None}
            move = account.lapse_together(list(read.values()), time)
            if move is None:
                return 0  # spent, or already expired by an earlier run, or not due yet
            tx = self.db.transaction()
            point_store.add_move(tx, shop_id, member_id, move, guard=Balance(), now=time, shards=self.shards)
            lapsed: dict[str, int] = {}  # per order, summed: one action per item in a transaction
            for draw in move.draws:
                lot = read[draw.lot_id]
                if lot.source == "purchase":
                    lapsed[lot.reference] = lapsed.get(lot.reference, 0) + draw.take
            for order_id, points in lapsed.items():
                order_store.add_lapsed(tx, shop_id, order_id, points)
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                lots = [point_store.get_lot(self.db, pk, item["SK"]) for item in items]  # as they are now
                continue
            return len(move.draws)
        raise Retryable(f"{len(items)} lots of {pk}: too much contention")

    def remind(self, item: Item, time: datetime) -> bool:
        """Publish points.expiring once for a member and expiry instant (a reminder the due index lists)."""

        def expiring(shop_id: str, member_id: str, expires: datetime) -> dict[str, Any] | None:
            points = point_store.lots_expiring_at(self.db, shop_id, member_id, expires)
            return {"points": points} if points > 0 else None

        return publish_once(self.db, self.events, item, time, "points.expiring", expiring)
