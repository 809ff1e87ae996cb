"""A member's wallet (stored value): its balance and ledger, top-ups from the shop's backend, what the member has
saved, and for the scheduled runs its bonus lots lapsing and the reminders before. Payments with the wallet and
top-ups from a platform are order events (service/orders.py); gift cards are service/cards.py."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from loyalty.domain.errors import Conflict, InvalidInput, NotFound, Retryable
from loyalty.domain.ledger import iso
from loyalty.domain.money import format_amount, parse_amount
from loyalty.domain.orders import OrderLine, OrderPaid, OrderPaidData, OrderState
from loyalty.domain.wallet import WalletEntry, lapse_bonus
from loyalty.service.idempotency import fingerprint, replay
from loyalty.service.members import Members
from loyalty.service.orders import Orders
from loyalty.service.reminders import publish_once
from loyalty.service.shops import Shops
from loyalty.store import idempotency as idempotency_store
from loyalty.store import orders as order_store
from loyalty.store import wallet as wallet_store
from loyalty.store.dynamo import Dynamo, Item, Transaction, TransactionCancelled
from loyalty.store.events import Events
from loyalty.store.keys import member_of

TOP_UP_SKU = "wallet-top-up"
MAX_ATTEMPTS = 8


class Wallet:
    def __init__(
        self,
        db: Dynamo,
        shops: Shops,
        members: Members,
        orders: Orders,
        events: Events,
        *,
        clock: Callable[[], datetime],
        shards: int,
    ) -> None:
        self.db = db
        self.shops = shops
        self.members = members
        self.orders = orders
        self.events = events
        self.clock = clock
        self.shards = shards

    def balance(self, shop_id: str, member_id: str) -> dict[str, str]:
        currency = self.shops.program(shop_id).currency
        self.members.member(shop_id, member_id)
        wallet = wallet_store.get_wallet(self.db, shop_id, member_id)
        return {
            "currency": currency,
            "principal": format_amount(wallet.principal, currency),
            "bonus": format_amount(wallet.bonus, currency),
            "total": format_amount(wallet.total, currency),
        }

    def ledger(self, shop_id: str, member_id: str, *, limit: int, cursor: str | None) -> dict[str, Any]:
        currency = self.shops.program(shop_id).currency
        self.members.member(shop_id, member_id)
        entries, next_cursor = wallet_store.ledger_page(self.db, shop_id, member_id, limit=limit, cursor=cursor)
        return {"items": [_entry_view(entry, currency) for entry in entries], "next": next_cursor}

    def lapse(self, item: Item, time: datetime) -> bool:
        """Lapse one bonus lot past its expiry, as the due index lists it (the expiry run hands it here): the lot,
        the wallet (which must still hold it) and a `bonus.expired` entry, in one transaction. False if nothing
        was due (spent since, lapsed by an earlier run, or not yet expired)."""
        pk, sk = item["PK"], item["SK"]
        shop_id, member_id = member_of(pk)
        lot = wallet_store.bonus_lot_from_index(item)
        for _ in range(MAX_ATTEMPTS):
            move = lapse_bonus(lot, time) if lot else None
            if lot is None or move is None:
                return False
            tx = self.db.transaction()
            wallet_store.add_move(tx, shop_id, member_id, move, now=time, shards=self.shards)
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                lot = wallet_store.get_bonus_lot(self.db, pk, sk)  # the remainder as it is now
                continue
            return True
        raise Retryable(f"bonus lot {sk}: too much contention")

    def remind(self, item: Item, time: datetime) -> bool:
        """Publish wallet.bonus_expiring once for a member and expiry instant (a reminder the due index lists), with
        the bonus then still unspent; the program's expiry_reminder_days ahead, as for points."""

        def expiring(shop_id: str, member_id: str, expires: datetime) -> dict[str, Any] | None:
            bonus = wallet_store.bonus_expiring_at(self.db, shop_id, member_id, expires)
            if bonus <= 0:
                return None
            currency = self.shops.program(shop_id).currency
            return {"currency": currency, "bonus": format_amount(bonus, currency)}

        return publish_once(self.db, self.events, item, time, "wallet.bonus_expiring", expiring)

    def top_up(self, shop_id: str, member_id: str, *, amount: str, reference: str, key: str) -> dict[str, str]:
        """Money the shop's backend took for the member's wallet, with the bonus of the plan in force now: settled as
        a top-up order whose id is `reference` (so the platform's webhook for the same payment, if any, is the same
        event). The same key answers as its first success did; a key used for another top-up is a 409."""
        program = self.shops.program(shop_id)
        if program.wallet is None:
            raise InvalidInput("this program has no wallet; set the program's wallet first", field="wallet")
        try:
            parse_amount(amount, program.currency)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="amount") from exc
        request = fingerprint({"member_id": member_id, "amount": amount, "reference": reference})
        exists, stored, _ = wallet_store.request_state(self.db, shop_id, member_id, "top-up", key)
        if not exists:
            raise NotFound(f"member {member_id} not found", field="member_id")
        if stored is not None:
            replay(stored, request)
            found = order_store.get_order(self.db, shop_id, reference)
            if found is None:
                raise NotFound(f"top-up {reference} not found", field="reference")
            return _top_up_answer(found, member_id, reference, program.currency)
        now = self.clock()
        event = OrderPaid(
            type="order.paid",
            data=OrderPaidData(
                order_id=reference,
                member_id=member_id,
                currency=program.currency,
                total=amount,
                lines=[OrderLine(sku=TOP_UP_SKU, category="wallet", amount=amount)],
                paid_at=now,
                top_up=True,
            ),
        )

        def record(tx: Transaction) -> None:
            idempotency_store.add_record(
                tx, shop_id, member_id, "top-up", key, request=request, response={"reference": reference}, now=now
            )

        _, state = self.orders.settle_event(shop_id, event, also=record)
        return _top_up_answer(state, member_id, reference, program.currency)

    def savings(self, shop_id: str, member_id: str) -> dict[str, Any]:
        """What the member saved to date, per local month and in total: coupon discounts, points used as cash, the
        wallet's bonus spent and member-price discounts (orders cancelled or refunded in full saved nothing)."""
        currency = self.shops.program(shop_id).currency
        self.members.member(shop_id, member_id)
        months = wallet_store.savings(self.db, shop_id, member_id)
        figures = wallet_store.SAVINGS_FIGURES

        def view(values: dict[str, int]) -> dict[str, str]:
            shown = {name: format_amount(values.get(name, 0), currency) for name in figures}
            return shown | {"total": format_amount(sum(values.get(name, 0) for name in figures), currency)}

        total = {name: sum(month[name] for month in months.values()) for name in figures}
        return {
            "currency": currency,
            "total": view(total),
            "months": [{"month": month, **view(values)} for month, values in months.items()],
        }


def _top_up_answer(state: OrderState, member_id: str, reference: str, currency: str) -> dict[str, str]:
    """What a top-up put in (as first settled, whatever refunds did since)."""
    if not (state.paid and state.top_up and state.member_id == member_id and state.wallet is not None):
        raise Conflict("this reference names another payment, not this member's top-up", field="reference")
    return {
        "reference": reference,
        "principal": format_amount(state.wallet.principal, currency),
        "bonus": format_amount(state.wallet.bonus, currency),
    }


def _entry_view(entry: WalletEntry, currency: str) -> dict[str, Any]:
    return {
        "principal": format_amount(entry.principal, currency),
        "bonus": format_amount(entry.bonus, currency),
        "reason": entry.reason,
        "reference": entry.reference,
        "at": iso(entry.at),
        "detail": entry.detail,
    }
