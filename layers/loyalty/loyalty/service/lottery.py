"""The points lottery (积分抽奖): a shop publishes a prize table; a member pays points to draw. Each draw is one
transaction: its idempotency record, the member's draw counters (daily and total limits), a unit of a limited
prize, the points paid (and a points prize granted), a coupon prize's claim, the report's counters, the draw and
its audit line. The draw's random value is chosen once and kept across retries, so contention never re-rolls it.
Rules in domain/lottery.py."""

import secrets
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from loyalty.domain import points as account
from loyalty.domain.coupons import Coupon
from loyalty.domain.engagement import day_starts, local_day
from loyalty.domain.errors import Conflict, NotFound, Retryable
from loyalty.domain.ledger import iso
from loyalty.domain.lottery import Lottery, LotteryRequest, Outcome, chain, day_digest, odds, pick, proof
from loyalty.service.cache import TTLCache
from loyalty.service.coupons import Coupons
from loyalty.service.idempotency import fingerprint, replay
from loyalty.service.mall import Mall
from loyalty.service.members import Members
from loyalty.service.shops import Shops
from loyalty.store import idempotency as idempotency_store
from loyalty.store import lottery as lottery_store
from loyalty.store import points as point_store
from loyalty.store.dynamo import Dynamo, Item, TransactionCancelled
from loyalty.store.events import Events
from loyalty.store.keys import digest, lottery_of

MAX_ATTEMPTS = 8


