"""Where the capabilities are put together: one `Services` and one queue client per Lambda container (and per
local-stack process), made on first use.

Each capability is built (and its module imported) only when a handler first asks for it, with the capabilities it
depends on passed in explicitly: the orders function never imports coupon templates' routes, the webhook
mappers or the scheduled runs, so its cold start pays only for what it uses.
"""

import os
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache, cached_property
from typing import TYPE_CHECKING

from loyalty.store.dynamo import Dynamo
from loyalty.store.queue import Queues

if TYPE_CHECKING:
    from loyalty.service.access import Access
    from loyalty.service.audit import Audit
    from loyalty.service.cards import Cards
    from loyalty.service.coupons import Coupons
    from loyalty.service.engagement import Engagement
    from loyalty.service.exports import Exports
    from loyalty.service.imports import Imports
    from loyalty.service.lottery import Lotteries
    from loyalty.service.mall import Mall
    from loyalty.service.members import Members
    from loyalty.service.orders import Orders
    from loyalty.service.platforms import Platforms
    from loyalty.service.points import Points
    from loyalty.service.privacy import Privacy
    from loyalty.service.reports import Reports
    from loyalty.service.runs import Runs
    from loyalty.service.segments import Segments
    from loyalty.service.shops import Shops
    from loyalty.service.tiers import Tiers
    from loyalty.service.tokens import MemberTokens
    from loyalty.service.wallet import Wallet
    from loyalty.store.events import Events


def now_utc() -> datetime:
    return datetime.now(UTC)


class Services:
    def __init__(
        self,
        db: Dynamo | None = None,
        *,
        shards: int | None = None,
        cache_seconds: float | None = None,
        clock: Callable[[], datetime] = now_utc,
    ) -> None:
        self.db = db or Dynamo()
        # Due work is spread over this many partitions per day (template.yaml's DUE_SHARDS).
        self.shards = shards or int(os.environ.get("DUE_SHARDS", "8"))
        # How long a container trusts its copy of a shop, program, integration (a change shows within this).
        self.cache_seconds = (
            cache_seconds if cache_seconds is not None else float(os.environ.get("CONFIG_CACHE_SECONDS", "60"))
        )
        self.clock = clock

    @cached_property
    def events(self) -> "Events":
        from loyalty.store.events import Events

        return Events()

    @cached_property
    def access(self) -> "Access":
        from loyalty.service.access import Access

        return Access(self.db, clock=self.clock, cache_seconds=self.cache_seconds)

    @cached_property
    def tokens(self) -> "MemberTokens":
        from loyalty.service.tokens import MemberTokens, SigningKeys

        return MemberTokens(SigningKeys(), clock=self.clock)

    @cached_property
    def dashboard_links(self) -> "MemberTokens":
        from loyalty.service.tokens import DASHBOARD, MemberTokens

        return MemberTokens(self.tokens.keys, clock=self.clock, scope=DASHBOARD)

    @cached_property
    def audit(self) -> "Audit":
        from loyalty.service.audit import Audit

        return Audit(self.db, self.shops, clock=self.clock)

    @cached_property
    def shops(self) -> "Shops":
        from loyalty.service.shops import Shops

        return Shops(self.db, clock=self.clock, cache_seconds=self.cache_seconds, shards=self.shards)

    @cached_property
    def members(self) -> "Members":
        from loyalty.service.members import Members

        return Members(self.db, self.shops, clock=self.clock, shards=self.shards)

    @cached_property
    def imports(self) -> "Imports":
        from loyalty.service.imports import Imports

        return Imports(self.db, self.members, clock=self.clock, shards=self.shards)

    @cached_property
    def privacy(self) -> "Privacy":
        from loyalty.service.privacy import Privacy

        return Privacy(self.db, self.members, self.shops, self.events, clock=self.clock, shards=self.shards)

    @cached_property
    def reports(self) -> "Reports":
        from loyalty.service.reports import Reports

        return Reports(self.db, self.shops, clock=self.clock)

    @cached_property
    def exports(self) -> "Exports":
        from loyalty.service.exports import Exports

        return Exports(self.db)

    @cached_property
    def segments(self) -> "Segments":
        from loyalty.service.segments import Segments

        return Segments(self.db, self.shops, self.coupons, self.events, clock=self.clock, shards=self.shards)

    @cached_property
    def points(self) -> "Points":
        from loyalty.service.points import Points

        return Points(self.db, self.members, self.events, clock=self.clock, shards=self.shards)

    @cached_property
    def tiers(self) -> "Tiers":
        from loyalty.service.tiers import Tiers

        return Tiers(self.db, self.shops, self.events, shards=self.shards)

    @cached_property
    def orders(self) -> "Orders":
        from loyalty.service.orders import Orders

        return Orders(self.db, self.shops, self.members, self.tiers, clock=self.clock, shards=self.shards)

    @cached_property
    def wallet(self) -> "Wallet":
        from loyalty.service.wallet import Wallet

        return Wallet(self.db, self.shops, self.members, self.orders, self.events, clock=self.clock, shards=self.shards)

    @cached_property
    def cards(self) -> "Cards":
        from loyalty.service.cards import Cards
        from loyalty.store.cards import CardSecret

        return Cards(self.db, self.shops, self.members, CardSecret(), clock=self.clock, shards=self.shards)

    @cached_property
    def mall(self) -> "Mall":
        from loyalty.service.mall import Mall

        return Mall(
            self.db,
            self.shops,
            self.members,
            self.coupons,
            self.events,
            clock=self.clock,
            shards=self.shards,
            cache_seconds=self.cache_seconds,
        )

    @cached_property
    def lotteries(self) -> "Lotteries":
        from loyalty.service.lottery import Lotteries

        return Lotteries(
            self.db,
            self.shops,
            self.members,
            self.coupons,
            self.mall,
            self.events,
            clock=self.clock,
            shards=self.shards,
            cache_seconds=self.cache_seconds,
        )

    @cached_property
    def coupons(self) -> "Coupons":
        from loyalty.service.coupons import Coupons

        return Coupons(
            self.db,
            self.shops,
            self.members,
            self.events,
            clock=self.clock,
            shards=self.shards,
            cache_seconds=self.cache_seconds,
        )

    @cached_property
    def engagement(self) -> "Engagement":
        from loyalty.service.engagement import Engagement

        return Engagement(self.db, self.shops, self.coupons, clock=self.clock, shards=self.shards)

    @cached_property
    def platforms(self) -> "Platforms":
        from loyalty.service.platforms import Platforms

        return Platforms(self.db, clock=self.clock, cache_seconds=self.cache_seconds)

    @cached_property
    def runs(self) -> "Runs":
        from loyalty.service.runs import Runs

        return Runs(self.db, clock=self.clock, shards=self.shards)


@cache
def services() -> Services:
    return Services()


@cache
def queues() -> Queues:
    return Queues()


def reset() -> None:
    """Forget the container's services and clients (tests, and the local stack, between stacks)."""
    services.cache_clear()
    queues.cache_clear()
