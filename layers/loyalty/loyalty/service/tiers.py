"""Tier reviews (keep, one down, or recompute when a tier's validity ends) and tier decisions announced:
tier.changed published after the commit, or left in the outbox for the review run. Upgrades happen as orders
settle (domain/settle.py)."""

from datetime import datetime

from aws_lambda_powertools import Logger

from loyalty.domain.errors import Retryable
from loyalty.domain.tiers import TierChange, review, window_total
from loyalty.service.shops import Shops
from loyalty.store import members as member_store
from loyalty.store.dynamo import Dynamo, TransactionCancelled
from loyalty.store.events import Events
from loyalty.store.keys import member_of, member_pk, tier_decision_sk

logger = Logger(child=True)

# Attempts at an optimistic write before leaving a member for the next run.
MAX_ATTEMPTS = 8


class Tiers:
    def __init__(self, db: Dynamo, shops: Shops, events: Events, *, shards: int) -> None:
        self.db = db
        self.shops = shops
        self.events = events
        self.shards = shards

    def review(self, shop_id: str, member_id: str, time: datetime) -> bool:
        """Review a member whose tier validity has ended, by the program's downgrade policy."""
        program = self.shops.program(shop_id)
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
            update = member_store.TierUpdate(day=None, delta=0, change=change, expect_rev=state.rev, shards=self.shards)
            member_store.add_member_update(tx, shop_id, member_id, now=time, tier=update)
            member_store.add_tier_decision(tx, shop_id, member_id, change, self.shards, now=time)
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                continue  # an order moved the member's tier state meanwhile: decide again
            self.announce(shop_id, member_id, change)
            return True
        raise Retryable(f"member {member_id}: too much contention")

    def announce(self, shop_id: str, member_id: str, change: TierChange) -> None:
        """Publish tier.changed now; if that fails the decision stays in the outbox for the review run."""
        if not change.moved:
            return
        try:
            self._publish(shop_id, member_id, change)
        except Exception:  # the outbox keeps it: never fail a settled event for a notification
            logger.warning("tier.changed left in the outbox", extra={"shop_id": shop_id})

    def publish_decision(self, pk: str, sk: str) -> bool:
        """Publish a decision still in the outbox; False if it was published since it was listed."""
        change = member_store.unpublished_tier_decision(self.db, pk, sk)
        if change is None:
            return False
        self._publish(*member_of(pk), change)
        return True

    def _publish(self, shop_id: str, member_id: str, change: TierChange) -> None:
        self.events.publish(
            "tier.changed", {"shop_id": shop_id, "member_id": member_id, **change.model_dump(mode="json")}
        )
        self.db.update(member_pk(shop_id, member_id), tier_decision_sk(change), "REMOVE DuePK, DueSK")
