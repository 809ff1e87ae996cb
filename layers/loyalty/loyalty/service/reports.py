"""Reports: the shop's figures, kept from the table's stream exactly once, read per day and to date, and checked
against the members' own balances.

The aggregator (functions/aggregates) hands `aggregate` one stream shard's batch, in order. Each change is applied
once: in one transaction with the figures it moves, the stream shard's mark moves to the last change's sequence
number (conditioned on the mark read before), so a batch delivered again, whole or from a record on, skips what
was applied. Lambda reads a stream shard in order, so "at or below the mark" is "applied".
"""

import random
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from loyalty.domain import reports as rules
from loyalty.domain import segments
from loyalty.domain.engagement import local_day
from loyalty.domain.errors import InvalidInput, NotFound, Retryable
from loyalty.domain.program import Program
from loyalty.domain.reports import Change, Deltas
from loyalty.service.shops import Shops
from loyalty.store import members as member_store
from loyalty.store import reports as report_store
from loyalty.store import segments as segment_store
from loyalty.store.dynamo import Dynamo, Item, TransactionCancelled
from loyalty.store.keys import PROFILE_SK, member_pk

MAX_ACTIONS = 100  # DynamoDB's most per transaction
CHUNK = 250  # changes per transaction (halved when their figures, days and active members need more actions)
ATTEMPTS = 8
MAX_DAYS = 366  # days a daily report may span


UTC_ZONE = ZoneInfo("UTC")
WINBACK_DAYS = 30  # orders a win-back campaign is credited with: those within this many days of reaching the member


def member_of(change: Change) -> str | None:
    """The member partition whose RFM a change moves: an acting ledger entry's, an enrolment's, a member's order's."""
    if change.kind in ("ledger", "member") and change.old is None and change.new is not None:
        return change.pk
    if change.kind == "order":
        image = change.new if change.new is not None else change.old
        if image and image.get("member_id"):
            return member_pk(change.shop_id, str(image["member_id"]))
    return None


class MemberChange:
    """What one transaction's changes do to one member's RFM, and the win-back results they make."""

    def __init__(self, shop_id: str, before: Item | None) -> None:
        self.shop_id = shop_id
        self.before = before
        self.rfm = segment_store.rfm_of(before)
        self.start = self.rfm
        self.winback: dict[str, str] = dict((before or {}).get("winback") or {})
        self.credited: Deltas = {}

    def add(self, change: Change, moved: Deltas, tz: ZoneInfo) -> None:
        if change.kind == "member":
            enrolled = rules.day_of(change.new.get("enrolled_at") if change.new else None, tz)
            self.rfm = segments.advanced(self.rfm, enrolled=enrolled)
        elif change.kind == "ledger":
            self.rfm = segments.advanced(self.rfm, acted=rules.active_day(change, tz))
        elif change.kind == "order":
            orders = sum(v for (_, name), v in moved.items() if name == "orders")
            spend = sum(v for (_, name), v in moved.items() if name == "gmv")
            days = [day for (day, name) in moved if name in ("orders", "gmv")]
            if not days:
                return
            self.rfm = segments.advanced(self.rfm, orders=orders, spend=spend, ordered=max(days))
            for campaign, reached in self.winback.items():  # orders that followed a win-back
                if 0 <= (max(days) - date.fromisoformat(reached)).days <= WINBACK_DAYS:
                    for name, amount in (("orders", orders), ("gmv", spend)):
                        key = (max(days), f"{rules.WINBACK_PREFIX}{campaign}:{name}")
                        self.credited[key] = self.credited.get(key, 0) + amount

    def figures(self) -> Deltas:
        """Members counted active (the first day their RFM shows them acting), and win-back credits."""
        out = dict(self.credited)
        last, first = self.rfm.last_active, self.start.last_active
        if last is not None and (first is None or last > first):
            out[(last, "members_active")] = out.get((last, "members_active"), 0) + 1
        return out

    def item(self, pk: str, program: Program, today: date, *, now: datetime, shards: int) -> Item | None:
        """The RFM item to write, or None if nothing of it changed."""
        segment = segments.segment_of(self.rfm, today, program.segments, program.currency)
        before_segment = (self.before or {}).get("segment")
        if self.rfm == self.start and segment == before_segment:
            return None
        pending = (self.before or {}).get("reach") == segment  # entered earlier, still to be reached by the review
        return segment_store.rfm_item(
            self.shop_id,
            pk.split("#MEMBER#", 1)[1],
            self.rfm,
            before=self.before,
            segment=segment,
            today=today,
            rules=program.segments,
            timezone=program.timezone,
            winback=self.winback,
            now=now,
            shards=shards,
            # entered at_risk or dormant here (history streaming in, an import): the review reaches them tonight
            reach=segment if segment in segments.ENTERED_BY_TIME and (segment != before_segment or pending) else None,
        )


