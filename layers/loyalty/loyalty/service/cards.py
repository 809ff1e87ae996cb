"""Gift cards: batches issued by the shop, each card redeemed once into a member's wallet or given to another
member once first; and what a batch still owes (its liability)."""

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from loyalty.domain.cards import BatchRequest, Card, card_code, looks_like_a_code, normalise
from loyalty.domain.coupons import NotApplicable
from loyalty.domain.errors import Conflict, InvalidInput, NotFound, Retryable
from loyalty.domain.ledger import iso
from loyalty.domain.money import format_amount, parse_amount
from loyalty.domain.program import Program
from loyalty.domain.wallet import WalletEntry, WalletMove, bonus_lot, check_balance_room
from loyalty.service.idempotency import fingerprint, replay
from loyalty.service.members import Members
from loyalty.service.shops import Shops
from loyalty.store import cards as card_store
from loyalty.store import idempotency as idempotency_store
from loyalty.store import wallet as wallet_store
from loyalty.store.cards import CardSecret
from loyalty.store.dynamo import Dynamo, TransactionCancelled
from loyalty.store.keys import CARD_COUNT_SHARDS, digest

MAX_ATTEMPTS = 8
# One answer for every code that cannot be used, so a wrong guess learns nothing about the codes that exist.
UNUSABLE = "this card code cannot be used"