class Lotteries:
    def __init__(
        self,
        db: Dynamo,
        shops: Shops,
        members: Members,
        coupons: Coupons,
        mall: Mall,
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
        self.mall = mall
        self.events = events
        self.clock = clock
        self.shards = shards
        self._lotteries: TTLCache[Lottery | None] = TTLCache(cache_seconds)

    def create(self, shop_id: str, request: LotteryRequest) -> dict[str, Any]:
        program = self.shops.program(shop_id)  # 404 for a shop that is gone
        for prize in request.prizes:
            if prize.template_id is not None:
                self.coupons.template(shop_id, prize.template_id)
            if prize.item_id is not None:
                self.mall.item(shop_id, prize.item_id)
        lottery = Lottery(
            lottery_id="lot_" + secrets.token_hex(8),
            name=request.name,
            cost_points=request.cost_points,
            daily_limit=request.daily_limit,
            total_limit=request.total_limit,
            starts=request.from_,
            until=request.until,
            prizes=request.prizes,
            consolation=request.consolation,
            created_at=self.clock(),
        )
        first_day = local_day(max(lottery.created_at, lottery.starts or lottery.created_at), program.timezone)
        lottery_store.create(
            self.db,
            shop_id,
            lottery,
            first_day=first_day,
            first_due=day_starts(first_day + timedelta(days=1), program.timezone),
            now=lottery.created_at,
            shards=self.shards,
        )
        return self._view(lottery, set())

    def lottery(self, shop_id: str, lottery_id: str) -> Lottery:
        found = self._lotteries.get(f"{shop_id}|{lottery_id}", lambda: lottery_store.get(self.db, shop_id, lottery_id))
        if found is None:
            raise NotFound(f"lottery {lottery_id} not found", field="lottery_id")
        return found

    def view(self, shop_id: str, lottery_id: str) -> dict[str, Any]:
        """The lottery with the odds a draw applies now (a prize out of stock has none; the consolation has its)."""
        lottery = self.lottery(shop_id, lottery_id)
        return self._view(lottery, lottery_store.out_of_stock(self.db, shop_id, lottery))

    def report(self, shop_id: str, lottery_id: str) -> dict[str, Any]:
        self.lottery(shop_id, lottery_id)
        return {"lottery_id": lottery_id, **lottery_store.report(self.db, shop_id, lottery_id)}

    def audit(self, shop_id: str, lottery_id: str, day: date) -> dict[str, Any]:
        """A day's draws (the program's local day) as one digest, chained to the days before: as the nightly run
        recorded and published it once the day was over, or (for a day not yet digested) computed now, unchained."""
        self.lottery(shop_id, lottery_id)
        recorded = lottery_store.get_digest(self.db, shop_id, lottery_id, day)
        if recorded is not None:
            return {"lottery_id": lottery_id, **recorded}
        proofs = lottery_store.day_proofs(self.db, shop_id, lottery_id, day)
        return {"lottery_id": lottery_id, "day": day.isoformat(), "draws": len(proofs), "digest": day_digest(proofs)}

    def digest_day(self, item: Item, time: datetime) -> bool:
        """Once a lottery's day is over (the program's time zone), digest its draws, chain the digest to the days
        before (`chain = sha256(previous chain + day digest)`, starting from the prize table's digest), record it
        and publish it as lottery.digest, then file the next day (none after the lottery ends). Published before
        it is recorded: a run repeated after a failure publishes again (consumers dedupe on lottery and day), and
        the condition on the day filed records it once."""
        shop_id, lottery_id = lottery_of(item["PK"])
        lottery = self.lottery(shop_id, lottery_id)
        timezone = self.shops.program(shop_id).timezone
        state = lottery_store.chain_state(self.db, shop_id, lottery_id)
        if state is None:
            return False
        day, previous = state
        following = day + timedelta(days=1)
        if day_starts(following, timezone) > time:
            return False  # the day is not over where the shop is
        proofs = lottery_store.day_proofs(self.db, shop_id, lottery_id, day)
        digest_ = day_digest(proofs)
        record = {
            "day": day.isoformat(),
            "draws": len(proofs),
            "digest": digest_,
            "previous": previous,
            "chain": chain(previous, digest_),
        }
        self.events.publish("lottery.digest", {"shop_id": shop_id, "lottery_id": lottery_id, **record})
        over = lottery.until is not None and lottery.until <= day_starts(following, timezone)
        next_day = None if over else (following, day_starts(following + timedelta(days=1), timezone))
        tx = self.db.transaction()
        lottery_store.add_digest(tx, shop_id, lottery_id, record, following=next_day, now=time, shards=self.shards)
        try:
            self.db.commit(tx)
        except TransactionCancelled as exc:
            if exc.failed(1):
                return False  # recorded by another run meanwhile
            raise
        return True

    def draws(self, shop_id: str, member_id: str, *, limit: int, cursor: str | None) -> dict[str, Any]:
        self.members.member(shop_id, member_id)
        page, next_cursor = lottery_store.member_draws(self.db, shop_id, member_id, limit=limit, cursor=cursor)
        return {"items": page, "next": next_cursor}

    # ------------------------------------------------------------------ drawing

    def draw(self, shop_id: str, member_id: str, lottery_id: str, *, key: str) -> tuple[bool, dict[str, Any]]:
        """One paid draw: (created, answer). The same key answers the same prize; another key draws again."""
        request = fingerprint({"member_id": member_id, "lottery_id": lottery_id})
        draw_id = "drw_" + digest(f"{shop_id}|{member_id}|{key}")[:20]
        value = secrets.token_hex(32)  # chosen once: a retry after contention applies the same value
        unavailable: dict[str, str] = {}
        for _ in range(MAX_ATTEMPTS):
            lottery = self.lottery(shop_id, lottery_id)
            program = self.shops.program(shop_id)
            now = self.clock()
            day = local_day(now, program.timezone)
            state = lottery_store.draw_state(self.db, shop_id, member_id, lottery, day, key)
            if state.replay is not None:
                return False, replay(state.replay, request)
            why = lottery.why_not(now)
            if why:
                raise Conflict(why, field="lottery_id", code="not_eligible")
            member = state.member
            if member is None:
                raise NotFound(f"member {member_id} not found", field="member_id")
            if state.today >= lottery.daily_limit or (
                lottery.total_limit is not None and state.in_all >= lottery.total_limit
            ):
                raise Conflict(
                    "this member has drawn as often as the lottery allows", field="lottery_id", code="limit_reached"
                )
            for prize_id in state.out_of_stock:
                unavailable.setdefault(prize_id, "out of stock")
            outcome = pick(lottery, value, unavailable)
            prize = lottery.prize(outcome.prize)
            lots = point_store.lots(self.db, shop_id, member_id)
            move = account.spend(
                member.balance,
                lots,
                lottery.cost_points,
                reason="lottery.draw",
                reference=draw_id,
                at=now,
                detail={"lottery_id": lottery_id},
                field="lottery_id",
            )
            if prize.kind == "points" and prize.points:
                move = move + account.grant_behaviour(
                    program,
                    member.balance,
                    prize.points,
                    reason="lottery.prize",
                    reference=draw_id,
                    at=now,
                    detail={"lottery_id": lottery_id, "prize_id": prize.prize_id},
                )
            coupon = None
            if prize.template_id is not None:
                coupon = self.coupons.coupon_for(shop_id, prize.template_id, member_id, now)
            if prize.kind == "coupon" and coupon is None:
                unavailable[prize.prize_id] = "its coupon is out of stock or no longer given"
                continue
            answer = self._answer(lottery, draw_id, member_id, value, outcome, coupon.coupon if coupon else None, now)
            tx = self.db.transaction()
            idempotency_store.add_record(tx, shop_id, member_id, "draw", key, request=request, response=answer, now=now)
            limited = outcome.prize if prize.stock is not None else None
            actions = lottery_store.add_draw(tx, shop_id, lottery, answer, day=day, at=now, limited_prize=limited)
            point_store.add_move(
                tx,
                shop_id,
                member_id,
                move,
                guard=member.balance,
                now=now,
                shards=self.shards,
                remind_days=program.expiry_reminder_days,  # a points prize's lot is reminded of like any other
            )
            claim = self.coupons.add_claim(tx, shop_id, coupon, now) if coupon else None
            try:
                self.db.commit(tx)
            except TransactionCancelled as exc:
                if exc.failed(actions.daily) or (actions.total is not None and exc.failed(actions.total)):
                    raise Conflict(
                        "this member has drawn as often as the lottery allows", field="lottery_id", code="limit_reached"
                    ) from exc
                if actions.stock is not None and exc.failed(actions.stock):
                    unavailable[outcome.prize] = "out of stock"
                if claim is not None and claim.outcome(exc) in ("shard_empty", "limit"):
                    unavailable[outcome.prize] = "its coupon is out of stock or no longer given"
                continue  # a replay landed, the balance moved, a prize ran out: decide again with the same value
            if prize.kind == "goods":
                self.events.publish("lottery.goods.won", {"shop_id": shop_id, **answer})
            return True, answer
        raise Retryable("too much contention on this lottery or member; try again")

    @staticmethod
    def _answer(
        lottery: Lottery,
        draw_id: str,
        member_id: str,
        value: str,
        outcome: Outcome,
        coupon: Coupon | None,
        now: datetime,
    ) -> dict[str, Any]:
        prize = lottery.prize(outcome.prize)
        answer: dict[str, Any] = {
            "draw_id": draw_id,
            "lottery_id": lottery.lottery_id,
            "member_id": member_id,
            "prize_id": prize.prize_id,
            "kind": prize.kind,
            "cost_points": lottery.cost_points,
            "value": value,
            "roll": outcome.roll,
            "drawn": outcome.drawn,
            "proof": proof(lottery, draw_id, member_id, value, outcome),
            "at": iso(now),
        }
        if outcome.fell_back:
            answer["fell_back"] = outcome.fell_back
        if prize.kind == "points":
            answer["points"] = prize.points
        if prize.kind == "goods":
            answer["item_id"] = prize.item_id
        if coupon is not None:
            answer["coupon"] = {"code": coupon.code, "expires_at": iso(coupon.expires_at)}
        return answer

    @staticmethod
    def _view(lottery: Lottery, out_of_stock: set[str]) -> dict[str, Any]:
        chances = odds(lottery, out_of_stock)
        view: dict[str, Any] = {
            "lottery_id": lottery.lottery_id,
            "name": lottery.name,
            "cost_points": lottery.cost_points,
            "daily_limit": lottery.daily_limit,
            "total_limit": lottery.total_limit,
            "from": iso(lottery.starts) if lottery.starts else None,
            "until": iso(lottery.until) if lottery.until else None,
            "consolation": lottery.consolation,
            "table_digest": lottery.table_digest(),
            "prizes": [
                {
                    **prize.model_dump(exclude_none=True),
                    "chance": f"{chances[prize.prize_id][0]}/{chances[prize.prize_id][1]}",
                    "in_stock": prize.prize_id not in out_of_stock,
                }
                for prize in lottery.prizes
            ],
        }
        return {k: v for k, v in view.items() if v is not None}
