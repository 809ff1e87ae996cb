"""The scheduled runs: each finds its due work through the sparse DueIndex and settles it item by item.

Nightly, in this order (template.yaml): activate-pending, expire-points, remind-expiring, review-tiers,
expire-coupons.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from loyalty.domain.errors import Retryable
from loyalty.domain.ledger import Balance, iso
from loyalty.domain.points import lapse
from loyalty.domain.program import Program
from loyalty.domain.settle import activate
from loyalty.domain.tiers import TierChange, review, window_total
from loyalty.store import coupons as coupon_store
from loyalty.store import members as member_store
from loyalty.store import orders as order_store
from loyalty.store import points as point_store
from loyalty.store.dynamo import Dynamo, Item, TransactionCancelled
from loyalty.store.events import Events
from loyalty.store.keys import (
    ACTIVATE_JOB,
    COUPON_EXPIRE_JOB,
    COUPON_REMIND_JOB,
    EXPIRE_JOB,
    PUBLISH_JOB,
    REMIND_JOB,
    REMIND_PREFIX,
    REVIEW_JOB,
    due_pk,
    member_pk,
    tier_decision_sk,
)
from loyalty.store.queue import Queues

logger = Logger(child=True)

# Attempts at an optimistic write before giving up on an item for this run (the next run retries it).
MAX_ATTEMPTS = 8


class ShardWork(BaseModel):
    """One day-shard of a run's due work: a message on the runs queue, for one worker."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job: str = Field(pattern=r"^[a-z-]{1,40}$")  # the run it is part of; workers exist for expire-points
    time: str  # the run's "now", ISO-8601 UTC
    day: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    shard: int = Field(ge=0, le=1023)
    start: dict[str, str] | None = None  # the last item handled, when a worker stopped for time


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
    resume: ShardWork | None = None  # a fanned-out worker's continuation, when it stopped for time

    def view(self) -> dict[str, object]:
        return {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in self.__dict__.items()}