class Cards:
    def __init__(
        self,
        db: Dynamo,
        shops: Shops,
        members: Members,
        secret: CardSecret,
        *,
        clock: Callable[[], datetime],
        shards: int,
    ) -> None:
        self.db = db
        self.shops = shops
        self.members = members
        self.secret = secret
        self.clock = clock
        self.shards = shards

    def issue(self, shop_id: str, request: BatchRequest) -> dict[str, Any]:
        """Create a batch and its cards, answering every code (the only time they are shown, apart from the same
        request again, which answers the same batch; a batch interrupted half-way is finished by it)."""
        program = _with_wallet(self.shops.program(shop_id))
        value = _amount(request.value, program.currency, "value")
        if value <= 0:
            raise InvalidInput("a card's value must be more than zero", field="value")
        now = self.clock()
        if request.expires_at <= now:
            raise InvalidInput("expires_at must be in the future", field="expires_at")
        request_sha = fingerprint(request.model_dump(mode="json"))
        chunks = math.ceil(request.count / card_store.CHUNK)
        batch = {
            "batch_id": request.batch_id,
            "value": value,
            "count": request.count,
            "credit_to": request.credit_to,
            "expires_at": iso(request.expires_at),
            "chunks": chunks,
            "request_sha256": request_sha,
        }
        if not card_store.create_batch(self.db, shop_id, batch, now):
            existing = card_store.get_batch(self.db, shop_id, request.batch_id)
            if existing is None or existing["request_sha256"] != request_sha:
                raise Conflict("a batch with this id exists with other details", field="batch_id")
        secret = self.secret.get()
        codes = [card_code(secret, shop_id, request.batch_id, number) for number in range(request.count)]
        card = Card(batch_id=request.batch_id, value=value, credit_to=request.credit_to, expires_at=request.expires_at)
        for _ in range(MAX_ATTEMPTS):
            stored = card_store.get_batch(self.db, shop_id, request.batch_id)
            assert stored is not None
            done = int(stored["chunks_done"])
            if done >= chunks:
                break
            first = done * card_store.CHUNK
            written = [(normalise(code), card) for code in codes[first : first + card_store.CHUNK]]
            try:
                card_store.write_chunk(self.db, shop_id, request.batch_id, done, written)
            except TransactionCancelled:
                continue  # the same request, running at once, wrote it: read the progress again
        else:
            raise Retryable("the batch is being written by another request; repeat it to finish")
        return {**self._batch_view(program, batch), "codes": codes}

    def batches(self, shop_id: str) -> list[dict[str, Any]]:
        program = self.shops.program(shop_id)
        return [self._batch_view(program, item) for item in card_store.batches(self.db, shop_id)]

    def report(self, shop_id: str, batch_id: str) -> dict[str, Any]:
        """Issued, redeemed and outstanding value (what the shop still owes on unexpired, unredeemed cards)."""
        program = self.shops.program(shop_id)
        batch = card_store.get_batch(self.db, shop_id, batch_id)
        if batch is None:
            raise NotFound(f"batch {batch_id} not found", field="batch_id")
        redeemed, redeemed_value = card_store.redeemed_counts(self.db, shop_id, batch_id)
        issued_value = int(batch["value"]) * int(batch["count"])
        expired = datetime.fromisoformat(str(batch["expires_at"]).replace("Z", "+00:00")) <= self.clock()
        money = program.currency
        return {
            **self._batch_view(program, batch),
            "issued_value": format_amount(issued_value, money),
            "redeemed": redeemed,
            "redeemed_value": format_amount(redeemed_value, money),
            "expired": expired,
            "outstanding_value": format_amount(0 if expired else issued_value - redeemed_value, money),
        }

    def redeem(self, shop_id: str, member_id: str, *, code: str, key: str) -> dict[str, Any]:
        """Put a card's value into the member's wallet (its principal or bonus, as the batch says), once. The same
        key answers as its first success did."""
        program = _with_wallet(self.shops.program(shop_id))
        normalised = normalise(code)
        request = fingerprint({"member_id": member_id, "code": digest(normalised), "action": "redeem"})
        exists, stored, wallet = wallet_store.request_state(self.db, shop_id, member_id, "card", key)
        if not exists:
            raise NotFound(f"member {member_id} not found", field="member_id")
        if stored is not None:
            return replay(stored, request)
        now = self.clock()
        card_store.count_attempt(self.db, shop_id, member_id, now)
        for attempt in range(MAX_ATTEMPTS):
            card = self._usable(shop_id, normalised, member_id, now, transfer=False)
            if attempt:  # the first attempt has the wallet read with the member
                wallet = wallet_store.get_wallet(self.db, shop_id, member_id)
            principal, bonus = (card.value, 0) if card.credit_to == "principal" else (0, card.value)
            rules = program.wallet
            assert rules is not None
            check_balance_room(rules, wallet, card.value, program.currency)
            reference = card_store.code_reference(card.batch_id, normalised)
            entry = WalletEntry(
                principal=principal,
                bonus=bonus,
                reason="card.redeemed",
                reference=reference,
                at=now,
                detail={"batch_id": card.batch_id},
            )
            lots = []
            if bonus:  # a bonus card's value is a grant of bonus: a lot, expiring by the program's bonus_expiry
                lots = [bonus_lot(bonus, earned_at=now, reference=reference, rules=rules, timezone=program.timezone)]
            move = WalletMove(principal=principal, bonus=bonus, entries=[entry], version=wallet.version, lots=lots)
            money = program.currency
            response = {
                "batch_id": card.batch_id,
                "card": reference,
                "principal": format_amount(principal, money),
                "bonus": format_amount(bonus, money),
            }
            tx = self.db.transaction()
            shard = int(digest(normalised)[:8], 16) % CARD_COUNT_SHARDS
            card_store.add_redemption(tx, shop_id, normalised, card, member_id, now, shard)
            wallet_store.add_move(
                tx, shop_id, member_id, move, now=now, shards=self.shards, remind_days=program.expiry_reminder_days
            )
            idempotency_store.add_record(
                tx, shop_id, member_id, "card", key, request=request, response=response, now=now
            )
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                answered = self._answered(shop_id, member_id, key, request)  # the same request, at once, may have won
                if answered is not None:
                    return answered
                continue  # the card or the wallet changed: read both again
            return response
        raise Retryable("too much contention on this member; try again")

    def transfer(self, shop_id: str, member_id: str, *, code: str, to_member_id: str, key: str) -> dict[str, Any]:
        """Give an unredeemed card to another member, once: from then on only they may redeem it."""
        _with_wallet(self.shops.program(shop_id))
        if to_member_id == member_id:
            raise InvalidInput("a card is given to another member", field="to_member_id")
        self.members.member(shop_id, member_id)
        try:
            self.members.member(shop_id, to_member_id)
        except NotFound as exc:
            raise NotFound(exc.message, field="to_member_id") from exc
        normalised = normalise(code)
        request = fingerprint({"member_id": member_id, "code": digest(normalised), "to": to_member_id})
        answered = self._answered(shop_id, member_id, key, request)
        if answered is not None:
            return answered
        now = self.clock()
        card_store.count_attempt(self.db, shop_id, member_id, now)
        for _ in range(MAX_ATTEMPTS):
            card = self._usable(shop_id, normalised, member_id, now, transfer=True)
            response = {
                "batch_id": card.batch_id,
                "card": card_store.code_reference(card.batch_id, normalised),
                "from_member_id": member_id,
                "to_member_id": to_member_id,
                "at": iso(now),
            }
            tx = self.db.transaction()
            card_store.add_transfer(tx, shop_id, normalised, card, member_id, to_member_id, now)
            idempotency_store.add_record(
                tx, shop_id, member_id, "card", key, request=request, response=response, now=now
            )
            try:
                self.db.commit(tx)
            except TransactionCancelled:
                answered = self._answered(shop_id, member_id, key, request)
                if answered is not None:
                    return answered
                continue
            return response
        raise Retryable("too much contention on this card; try again")

    def _answered(self, shop_id: str, member_id: str, key: str, request: str) -> dict[str, Any] | None:
        """The first answer to this key (409 if it was used for another request), or None if it has none yet."""
        stored = idempotency_store.get_record(self.db, shop_id, member_id, "card", key)
        return replay(stored, request) if stored is not None else None

    def _usable(self, shop_id: str, normalised: str, member_id: str, now: datetime, *, transfer: bool) -> Card:
        card = card_store.get_card(self.db, shop_id, normalised) if looks_like_a_code(normalised) else None
        usable = card is not None and (
            card.transferable_by(member_id, now) if transfer else card.redeemable_by(member_id, now)
        )
        if card is None or not usable:
            raise NotApplicable(UNUSABLE, field="code", reason="card")
        return card

    @staticmethod
    def _batch_view(program: Program, batch: dict[str, Any]) -> dict[str, Any]:
        return {
            "batch_id": batch["batch_id"],
            "value": format_amount(int(batch["value"]), program.currency),
            "count": int(batch["count"]),
            "credit_to": batch["credit_to"],
            "expires_at": batch["expires_at"],
        }


def _with_wallet(program: Program) -> Program:
    if program.wallet is None:
        raise InvalidInput("this program has no wallet; set the program's wallet first", field="wallet")
    return program


def _amount(text: str, currency: str, field: str) -> int:
    try:
        return parse_amount(text, currency)
    except ValueError as exc:
        raise InvalidInput(str(exc), field=field) from exc
