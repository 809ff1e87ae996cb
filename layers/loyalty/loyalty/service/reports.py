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
from loyalty.domain.errors import InvalidInput, NotFound, Retryable
from loyalty.domain.reports import Change, Deltas
from loyalty.service.shops import Shops
from loyalty.store import members as member_store
from loyalty.store import reports as report_store
from loyalty.store.dynamo import Dynamo, TransactionCancelled
from loyalty.store.keys import PROFILE_SK, member_pk

MAX_ACTIONS = 100  # DynamoDB's most per transaction
CHUNK = 250  # changes per transaction (halved when their figures, days and active members need more actions)
ATTEMPTS = 8
MAX_DAYS = 366  # days a daily report may span


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
            acting = {change.pk for change in counted if change.kind == "ledger" and change.old is None}
            mark, active_before = report_store.marks(self.db, stream_shard, acting)
            fresh = [change for change in counted if change.seq > str((mark or {}).get("seq", ""))]
            if not fresh:
                return
            by_shop: dict[str, Deltas] = {}
            active: dict[str, date] = {}
            for change in fresh:
                tz = self._timezone(change.shop_id)
                shop_deltas = by_shop.setdefault(change.shop_id, {})
                for key, amount in rules.deltas(change, tz).items():
                    shop_deltas[key] = shop_deltas.get(key, 0) + amount
                day = rules.active_day(change, tz)
                before = active[change.pk].isoformat() if change.pk in active else active_before.get(change.pk)
                if day is not None and (before is None or day.isoformat() > before):
                    shop_deltas[(day, "members_active")] = shop_deltas.get((day, "members_active"), 0) + 1
                    active[change.pk] = day
            if report_store.items_touched(by_shop) + len(active) + 1 > MAX_ACTIONS:
                middle = len(chunk) // 2  # many shops, days or newly active members in one chunk: halve it
                self._apply(stream_shard, chunk[:middle], applied_before=applied_before)
                self._apply(stream_shard, chunk[middle:], applied_before=applied_before + middle)
                return
            tx = self.db.transaction()
            shard = random.randrange(report_store.REPORT_SHARDS)  # noqa: S311 - spreads writes, not a secret
            for shop_id, shop_deltas in sorted(by_shop.items()):
                report_store.add_figures(tx, shop_id, shard, shop_deltas)
            for pk, day in sorted(active.items()):
                report_store.add_active(tx, pk, day, before=active_before.get(pk))
            report_store.add_applied(tx, stream_shard, seq=fresh[-1].seq, before=mark)
            try:
                self.db.commit(tx)
                return
            except TransactionCancelled:
                continue  # an earlier delivery of these records moved the mark, or figures contended: read again
        raise NotAllApplied(applied_before)

    def _timezone(self, shop_id: str) -> ZoneInfo:
        try:
            return ZoneInfo(self.shops.program(shop_id).timezone)
        except NotFound:
            return ZoneInfo("UTC")  # a shop's items without its shop (none today): counted in UTC days

    # ---------------------------------------------------------------- reading them

    def summary(self, shop_id: str) -> dict[str, Any]:
        """The shop's figures to date; `members.active` is today's."""
        program = self.shops.program(shop_id)
        today = self.clock().astimezone(ZoneInfo(program.timezone)).date()
        totals = report_store.totals(self.db, shop_id)
        today_row = report_store.days_from(self.db, shop_id, today).get(today, {})
        totals["members_active"] = today_row.get("members_active", 0)
        return {"as_of": today.isoformat(), **self._shaped(program, totals)}

    def daily(self, shop_id: str, first: date, last: date) -> dict[str, Any]:
        """One row per local day from `first` to `last`: each day's flows, and its levels at the day's end."""
        if last < first:
            raise InvalidInput("until must not be before from", field="until")
        if (last - first).days >= MAX_DAYS:
            raise InvalidInput(f"at most {MAX_DAYS} days at a time", field="until")
        program = self.shops.program(shop_id)
        totals = report_store.totals(self.db, shop_id)
        rows = report_store.days_from(self.db, shop_id, first)
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
        return {"from": first.isoformat(), "until": last.isoformat(), "days": out[::-1]}

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
            "in_balance": not any(v for k, v in drift.items() if k != "by_tier") and not drift["by_tier"],
        }