class ScheduledRuns:
    """Run methods of the service (Loyalty inherits them); what they use of it is declared here."""

    db: Dynamo
    events: Events
    shards: int
    clock: Callable[[], datetime]

    def program(self, shop_id: str) -> Program:
        raise NotImplementedError

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
    ) -> RunReport:
        """Find due work through the sparse DueIndex, day by day and shard by shard, from where the last complete
        run left off up to `time`, and handle each item in its own conditional transaction. Re-running, or
        resuming a run that stopped half way, changes nothing twice: handled items have left the index."""
        report = RunReport(job=job, time=iso(time))
        for day in self._days_due(job, time):
            report.days.append(day)
            for shard in range(self.shards):
                work = ShardWork(job=job, time=iso(time), day=day, shard=shard)
                if self._visit(index_job, work, handle, should_stop, report, inclusive=inclusive) is not None:
                    report.complete = False
                    return report
        self._save_progress(job, time)
        return report

    def _days_due(self, job: str, time: datetime, lookback_days: int = 7) -> list[str]:
        """The days whose partitions a run at `time` visits: from where the last complete run left off."""
        saved = self.db.get(*_state_key(job))
        # Items are filed under their due day, or the day they were written if that is later: never before today.
        # So a first run looks back from the earlier of its own time and today (a simulated run may be far ahead).
        today = min(time.date(), self.clock().date())
        first = date.fromisoformat(saved["resume_from"]) if saved else today - timedelta(days=lookback_days)
        first = min(first, time.date())
        return [(first + timedelta(days=n)).isoformat() for n in range((time.date() - first).days + 1)]

    def _save_progress(self, job: str, time: datetime) -> None:
        # Today may still gain due items; resume from it (never from a simulated future) next time.
        resume = min(time.date(), self.clock().date())
        pk, sk = _state_key(job)
        self.db.put({"PK": pk, "SK": sk, "resume_from": resume.isoformat(), "last_run": iso(time)})

    def _visit(
        self,
        index_job: str,
        work: "ShardWork",
        handle: Callable[[Item], bool],
        should_stop: Callable[[], bool],
        report: RunReport,
        *,
        inclusive: bool,
    ) -> Item | None:
        """Handle what one day-shard holds due up to the run's time. Returns None when it is done, else the key of
        the last item handled: where a run that must stop for time resumes."""
        # DueSK starts with the due instant: everything due before `time` (or at it, when inclusive).
        until = work.time + ("~" if inclusive else "")
        start = work.start
        while True:
            items, start = self.db.query_due(due_pk(index_job, work.day, work.shard), until, start=start)
            for item in items:
                report.due += 1
                if handle(item):
                    report.applied += 1
                else:
                    report.skipped += 1
                if should_stop():
                    return {name: item[name] for name in ("PK", "SK", "DuePK", "DueSK")}
            if start is None:
                return None

    # ------------------------------------------------------------------ the expiry run, fanned out

    def dispatch_expiry(self, time: datetime, queues: Queues) -> RunReport:
        """Queue the expiry run's day-shards, one message each, for parallel workers (expire_shard): a year-end
        night holds a year's lots, and its wall time is then items / (shards x items per second per worker).
        The next run starts from today: the queue holds the work (and its DLQ what never succeeds)."""
        report = RunReport(job="expire-points", time=iso(time), days=self._days_due("expire-points", time))
        works = [
            ShardWork(job="expire-points", time=iso(time), day=day, shard=shard).model_dump(exclude_none=True)
            for day in report.days
            for shard in range(self.shards)
        ]
        queues.enqueue_shard_work(works)
        report.due = len(works)  # day-shards dispatched
        self._save_progress("expire-points", time)
        return report

    def expire_shard(self, work: "ShardWork", *, should_stop: Callable[[], bool] = lambda: False) -> RunReport:
        """Expire one day-shard's due lots; `report.resume` says where to go on when it stopped for time."""
        time = datetime.fromisoformat(work.time.replace("Z", "+00:00"))
        report = RunReport(job=work.job, time=work.time, days=[work.day])
        stopped = self._visit(
            EXPIRE_JOB, work, lambda item: self._expire_lot(item, time), should_stop, report, inclusive=False
        )
        if stopped is not None:
            report.complete = False
            report.resume = work.model_copy(update={"start": stopped})
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
            member_store.add_member_update(
                tx,
                shop_id,
                member_id,
                now=time,
                tier=member_store.TierUpdate(
                    day=None, delta=0, change=change, expect_rev=state.rev, shards=self.shards
                ),
            )
            member_store.add_tier_decision(tx, shop_id, member_id, change, self.shards, now=time)
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
        change = member_store.unpublished_tier_decision(self.db, pk, sk)
        if change is None:
            return False  # published since it was listed
        self._publish(*_member_of(pk), change)
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
        lot = point_store.lot_from_index(item)
        for _ in range(MAX_ATTEMPTS):
            move = lapse(lot, time) if lot else None
            if lot is None or move is None:
                return False  # spent, or already expired by an earlier run, or not due yet
            # The lot (at the remainder it was read at), the balance, the entry, and for a purchase the order's
            # count of lapsed points: one transaction.
            tx = self.db.transaction()
            point_store.add_move(tx, shop_id, member_id, move, guard=Balance(), now=time, shards=self.shards)
            if lot.source == "purchase":
                order_store.add_lapsed(tx, shop_id, lot.reference, lot.remaining)
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                lot = point_store.get_lot(self.db, pk, sk)  # read the remainder as it is now
                continue
            return True
        raise Retryable(f"lot {sk}: too much contention")

    def _remind(self, pk: str, sk: str, due_pk_: str, due_sk: str, time: datetime) -> bool:
        shop_id, member_id = _member_of(pk)
        if not member_store.mark_reminded(self.db, pk, sk, time):
            return False
        expires = datetime.fromisoformat(sk.removeprefix(REMIND_PREFIX).replace("Z", "+00:00"))
        points = point_store.lots_expiring_at(self.db, shop_id, member_id, expires)
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

    # ------------------------------------------------------------------ the expiry run

    def expire_coupons(self, time: datetime, *, should_stop: Callable[[], bool] = lambda: False) -> RunReport:
        """Publish coupon.expiring for unused coupons coupon_reminder_days ahead, then expire unused coupons past
        their expiry. Both through the due index; each coupon is handled by one conditional update."""
        reminded = self._run(
            "remind-coupons",
            COUPON_REMIND_JOB,
            time,
            should_stop,
            lambda item: self._remind_coupon(item, time),
            inclusive=True,
        )
        if not reminded.complete:
            return reminded
        report = self._run(
            "expire-coupons",
            COUPON_EXPIRE_JOB,
            time,
            should_stop,
            lambda item: coupon_store.expire(self.db, item["PK"], item["SK"], time),
            inclusive=True,
        )
        report.published = reminded.applied
        return report

    def _remind_coupon(self, item: Item, time: datetime) -> bool:
        pk, sk = item["PK"], item["SK"]
        expires_at = datetime.fromisoformat(str(item["expires_at"]).replace("Z", "+00:00"))
        if not coupon_store.refile_for_expiry(self.db, pk, sk, expires_at, now=time, shards=self.shards):
            return False
        shop_id, member_id = _member_of(pk)
        try:
            self.events.publish(
                "coupon.expiring",
                {
                    "shop_id": shop_id,
                    "member_id": member_id,
                    "code": sk.removeprefix("COUPON#"),
                    "coupon_id": item.get("coupon_id"),
                    "template_id": item.get("template_id"),
                    "expires_at": iso(expires_at),
                },
            )
        except Exception:
            member_store.unmark_reminded(self.db, pk, sk, (item["DuePK"], item["DueSK"]))
            raise
        return True


def _state_key(job: str) -> tuple[str, str]:
    return f"SCHEDULE#{job}", "STATE"


def _order_of(pk: str) -> tuple[str, str]:
    _, shop_id, _, order_id = pk.split("#", 3)
    return shop_id, order_id


def _member_of(pk: str) -> tuple[str, str]:
    _, shop_id, _, member_id = pk.split("#", 3)
    return shop_id, member_id
