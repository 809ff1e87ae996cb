"""Engagement: the daily check-in, behaviours earning points, birthdays, and the tiers' monthly coupons (rules in
domain/engagement.py). Each grant of points is one transaction: its record (which makes it happen once), the cap
counters, and the points move."""

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from aws_lambda_powertools import Logger

from loyalty.domain import points as account
from loyalty.domain.engagement import (
    Cap,
    check_in_points,
    day_starts,
    local_day,
    next_birthday,
    next_month_start,
    streak,
    within_caps,
)
from loyalty.domain.errors import Conflict, NotFound, Retryable
from loyalty.domain.ledger import iso
from loyalty.domain.members import Member
from loyalty.domain.program import Program
from loyalty.service.coupons import Coupons
from loyalty.service.shops import Shops
from loyalty.store import engagement as engagement_store
from loyalty.store import members as member_store
from loyalty.store import orders as order_store
from loyalty.store import points as point_store
from loyalty.store import shops as shop_store
from loyalty.store.dynamo import Dynamo, Item, Transaction, TransactionCancelled
from loyalty.store.keys import digest, member_of, shop_of
from loyalty.store.queue import Queues

logger = Logger(child=True)

# Attempts at an optimistic write before a 503 to the caller.
MAX_ATTEMPTS = 8