class NotAllApplied(Retryable):
    """Contention outlasted the attempts: the first `applied` changes of the batch are in, the rest are not."""

    def __init__(self, applied: int) -> None:
        super().__init__("figures: too much contention; the rest of the batch is to be delivered again")
        self.applied = applied


class Reports:
    def __init__(self, db: Dynamo, shops: Shops, *, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.shops = shops
        self.clock = clock

    # ---------------------------------------------------------------- keeping the figures

    def aggregate(self, stream_shard: str, changes: Sequence[Change]) -> None:
        """Apply a stream shard's batch of changes, in order. Raises NotAllApplied (how many of `changes` are in,
        so the caller reports the rest as failed) if contention outlasts the attempts."""
        for start in range(0, len(changes), CHUNK):
            self._apply(stream_shard, changes[start : start + CHUNK], applied_before=start)

    def _apply(self, stream_shard: str, chunk: Sequence[Change], *, applied_before: int) -> None:
        counted = [change for change in chunk if change.kind is not None]
        if not counted:
            return
        for _ in range(ATTEMPTS):
            mark, rfm_before = report_store.marks(self.db, stream_shard, {m for c in counted if (m := member_of(c))})
            fresh = [change for change in counted if change.seq > str((mark or {}).get("seq", ""))]
            if not fresh:
                return
            by_shop: dict[str, Deltas] = {}
            members: dict[str, MemberChange] = {}
            for change in fresh:
                program = self._program(change.shop_id)
                tz = ZoneInfo(program.timezone) if program else UTC_ZONE
                shop_deltas = by_shop.setdefault(change.shop_id, {})
                moved = rules.deltas(change, tz)
                rules.merge(shop_deltas, moved)
                member = member_of(change)
                if member is not None and program is not None:
                    seen = members.setdefault(member, MemberChange(change.shop_id, rfm_before.get(member)))
                    seen.add(change, moved, tz)
            writes = []
            now = self.clock()
            for pk, seen in members.items():
                program = self._program(seen.shop_id)
                assert program is not None
                written = seen.item(pk, program, local_day(now, program.timezone), now=now, shards=self.shops.shards)
                rules.merge(by_shop[seen.shop_id], seen.figures())
                if written is not None:
                    writes.append((written, seen.before))
            if report_store.items_touched(by_shop) + len(writes) + 1 > MAX_ACTIONS:
                middle = len(chunk) // 2  # many shops, days or members in one chunk: halve it
                self._apply(stream_shard, chunk[:middle], applied_before=applied_before)
                self._apply(stream_shard, chunk[middle:], applied_before=applied_before + middle)
                return
            tx = self.db.transaction()
            shard = random.randrange(report_store.REPORT_SHARDS)  # noqa: S311 - spreads writes, not a secret
            for shop_id, shop_deltas in sorted(by_shop.items()):
                report_store.add_figures(tx, shop_id, shard, shop_deltas)
            for item, before in writes:
                segment_store.put_rfm(tx, item, before=before)
            report_store.add_applied(tx, stream_shard, seq=fresh[-1].seq, before=mark)
            try:
                self.db.commit(tx)
                return
            except TransactionCancelled:
                continue  # an earlier delivery of these records moved the mark, or a run moved an RFM: read again
        raise NotAllApplied(applied_before)

    def _program(self, shop_id: str) -> Program | None:
        try:
            return self.shops.program(shop_id)
        except NotFound:
            return None  # a shop's items without its shop (none today): counted in UTC days

    # ---------------------------------------------------------------- reading them

    def summary(self, shop_id: str) -> dict[str, Any]:
        """The shop's figures to date; `members.active` is today's."""
        program = self.shops.program(shop_id)
        today = local_day(self.clock(), program.timezone)
        return self.overview(shop_id, today, today)[0]

    def daily(self, shop_id: str, first: date, last: date) -> dict[str, Any]:
        """One row per local day from `first` to `last`: each day's flows, and its levels at the day's end."""
        return self.overview(shop_id, first, last)[1]

    def overview(self, shop_id: str, first: date, last: date) -> tuple[dict[str, Any], dict[str, Any]]:
        """The summary and the daily rows from `first` to `last`, from one read of the totals and one of the days
        since `first` (a dashboard's page)."""
        if last < first:
            raise InvalidInput("until must not be before from", field="until")
        if (last - first).days >= MAX_DAYS:
            raise InvalidInput(f"at most {MAX_DAYS} days at a time", field="until")
        program = self.shops.program(shop_id)
        today = local_day(self.clock(), program.timezone)
        totals = report_store.totals(self.db, shop_id)
        rows = report_store.days_from(self.db, shop_id, min(first, today))
        later = [row for day, row in rows.items() if day > last]
        out = []
        day = last
        while day >= first:  # newest first, each day's levels from the next day's
            row = rows.get(day, {})
            flows = {name: value for name, value in row.items() if not rules.is_level(name)}
            figures = flows | rules.levels_at(totals, later)
            out.append({"day": day.isoformat(), **self._shaped(program, figures)})
            later.append(row)
            day -= timedelta(days=1)
        to_date = totals | {"members_active": rows.get(today, {}).get("members_active", 0)}
        summary = {"as_of": today.isoformat(), **self._shaped(program, to_date)}
        return summary, {"from": first.isoformat(), "until": last.isoformat(), "days": out[::-1]}

    def _shaped(self, program: Any, figures: dict[str, int]) -> dict[str, Any]:
        offset = program.points_offset
        return rules.shaped(
            figures,
            points_per_unit=offset.points_per_unit if offset else None,
            currency=program.currency,
            base_tier=program.tiers[0].name if program.tiers else None,
        )

    # ---------------------------------------------------------------- reconciliation

    def reconcile(self, shop_id: str, should_stop: Callable[[], bool] = lambda: False) -> dict[str, Any]:
        """The outstanding and pending points, the member count and the tier mix as the figures say, against the
        members' own balances read now (every member, through the MembersIndex: a read per 100 members). Drift
        is 0 when every change has been aggregated; changes still on the stream show as drift until they are."""
        self.shops.program(shop_id)  # NotFound for an unknown shop
        totals = report_store.totals(self.db, shop_id)
        counted = {"available": 0, "pending": 0, "members": 0}
        tiers: dict[str, int] = {}
        for page in member_store.members_pages(self.db, shop_id, limit=100):
            if should_stop():
                return {"shop_id": shop_id, "complete": False, "members_read": counted["members"]}
            keys = [(member_pk(shop_id, member_id), PROFILE_SK) for member_id, _ in page]
            for item in self.db.get_many(keys).values():
                counted["available"] += int(item.get("available", 0))
                counted["pending"] += int(item.get("pending", 0))
                counted["members"] += 1
                tier = str(item.get("tier") or "none")
                tiers[tier] = tiers.get(tier, 0) + 1
        figures_tiers = {
            name.removeprefix(rules.TIER_PREFIX): value
            for name, value in totals.items()
            if name.startswith(rules.TIER_PREFIX) and value
        }
        drift = {
            "points_outstanding": totals.get("points_outstanding", 0) - counted["available"],
            "points_pending": totals.get("points_pending", 0) - counted["pending"],
            "members": totals.get("members_total", 0) - counted["members"],
            "by_tier": {
                tier: figures_tiers.get(tier, 0) - tiers.get(tier, 0)
                for tier in sorted(set(tiers) | set(figures_tiers))
                if figures_tiers.get(tier, 0) != tiers.get(tier, 0)
            },
        }
        return {
            "shop_id": shop_id,
            "complete": True,
            "at": self.clock().isoformat(),
            "members_read": counted["members"],
            "balances": {"available": counted["available"], "pending": counted["pending"]},
            "figures": {
                "points_outstanding": totals.get("points_outstanding", 0),
                "points_pending": totals.get("points_pending", 0),
                "members": totals.get("members_total", 0),
            },
            "drift": drift,
            "in_balance": not any(drift.values()),  # by_tier lists only the tiers that drifted
        }
