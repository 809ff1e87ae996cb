"""Order events settled exactly once (payment, refunds, cancellation), and pending points activated."""

import contextlib
from collections.abc import Callable
from datetime import datetime

from loyalty.domain.coupons import Coupon, normalise_code
from loyalty.domain.errors import DomainError, Retryable
from loyalty.domain.ledger import Balance, Lot
from loyalty.domain.members import Member
from loyalty.domain.orders import OrderEvent, OrderPaid, OrderState
from loyalty.domain.program import Program
from loyalty.domain.settle import Settlement, activate, is_duplicate, settle
from loyalty.domain.tiers import MemberTier
from loyalty.domain.wallet import InsufficientBalance, WalletBalance
from loyalty.service.members import Members
from loyalty.service.shops import Shops
from loyalty.service.tiers import Tiers
from loyalty.store import coupons as coupon_store
from loyalty.store import members as member_store
from loyalty.store import orders as order_store
from loyalty.store import points as point_store
from loyalty.store import wallet as wallet_store
from loyalty.store.dynamo import Dynamo, Transaction, TransactionCancelled

# Attempts at an optimistic write before giving the event back to the queue.
MAX_ATTEMPTS = 8


class Orders:
    def __init__(
        self,
        db: Dynamo,
        shops: Shops,
        members: Members,
        tiers: Tiers,
        *,
        clock: Callable[[], datetime],
        shards: int,
    ) -> None:
        self.db = db
        self.shops = shops
        self.members = members
        self.tiers = tiers
        self.clock = clock
        self.shards = shards

    def apply(self, shop_id: str, event: OrderEvent) -> str:
        """Settle one order event exactly once. Returns 'applied', 'recorded' (waits for its payment) or
        'duplicate'. Raises InvalidInput for events that can never apply, Retryable for ones that may later."""
        return self.settle_event(shop_id, event)[0]

    def settle_event(
        self, shop_id: str, event: OrderEvent, *, also: Callable[[Transaction], object] | None = None
    ) -> tuple[str, OrderState]:
        """`apply`, answering the order's state too (as this event left it, or as found for a duplicate). `also`
        adds the caller's record to the event's transaction (an API request's idempotency key)."""
        program = self.shops.program(shop_id)
        order_id = event.data.order_id
        payer = ""
        if isinstance(event, OrderPaid):
            if event.data.member_id is None:  # a platform's order: find (or enrol) the member it belongs to
                assert event.data.customer is not None
                resolved = self.members.for_customer(shop_id, event.data.customer)
                event = event.model_copy(update={"data": event.data.model_copy(update={"member_id": resolved})})
            payer = event.data.member_id or ""
        touches_wallet = isinstance(event, OrderPaid) and (event.data.top_up or event.data.wallet_used is not None)
        if isinstance(event, OrderPaid) and not event.data.points_used:
            # Fast path for a new order: one write, conditioned on the order not existing yet. Without tiers it
            # assumes a member without debt (the write checks); with tiers, a birthday multiplier or referrals, the
            # settlement depends on the member's tier state, birthday or first order, so the member is read first
            # (one read, one write).
            # Coupons are read by code (one read each); the write requires each still available. A payment with the
            # wallet, or a top-up, reads the wallet (one read; the write requires it unchanged). Spending points
            # needs the lots: the careful path.
            now = self.clock()
            needs_member = bool(program.tiers) or program.birthday is not None or program.referral is not None
            member = member_store.get_member(self.db, shop_id, payer) if needs_member else None
            wallet = wallet_store.get_wallet(self.db, shop_id, payer) if touches_wallet else None
            wallet_lots = self._bonus_lots(shop_id, payer, wallet, OrderState(order_id=order_id), event)
            settlement = None
            if member is not None or not needs_member:
                balance, tier = (member.balance, member.tier) if member else (Balance(), MemberTier())
                # A refusal may be of a replay (a top-up now over the wallet's maximum) or of a payment already
                # undone (a cancelled order draws nothing): the careful path reads the order and decides.
                with contextlib.suppress(DomainError):
                    settlement = settle(
                        OrderState(order_id=order_id),
                        event,
                        program,
                        now=now,
                        balance=balance,
                        lots=[],
                        member_tier=tier,
                        coupons=self._coupons(shop_id, event),
                        birthday=member.profile.birthday if member else None,
                        wallet=wallet,
                        wallet_lots=wallet_lots,
                    )
            if settlement is not None:
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
                        referral_due=_referral_due(program, member, event, settlement),
                        also=also,
                    )
                    if settlement.tier_change:
                        self.tiers.announce(shop_id, payer, settlement.tier_change)
                    return "applied", settlement.order
                except TransactionCancelled:
                    pass  # the order exists already, or the member is missing, in debt or changed: the careful path
        for _ in range(MAX_ATTEMPTS):
            now = self.clock()
            previous = order_store.get_order(self.db, shop_id, order_id)
            state = previous or OrderState(order_id=order_id)
            if is_duplicate(state, event, program.currency):
                return "duplicate", state
            member_id = state.member_id or payer or None
            balance, lots, tier, birthday, member = Balance(), [], MemberTier(), None, None
            spends = isinstance(event, OrderPaid) and event.data.points_used > 0
            if member_id is not None:
                member = member_store.get_member(self.db, shop_id, member_id)
                if member is None:
                    raise Retryable(f"member {member_id} is not enrolled")
                balance, tier, birthday = member.balance, member.tier, member.profile.birthday
                if state.credited > state.pending or spends:  # lots may be drawn from
                    lots = point_store.lots(self.db, shop_id, member_id)
            coupons = self._coupons(shop_id, event) if not state.paid else {}
            wallet, wallet_lots = None, []
            if member_id is not None and (touches_wallet or state.wallet is not None):
                wallet = wallet_store.get_wallet(self.db, shop_id, member_id)
                wallet_lots = self._bonus_lots(shop_id, member_id, wallet, state, event)
            try:
                settlement = settle(
                    state,
                    event,
                    program,
                    now=now,
                    balance=balance,
                    lots=lots,
                    member_tier=tier,
                    coupons=coupons,
                    birthday=birthday,
                    wallet=wallet,
                    wallet_lots=wallet_lots,
                )
            except InsufficientBalance as exc:
                # Events of different orders may arrive out of order: the top-up that funds this payment (or the
                # refund that gave the wallet back) may not have been delivered yet. Retried, then parked.
                raise Retryable(
                    f"{exc.message}; retried in case the top-up that covers it is yet to arrive",
                    field=exc.field,
                    code=exc.code,
                ) from exc
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
                    referral_due=_referral_due(program, member, event, settlement),
                    also=also,
                )
            except TransactionCancelled:
                continue  # another event for this order or member won the race: re-read and settle again
            if settlement.tier_change and member_id:
                self.tiers.announce(shop_id, member_id, settlement.tier_change)
            return ("applied" if settlement.order.paid else "recorded"), settlement.order
        raise Retryable(f"order {order_id}: too much contention")

    def activate(self, shop_id: str, order_id: str, time: datetime) -> bool:
        """Make an order's pending points available once its return window has closed; False if nothing is due."""
        program = self.shops.program(shop_id)
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

    def _bonus_lots(
        self, shop_id: str, member_id: str, wallet: WalletBalance | None, state: OrderState, event: OrderEvent
    ) -> list[Lot]:
        """The wallet's bonus lots, read only when the event may take bonus (one Query): a payment with the wallet,
        or a top-up's refund or cancellation, while the wallet holds some bonus."""
        if wallet is None or wallet.bonus <= 0:
            return []
        paying = isinstance(event, OrderPaid) and event.data.wallet_used is not None
        forfeiting = state.top_up and not isinstance(event, OrderPaid)
        return wallet_store.bonus_lots(self.db, shop_id, member_id) if paying or forfeiting else []

    def _coupons(self, shop_id: str, event: OrderEvent) -> dict[str, Coupon]:
        """The coupons a payment names, as found for its member (one read per code)."""
        if not isinstance(event, OrderPaid) or not event.data.coupon_codes:
            return {}
        codes = [normalise_code(code) for code in event.data.coupon_codes]
        return coupon_store.find_coupons(self.db, shop_id, event.data.member_id or "", codes)


def _referral_due(
    program: Program, member: Member | None, event: OrderEvent, settlement: Settlement
) -> datetime | None:
    """When a referred member's first payment makes their referral due: as its return window closes (a refund or
    cancellation before then voids the rewards). None for every other event."""
    order = settlement.order
    if program.referral is None or member is None or member.referrer is None or member.first_order is not None:
        return None
    if not isinstance(event, OrderPaid) or not order.paid or order.activates_at is None:
        return None
    return order.activates_at