class Engagement:
    def __init__(
        self, db: Dynamo, shops: Shops, coupons: Coupons, *, clock: Callable[[], datetime], shards: int
    ) -> None:
        self.db = db
        self.shops = shops
        self.coupons = coupons
        self.clock = clock
        self.shards = shards

    # ------------------------------------------------------------------ check-in

    def check_in(self, shop_id: str, member_id: str) -> dict[str, Any]:
        """Today's check-in: points, plus the streak's bonus. 409 already_checked_in for a second one today."""
        program = self.shops.program(shop_id)
        rule = program.check_in
        if rule is None:
            raise Conflict("this program has no check-in", field="check_in", code="not_offered")
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            today = local_day(now, program.timezone)
            member, last_streak = engagement_store.check_in_state(
                self.db, shop_id, member_id, today - timedelta(days=1)
            )
            if member is None:
                raise NotFound(f"member {member_id} not found", field="member_id")
            days = streak(last_streak)
            earned = check_in_points(rule, days)
            record = {"date": today.isoformat(), "streak": days, "points": earned.total, "at": iso(now)}
            detail = {"date": today.isoformat(), "streak": days, "base": earned.base, "streak_bonus": earned.bonus}
            tx = self.db.transaction()
            engagement_store.add_check_in(tx, shop_id, member_id, today, record)
            reference = f"check-in-{today.isoformat()}"
            self._add_points(tx, shop_id, program, member, earned.total, "check_in", reference, now, detail)
            try:
                self.db.commit(tx)
            except TransactionCancelled as exc:
                if exc.failed(0):
                    raise Conflict(
                        f"member {member_id} has checked in on {today.isoformat()} already",
                        field="member_id",
                        code="already_checked_in",
                    ) from exc
                continue  # the member's balance moved meanwhile: read again
            return {"member_id": member_id, **record, "bonus": earned.bonus}
        raise Retryable("too much contention on this member; try again")

    def check_ins(self, shop_id: str, member_id: str, month: str | None) -> dict[str, Any]:
        """A month's check-ins (this month by default, in the program's time zone)."""
        program = self.shops.program(shop_id)
        month = month or local_day(self.clock(), program.timezone).isoformat()[:7]
        items = engagement_store.check_ins(self.db, shop_id, member_id, month)
        days = [{"date": item["date"], "streak": item["streak"], "points": item["points"]} for item in items]
        return {"member_id": member_id, "month": month, "items": days}

    # ------------------------------------------------------------------ behaviours

    def activity(self, shop_id: str, member_id: str, behaviour: str, reference: str) -> tuple[bool, dict[str, Any]]:
        """Points for a behaviour, once per (behaviour, reference), or once ever for a `once` behaviour, within its
        caps. Returns (new, answer); an activity seen before answers as it did the first time."""
        program = self.shops.program(shop_id)
        rule = program.behaviours.get(behaviour)
        if rule is None:
            raise NotFound(f"this program gives no points for {behaviour!r}", field="behaviour")
        key = None if rule.once else reference
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            today = local_day(now, program.timezone)
            state = engagement_store.activity_state(self.db, shop_id, member_id, behaviour, key, today)
            if state.member is None:
                raise NotFound(f"member {member_id} not found", field="member_id")
            if state.earlier is not None:
                return False, dict(state.earlier["response"])
            caps = [
                Cap(name="daily_cap", limit=rule.daily_cap, used=state.earned_today(behaviour))
                if rule.daily_cap is not None
                else None,
                Cap(name="monthly_cap", limit=rule.monthly_cap, used=state.earned_this_month(behaviour))
                if rule.monthly_cap is not None
                else None,
                Cap(name="behaviour_monthly_cap", limit=program.behaviour_monthly_cap, used=state.earned_this_month())
                if program.behaviour_monthly_cap is not None
                else None,
            ]
            granted = within_caps(rule.points, [cap for cap in caps if cap is not None])
            detail: dict[str, Any] = {"behaviour": behaviour, "configured": rule.points}
            if granted.capped_by:
                detail["capped_by"] = granted.capped_by
            response = {
                "member_id": member_id,
                "behaviour": behaviour,
                "reference": reference,
                "points": granted.points,
                "capped": granted.capped_by is not None,
                "at": iso(now),
            }
            tx = self.db.transaction()
            engagement_store.add_activity(
                tx,
                shop_id,
                member_id,
                behaviour,
                key,
                points=granted.points,
                caps={
                    "daily": rule.daily_cap,
                    "monthly": rule.monthly_cap,
                    "all_monthly": program.behaviour_monthly_cap,
                },
                day=today,
                response=response,
                now=now,
            )
            reason, grant_reference = f"behaviour.{behaviour}", f"{behaviour}-{reference}"
            self._add_points(tx, shop_id, program, state.member, granted.points, reason, grant_reference, now, detail)
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                continue  # recorded meanwhile, a counter moved or the balance did: read again and decide again
            return True, response
        raise Retryable("too much contention on this member; try again")

    # ------------------------------------------------------------------ birthdays (the birthday run)

    def birthday(self, item: Item, time: datetime) -> bool:
        """Celebrate a birthday the due index lists: the tier's birthday coupons (each claim idempotent on its own
        key), then the birthday points and the next birthday filed, in one transaction conditioned on this birthday
        still being the one filed, so a repeated run celebrates it once."""
        shop_id, member_id = member_of(item["PK"])
        program = self.shops.program(shop_id)
        member, day = member_store.birthday_state(self.db, shop_id, member_id)
        if member is None or member.profile.birthday is None or day is None:
            return False
        if day_starts(day, program.timezone) > time:
            return False  # not begun yet where the shop is (the index lags, or the time zone changed)
        tier = program.tier_of(member.tier.tier)
        for template_id in tier.birthday_coupons if tier else []:
            key = f"birthday-{day.year}-{digest(f'{member_id}|{template_id}')[:32]}"
            try:
                self.coupons.claim(shop_id, member_id, template_id, key=key)
            except (Conflict, NotFound) as exc:  # out of stock, over the limit, gone: the points still come
                logger.warning("birthday coupon not granted", extra={"shop_id": shop_id, "code": exc.code})
        points = program.birthday.points if program.birthday else 0
        following = next_birthday(member.profile.birthday, day + timedelta(days=1))
        for _ in range(MAX_ATTEMPTS):
            tx = self.db.transaction()
            member_store.add_next_birthday(
                tx,
                shop_id,
                member_id,
                following,
                day_starts(following, program.timezone),
                now=time,
                shards=self.shards,
                replacing=day,
            )
            if points:
                detail = {"birthday": day.isoformat()}
                self._add_points(tx, shop_id, program, member, points, "birthday", f"birthday-{day.year}", time, detail)
            try:
                self.db.commit(tx)
            except TransactionCancelled as exc:
                if exc.failed(0):
                    return False  # celebrated already
                member = member_store.get_member(self.db, shop_id, member_id) or member  # its balance moved
                continue
            return True
        raise Retryable(f"member {member_id}: too much contention")

    # ------------------------------------------------------------------ monthly coupons (the monthly run)

    def monthly_coupons(self, item: Item, time: datetime, queues: Queues) -> bool:
        """Give each tier's monthly coupons for the 1st the due index lists. The shop's members are read from the
        MembersIndex a page at a time; each page's members of a giving tier become a bulk grant of each of the
        tier's templates (queued; CouponGrantsFunction claims). Each claim is keyed by month, template and member,
        so a repeated run, or a member listed on two pages, gets each month's coupon once. Then the next 1st is
        filed, conditioned on this one still being filed."""
        shop_id = shop_of(item["PK"])
        program = self.shops.program(shop_id)
        month = shop_store.filed_month(self.db, shop_id)  # the index holds keys only
        if month is None:
            return False
        if day_starts(month, program.timezone) > time:
            return False  # not begun yet where the shop is (the index lags, or the time zone changed)
        giving = {tier.name: tier.monthly_coupons for tier in program.tiers if tier.monthly_coupons}
        if giving:
            for page in member_store.members_pages(self.db, shop_id):
                self._grant_monthly(shop_id, program, month, page, giving, queues)
        following = next_month_start(month)
        tx = self.db.transaction()
        starts = day_starts(following, program.timezone)
        shop_store.add_next_month(tx, shop_id, following, starts, now=time, shards=self.shards, replacing=month)
        try:
            self.db.commit(tx)
        except TransactionCancelled as exc:
            if exc.failed(0):
                return False  # another run handled this month meanwhile
            raise
        return True

    def _grant_monthly(
        self,
        shop_id: str,
        program: Program,
        month: date,
        page: list[tuple[str, str | None]],
        giving: dict[str, list[str]],
        queues: Queues,
    ) -> None:
        by_tier: dict[str, list[str]] = {}
        for member_id, stored_tier in page:
            tier = program.tier_of(stored_tier)
            if tier is not None and tier.name in giving:
                by_tier.setdefault(tier.name, []).append(member_id)
        for tier_name, member_ids in by_tier.items():
            for template_id in giving[tier_name]:
                claims = f"monthly-{month:%Y-%m}-{digest(template_id)[:16]}"
                key = f"{claims}-{digest('|'.join(member_ids))[:32]}"
                try:
                    self.coupons.queue_grant(shop_id, template_id, member_ids, key=key, queues=queues, claims=claims)
                except (Conflict, NotFound) as exc:  # the template is gone: the other templates still go
                    logger.warning("monthly coupons not granted", extra={"shop_id": shop_id, "code": exc.code})

    # ------------------------------------------------------------------ referrals (with the activation run)

    def referral(self, item: Item, time: datetime) -> bool:
        """Reward a referral whose referee's first order is past its return window: both members in one
        transaction, or neither if that order was refunded or cancelled meanwhile (the referral is then void).
        The referrer's reward counts against `monthly_cap` (the referee's is never held back for it)."""
        shop_id, referee_id = member_of(item["PK"])
        program = self.shops.program(shop_id)
        month = local_day(time, program.timezone).isoformat()[:7]
        for _ in range(MAX_ATTEMPTS):
            state = engagement_store.referral_state(self.db, shop_id, referee_id, month)
            referral = state.referral
            if referral is None or referral.get("status") != "waiting" or "order_id" not in referral:
                return False
            order = order_store.get_order(self.db, shop_id, str(referral["order_id"]))
            rule = program.referral
            tx = self.db.transaction()
            voided = order is None or order.cancelled or order.refunded > 0 or rule is None
            engagement_store.close_referral(tx, shop_id, referee_id, "void" if voided else "rewarded", time)
            if not voided and rule is not None and state.referee is not None:
                detail = {"referrer": str(referral["referrer"]), "order_id": str(referral["order_id"])}
                reference = f"referral-{referee_id}"
                points = rule.referee_points
                self._add_points(tx, shop_id, program, state.referee, points, "referral", reference, time, detail)
                capped = rule.monthly_cap is not None and state.rewarded_this_month >= rule.monthly_cap
                if state.referrer is not None and not capped:
                    referrer_id = state.referrer.profile.member_id
                    engagement_store.add_referral_reward_count(tx, shop_id, referrer_id, month, rule.monthly_cap)
                    detail = {"referee": referee_id, "order_id": str(referral["order_id"])}
                    points = rule.referrer_points
                    self._add_points(tx, shop_id, program, state.referrer, points, "referral", reference, time, detail)
            try:
                self.db.commit(tx)
            except TransactionCancelled as exc:
                if exc.failed(0):
                    return False  # closed already
                continue  # a balance or the month's count moved: read again
            return not voided
        raise Retryable(f"referral of {referee_id}: too much contention")

    def _add_points(
        self,
        tx: Transaction,
        shop_id: str,
        program: Program,
        member: Member,
        points: int,
        reason: str,
        reference: str,
        now: datetime,
        detail: dict[str, Any],
    ) -> None:
        """Engagement points are available at once, expiring by the program's policy for behaviour points."""
        move = account.grant_behaviour(
            program, member.balance, points, reason=reason, reference=reference, at=now, detail=detail
        )
        point_store.add_move(
            tx,
            shop_id,
            member.profile.member_id,
            move,
            guard=member.balance,
            now=now,
            shards=self.shards,
            remind_days=program.expiry_reminder_days,
        )
