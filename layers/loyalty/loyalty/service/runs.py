"""The scheduled runs: each finds its due work through the sparse DueIndex and settles it item by item.

Nightly, in this order (template.yaml): activate-pending, expire-points, remind-expiring, review-tiers,
expire-coupons, grant-birthdays, grant-monthly-coupons, publish-lottery-digests.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from loyalty.domain.ledger import iso
from loyalty.store.dynamo import Dynamo, Item
from loyalty.store.erasure import ERASURE_SK
from loyalty.store.keys import (
    ACTIVATE_JOB,
    BIRTHDAY_JOB,
    COUPON_EXPIRE_JOB,
    COUPON_REMIND_JOB,
    EXCHANGE_PREFIX,
    EXPIRE_JOB,
    LOT_PREFIX,
    LOTTERY_DIGEST_JOB,
    MONTHLY_JOB,
    PUBLISH_JOB,
    REFERRAL_JOB,
    REMIND_JOB,
    REVIEW_JOB,
    WALLET_LOT_PREFIX,
    WALLET_REMIND_PREFIX,
    due_pk,
    member_of,
    order_of,
    schedule_state_key,
)
from loyalty.store.points import MAX_TOGETHER
from loyalty.store.queue import Queues
from loyalty.store.segments import SEGMENT_JOB

if TYPE_CHECKING:  # the capabilities a run hands its items to; each handler's import brings only its own
    from loyalty.service.coupons import Coupons
    from loyalty.service.engagement import Engagement
    from loyalty.service.lottery import Lotteries
    from loyalty.service.mall import Mall
    from loyalty.service.orders import Orders
    from loyalty.service.points import Points
    from loyalty.service.privacy import Privacy
    from loyalty.service.segments import Segments
    from loyalty.service.tiers import Tiers
    from loyalty.service.wallet import Wallet


def _one_by_one(handle: Callable[[Item], bool]) -> Callable[[list[Item]], int]:
    return lambda group: sum(handle(item) for item in group)


def _groups(items: list[Item], together: Callable[[Item], object] | None) -> list[list[Item]]:
    """Items side by side with one `together` key (not None), in groups of at most MAX_TOGETHER; others alone."""
    groups: list[list[Item]] = []
    last: object = None
    for item in items:
        key = together(item) if together is not None else None
        if key is not None and key == last and len(groups[-1]) < MAX_TOGETHER:
            groups[-1].append(item)
        else:
            groups.append([item])
        last = key
    return groups


def _member_and_instant(item: Item) -> object:
    """What groups lots of points on the due index: a member's lots due at one instant lapse together."""
    return (item["PK"], item.get("expires_at")) if str(item["SK"]).startswith(LOT_PREFIX) else None


def _lapses(points: "Points", wallet: "Wallet | None", time: datetime) -> Callable[[list[Item]], int]:
    """The expiry run's handler: a group of lots of points lapses together; wallet bonus lots one by one (none
    without the wallet)."""

    def lapse(group: list[Item]) -> int:
        if str(group[0]["SK"]).startswith(WALLET_LOT_PREFIX):
            return sum(wallet.lapse(item, time) for item in group) if wallet is not None else 0
        return points.lapse_together(group, time)

    return lapse


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
    rewarded: int = 0  # referrals rewarded by the run (after activation)
    resume: ShardWork | None = None  # a fanned-out worker's continuation, when it stopped for time

    def view(self) -> dict[str, object]:
        return {k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in self.__dict__.items()}


def outbox_entry(item: Item, tiers: "Tiers", mall: "Mall", privacy: "Privacy", should_stop: Callable[[], bool]) -> bool:
    """Hand one outbox entry to the capability it belongs to: an exchange's step or a tier decision to publish,
    or an erasure its request did not finish."""
    if str(item["SK"]).startswith(EXCHANGE_PREFIX):
        return mall.publish_pending(item["PK"], item["SK"])
    if item["SK"] == ERASURE_SK:
        return privacy.resume_erasure(item, should_stop)
    return tiers.publish_decision(item["PK"], item["SK"])


class Runs:
    """Finds each run's due work and hands each item to the capability that owns it, which the caller passes in
    (a scheduled function imports only the capability its run needs)."""

    def __init__(self, db: Dynamo, *, clock: Callable[[], datetime], shards: int) -> None:
        self.db = db
        self.clock = clock
        self.shards = shards

    def activate_pending(
        self,
        time: datetime,
        orders: "Orders",
        engagement: "Engagement | None" = None,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RunReport:
        """Make pending points available once their return window has closed, for every shop; then (given
        `engagement`) reward the referrals whose referee's first order has passed its window too."""
        # Points due at `time` itself activate (the window has closed), hence the inclusive bound.
        report = self._run(
            "activate-pending",
            ACTIVATE_JOB,
            time,
            should_stop,
            lambda item: orders.activate(*order_of(item["PK"]), time),
            inclusive=True,
        )
        if report.complete and engagement is not None:
            referrals = self._run(
                "reward-referrals",
                REFERRAL_JOB,
                time,
                should_stop,
                lambda item: engagement.referral(item, time),
                inclusive=True,
            )
            report.rewarded, report.complete = referrals.applied, referrals.complete
        return report

    def expire_points(
        self, time: datetime, points: "Points", *, should_stop: Callable[[], bool] = lambda: False
    ) -> RunReport:
        """Remove what is left of every lot of points past its expiry, in one invocation (expire_shard is the
        fanned-out form, and lapses wallet bonus too): a member's lots of one instant together."""
        lapse = _lapses(points, None, time)
        return self._run_groups("expire-points", EXPIRE_JOB, time, should_stop, lapse, together=_member_and_instant)

    def remind_expiring(
        self,
        time: datetime,
        points: "Points",
        wallet: "Wallet",
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RunReport:
        """Publish points.expiring (and, for wallet bonus, wallet.bonus_expiring) once per member and expiry
        instant, expiry_reminder_days ahead."""

        def remind(item: Item) -> bool:
            if str(item["SK"]).startswith(WALLET_REMIND_PREFIX):
                return wallet.remind(item, time)
            return points.remind(item, time)

        return self._run("remind-expiring", REMIND_JOB, time, should_stop, remind, inclusive=True)

    def review_tiers(
        self,
        time: datetime,
        tiers: "Tiers",
        mall: "Mall",
        privacy: "Privacy",
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RunReport:
        """Review members whose tier validity has ended: keep, one down, or recompute (the program's policy).
        Then work through what the outbox still holds: tier.changed and mall.exchange.changed events an earlier
        attempt could not publish, and erasures their request could not finish."""
        report = self._run(
            "review-tiers",
            REVIEW_JOB,
            time,
            should_stop,
            lambda item: tiers.review(*member_of(item["PK"]), time),
            inclusive=True,
        )
        if report.complete:
            outbox = self._run(
                "publish-tier-changes",
                PUBLISH_JOB,
                time,
                should_stop,
                lambda item: outbox_entry(item, tiers, mall, privacy, should_stop),
                inclusive=True,
            )
            report.published, report.complete = outbox.applied, outbox.complete
        return report

    def grant_birthdays(
        self, time: datetime, engagement: "Engagement", *, should_stop: Callable[[], bool] = lambda: False
    ) -> RunReport:
        """Celebrate every birthday that has begun, in each shop's time zone: points, the tier's coupons."""
        return self._run(
            "grant-birthdays",
            BIRTHDAY_JOB,
            time,
            should_stop,
            lambda item: engagement.birthday(item, time),
            inclusive=True,
        )

    def grant_monthly_coupons(
        self,
        time: datetime,
        engagement: "Engagement",
        queues: Queues,
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RunReport:
        """On each shop's 1st (its time zone), queue each tier's monthly coupons for the tier's members."""
        return self._run(
            "grant-monthly-coupons",
            MONTHLY_JOB,
            time,
            should_stop,
            lambda item: engagement.monthly_coupons(item, time, queues),
            inclusive=True,
        )

    def review_segments(
        self, time: datetime, segments: "Segments", *, should_stop: Callable[[], bool] = lambda: False
    ) -> RunReport:
        """Move members whose segment changes with time alone (active -> at risk -> dormant), reaching them with
        their new segment's win-back campaigns."""
        return self._run(
            "review-segments",
            SEGMENT_JOB,
            time,
            should_stop,
            lambda item: segments.review(item, time),
            inclusive=True,
        )

    def publish_lottery_digests(
        self, time: datetime, lotteries: "Lotteries", *, should_stop: Callable[[], bool] = lambda: False
    ) -> RunReport:
        """For each lottery whose day is over, chain and publish that day's digest of its draws."""
        return self._run(
            "publish-lottery-digests",
            LOTTERY_DIGEST_JOB,
            time,
            should_stop,
            lambda item: lotteries.digest_day(item, time),
            inclusive=True,
        )

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
        one_by_one = _one_by_one(handle)
        return self._run_groups(job, index_job, time, should_stop, one_by_one, inclusive=inclusive)

    def _run_groups(
        self,
        job: str,
        index_job: str,
        time: datetime,
        should_stop: Callable[[], bool],
        handle: Callable[[list[Item]], int],
        *,
        inclusive: bool = False,
        together: Callable[[Item], object] | None = None,
    ) -> RunReport:
        """_run, with items handed to `handle` in groups (see _visit)."""
        report = RunReport(job=job, time=iso(time))
        for day in self._days_due(job, time):
            report.days.append(day)
            for shard in range(self.shards):
                work = ShardWork(job=job, time=iso(time), day=day, shard=shard)
                visited = self._visit(
                    index_job, work, handle, should_stop, report, inclusive=inclusive, together=together
                )
                if visited is not None:
                    report.complete = False
                    return report
        self._save_progress(job, time)
        return report

    def _days_due(self, job: str, time: datetime, lookback_days: int = 7) -> list[str]:
        """The days whose partitions a run at `time` visits: from where the last complete run left off."""
        saved = self.db.get(*schedule_state_key(job))
        # Items are filed under their due day, or the day they were written if that is later: never before today.
        # So a first run looks back from the earlier of its own time and today (a simulated run may be far ahead).
        today = min(time.date(), self.clock().date())
        first = date.fromisoformat(saved["resume_from"]) if saved else today - timedelta(days=lookback_days)
        first = min(first, time.date())
        return [(first + timedelta(days=n)).isoformat() for n in range((time.date() - first).days + 1)]

    def _save_progress(self, job: str, time: datetime) -> None:
        # Today may still gain due items; resume from it (never from a simulated future) next time.
        resume = min(time.date(), self.clock().date())
        pk, sk = schedule_state_key(job)
        self.db.put({"PK": pk, "SK": sk, "resume_from": resume.isoformat(), "last_run": iso(time)})

    def _visit(
        self,
        index_job: str,
        work: "ShardWork",
        handle: Callable[[list[Item]], int],
        should_stop: Callable[[], bool],
        report: RunReport,
        *,
        inclusive: bool,
        together: Callable[[Item], object] | None = None,
    ) -> Item | None:
        """Handle what one day-shard holds due up to the run's time: `handle` takes a group of items and says how
        many it applied; items side by side with the same `together` key (not None) form one group, at most
        MAX_TOGETHER of them; without `together`, each item is its own. Returns None when the day-shard is done,
        else the key of the last item handled: where a run that must stop for time resumes."""
        # DueSK starts with the due instant: everything due before `time` (or at it, when inclusive).
        until = work.time + ("~" if inclusive else "")
        start = work.start
        while True:
            items, start = self.db.query_due(due_pk(index_job, work.day, work.shard), until, start=start)
            for group in _groups(items, together):
                applied = handle(group)
                report.due += len(group)
                report.applied += applied
                report.skipped += len(group) - applied
                if should_stop():
                    return {name: group[-1][name] for name in ("PK", "SK", "DuePK", "DueSK")}
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

    def expire_shard(
        self,
        work: "ShardWork",
        points: "Points",
        wallet: "Wallet",
        *,
        should_stop: Callable[[], bool] = lambda: False,
    ) -> RunReport:
        """Expire one day-shard's due lots, of points and of wallet bonus alike; `report.resume` says where to go
        on when it stopped for time. A member's lots of points that expire at one instant (a year's, with
        `end_of_next_year`) lapse together: the due index files them side by side (same shard, DueSK by instant
        and member), and one transaction and one ledger entry take them all."""
        time = datetime.fromisoformat(work.time.replace("Z", "+00:00"))
        report = RunReport(job=work.job, time=work.time, days=[work.day])
        lapse = _lapses(points, wallet, time)
        stopped = self._visit(
            EXPIRE_JOB, work, lapse, should_stop, report, inclusive=False, together=_member_and_instant
        )
        if stopped is not None:
            report.complete = False
            report.resume = work.model_copy(update={"start": stopped})
        return report

    def expire_coupons(
        self, time: datetime, coupons: "Coupons", *, should_stop: Callable[[], bool] = lambda: False
    ) -> RunReport:
        """Publish coupon.expiring for unused coupons coupon_reminder_days ahead, then expire unused coupons past
        their expiry. Both through the due index; each coupon is handled by one conditional update."""
        reminded = self._run(
            "remind-coupons",
            COUPON_REMIND_JOB,
            time,
            should_stop,
            lambda item: coupons.remind(item, time),
            inclusive=True,
        )
        if not reminded.complete:
            return reminded
        report = self._run(
            "expire-coupons",
            COUPON_EXPIRE_JOB,
            time,
            should_stop,
            lambda item: coupons.expire(item, time),
            inclusive=True,
        )
        report.published = reminded.applied
        return report
