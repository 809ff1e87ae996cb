"""Coupons: templates, claims and bulk grants, the checkout quote, and the reminders and expiry of unused ones."""

import math
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from loyalty.domain.coupons import (
    Coupon,
    Template,
    TemplateRequest,
    Terms,
    member_priced,
    new_code,
    normalise_code,
    priced_lines,
)
from loyalty.domain.earning import earn
from loyalty.domain.engagement import is_birthday
from loyalty.domain.errors import Conflict, InvalidInput, NotFound
from loyalty.domain.ledger import iso
from loyalty.domain.money import format_amount, parse_amount
from loyalty.domain.orders import MAX_CODES, DecimalString, Identifier, OrderLine
from loyalty.domain.program import Program
from loyalty.domain.wallet import split as wallet_split
from loyalty.service.cache import TTLCache
from loyalty.service.idempotency import fingerprint, replay
from loyalty.service.members import Members
from loyalty.service.shops import Shops
from loyalty.store import coupons as coupon_store
from loyalty.store import members as member_store
from loyalty.store import wallet as wallet_store
from loyalty.store.dynamo import Dynamo, Item, Transaction
from loyalty.store.events import Events
from loyalty.store.keys import code_of, digest, member_of
from loyalty.store.queue import Queues

logger = Logger(child=True)

GRANT_CHUNK = 100  # members per queued batch of a bulk grant
MAX_GRANT = 10_000  # members per bulk grant request


class QuoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_id: Identifier
    lines: list[OrderLine] = Field(min_length=1, max_length=500)
    coupon_codes: list[str] = Field(default_factory=list, max_length=MAX_CODES)
    points: int = Field(default=0, ge=0, le=1_000_000_000)
    wallet_used: DecimalString | None = Field(default=None, description="what the member would pay from the wallet")


class GrantRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member_ids: list[Identifier] = Field(min_length=1, max_length=MAX_GRANT)


class GrantBatch(BaseModel):
    """One queued batch of a bulk grant."""

    model_config = ConfigDict(extra="forbid")
    shop_id: Identifier
    grant_id: Identifier
    template_id: Identifier
    chunk: int = Field(ge=0)
    member_ids: list[Identifier]
    # Each claim's idempotency key is "<claims>.<member>": by default the grant's id (a member once per grant);
    # the monthly run names the month and template instead, so a member gets each month's coupon once whichever
    # grants list them.
    claims: Identifier | None = None


class Coupons:
    def __init__(
        self,
        db: Dynamo,
        shops: Shops,
        members: Members,
        events: Events,
        *,
        clock: Callable[[], datetime],
        shards: int,
        cache_seconds: float,
    ) -> None:
        self.db = db
        self.shops = shops
        self.members = members
        self.events = events
        self.clock = clock
        self.shards = shards
        # Templates never change once made (their stock is kept apart): cached for at least an hour.
        self._templates: TTLCache[tuple[Template, int] | None] = TTLCache(max(cache_seconds, 3600))

    # ------------------------------------------------------------------ templates

    def create_template(self, shop_id: str, request: TemplateRequest, *, stock_shards: int | None = None) -> Template:
        program = self.shops.program(shop_id)
        currency = program.currency

        def minor(text: str | None, field: str) -> int:
            try:
                return parse_amount(text or "0", currency)
            except ValueError as exc:
                raise InvalidInput(str(exc), field=field) from exc

        terms = Terms(
            kind=request.kind,
            amount=minor(request.amount, "amount"),
            percent=request.percent or 0,
            min_spend=minor(request.min_spend, "min_spend"),
            max_discount=minor(request.max_discount, "max_discount") if request.max_discount is not None else None,
            categories=request.categories,
            skus=request.skus,
        )
        if terms.kind == "amount_off" and terms.amount <= 0:
            raise InvalidInput("must be more than 0", field="amount")
        now = self.clock()
        template = Template(
            template_id="tpl_" + secrets.token_hex(8),
            name=request.name,
            terms=terms,
            stock=request.stock,
            per_member_limit=request.per_member_limit,
            valid_from=request.valid_from,
            valid_until=request.valid_until,
            valid_days_after_claim=request.valid_days_after_claim,
            created_at=now,
        )
        # Stock is spread over shards so a popular coupon is not one hot item (~250 coupons per shard, at most 16).
        shards = stock_shards or min(16, max(1, math.ceil(request.stock / 250)))
        coupon_store.create_template(self.db, shop_id, template, shards, now)
        return template

    def template(self, shop_id: str, template_id: str) -> tuple[Template, int]:
        """Templates never change once made (their stock is kept apart), so containers cache them."""
        found = self._templates.get(
            f"{shop_id}|{template_id}", lambda: coupon_store.get_template(self.db, shop_id, template_id)
        )
        if found is None:
            raise NotFound(f"coupon template {template_id} not found", field="template_id")
        return found

    def template_view(self, shop_id: str, template_id: str) -> dict[str, Any]:
        template, shards = self.template(shop_id, template_id)
        left = sum(coupon_store.stock_left(self.db, shop_id, template_id, shards).values())
        view = template.model_dump(mode="json")
        return {**view, "issued": template.stock - left, "left": left}

    # ------------------------------------------------------------------ claims

    def claim(self, shop_id: str, member_id: str, template_id: str, *, key: str) -> dict[str, Any]:
        """Issue one coupon of the template to the member: 201 once per key, the same answer on a replay, 409
        when the stock is gone or the member has their limit. Conditions decide, never a read."""
        request = fingerprint({"member_id": member_id, "template_id": template_id})
        template, stock_shards = self.template(shop_id, template_id)
        program = self.shops.program(shop_id)
        now = self.clock()
        why = template.claimable(now)
        if why:
            raise Conflict(why, field="template_id")
        # Only shards that still had stock when read (one BatchGetItem): a sold-out coupon answers 409 without a
        # write, and a claim does not try shard after empty shard. Spread over them at random.
        shards = [n for n, left in coupon_store.stock_left(self.db, shop_id, template_id, stock_shards).items() if left]
        random.shuffle(shards)
        attempts = 0
        while shards:
            coupon = new_coupon(template, member_id, now)
            code = coupon.code
            response = {
                "coupon_id": coupon.coupon_id,
                "code": code,
                "template_id": template_id,
                "member_id": member_id,
                "expires_at": iso(coupon.expires_at),
            }
            outcome = coupon_store.commit_claim(
                self.db,
                shop_id,
                template,
                shards[0],
                coupon,
                key=key,
                request=request,
                response=response,
                now=now,
                due_shards=self.shards,
                remind_days=program.coupon_reminder_days,
            )
            if outcome == "ok":
                return response
            if outcome == "replay":
                record = coupon_store.claim_record(self.db, shop_id, member_id, key)
                if record is None:
                    continue
                return replay(record, request)
            if outcome == "limit":
                raise Conflict(
                    f"member {member_id} has claimed this coupon {template.per_member_limit} time(s), the limit",
                    field="template_id",
                    code="limit_reached",
                )
            if outcome == "no_member":
                raise NotFound(f"member {member_id} not found", field="member_id")
            if outcome == "shard_empty":
                shards.pop(0)
            attempts += 1
            if attempts > stock_shards + 3:  # code collisions are ~never; do not loop on them
                break
        # Sold out, unless this is a replay of a claim that succeeded before it sold out.
        record = coupon_store.claim_record(self.db, shop_id, member_id, key)
        if record is not None and record["request_sha256"] == request:
            return replay(record, request)
        raise Conflict("this coupon is out of stock", field="template_id", code="out_of_stock")

    def coupon_for(self, shop_id: str, template_id: str, member_id: str, now: datetime) -> "CouponToGive | None":
        """A coupon of the template for the member, to be claimed inside another transaction (a mall exchange, a
        lottery prize; add_claim below), and the stock shard to take it from (one still holding some, at random).
        None if the template cannot give one now: outside its window, or out of stock."""
        template, stock_shards = self.template(shop_id, template_id)
        if template.claimable(now):
            return None
        left = coupon_store.stock_left(self.db, shop_id, template_id, stock_shards)
        shards = [n for n, count in left.items() if count > 0]
        if not shards:
            return None
        return CouponToGive(new_coupon(template, member_id, now), template, random.choice(shards))  # noqa: S311 (spreads load)

    def add_claim(self, tx: Transaction, shop_id: str, given: "CouponToGive", now: datetime) -> coupon_store.Claim:
        """Claim a coupon from coupon_for inside another transaction (store/coupons.py add_claim)."""
        return coupon_store.add_claim(
            tx,
            shop_id,
            given.template,
            given.shard,
            given.coupon,
            now=now,
            due_shards=self.shards,
            remind_days=self.shops.program(shop_id).coupon_reminder_days,
        )

    def coupons(self, shop_id: str, member_id: str, status: str | None = None) -> list[dict[str, Any]]:
        self.members.member(shop_id, member_id)
        now = self.clock()
        currency = self.shops.program(shop_id).currency
        items = []
        for coupon in coupon_store.member_coupons(self.db, shop_id, member_id):
            seen = coupon.status_at(now)
            if status is None or seen == status:
                items.append(coupon_view(coupon, seen, currency))
        return sorted(items, key=lambda c: (c["status"] != "available", c["expires_at"]))

    # ------------------------------------------------------------------ bulk grants

    def start_grant(
        self, shop_id: str, template_id: str, member_ids: list[str], *, key: str, queues: Queues
    ) -> tuple[bool, dict[str, Any]]:
        """Record a bulk grant and queue it in batches; (created, view). The key makes the request idempotent."""
        created, grant_id = self.queue_grant(shop_id, template_id, member_ids, key=key, queues=queues)
        return created, self.grant_report(shop_id, grant_id)

    def queue_grant(
        self,
        shop_id: str,
        template_id: str,
        member_ids: list[str],
        *,
        key: str,
        queues: Queues,
        claims: str | None = None,
    ) -> tuple[bool, str]:
        """Record a bulk grant, then queue its batches; (created, grant id). The same key again is a replay (another
        grant under it is a 409); a replay of a grant not yet done queues its batches again, which repairs a
        grant whose queueing was cut short and costs nothing twice: each claim has its own key and each batch's
        outcome is recorded once. `claims` keys each member's claim (see GrantBatch)."""
        self.template(shop_id, template_id)
        unique = list(dict.fromkeys(member_ids))
        request = fingerprint({"template_id": template_id, "member_ids": unique})
        grant_id = "grt_" + digest(f"{shop_id}|{key}")[:16]
        chunks = [unique[i : i + GRANT_CHUNK] for i in range(0, len(unique), GRANT_CHUNK)]
        now = self.clock()
        existing = coupon_store.create_grant(
            self.db,
            shop_id,
            {
                "grant_id": grant_id,
                "template_id": template_id,
                "members": len(unique),
                "chunks": len(chunks),
                "granted": 0,
                "refused": 0,
                "chunks_done": 0,
                "request_sha256": request,
                "created_at": iso(now),
            },
        )
        if existing is not None:
            replay(existing, request)  # the same key for another grant is a 409
            if existing["chunks_done"] >= existing["chunks"]:
                return False, grant_id
        queues.enqueue_grant_batches(
            [
                GrantBatch(
                    shop_id=shop_id,
                    grant_id=grant_id,
                    template_id=template_id,
                    chunk=n,
                    member_ids=chunk,
                    claims=claims,
                ).model_dump(exclude_none=True)
                for n, chunk in enumerate(chunks)
            ]
        )
        return existing is None, grant_id

    def apply_grant_batch(self, batch: GrantBatch) -> dict[str, int]:
        """Claim for each member of the batch with a key of its own, so a redelivered batch grants nothing twice,
        then record the batch's outcome once."""
        self.template(batch.shop_id, batch.template_id)  # a batch for a template that is gone is parked whole
        granted = 0
        refused: dict[str, str] = {}
        for member_id in batch.member_ids:
            try:
                key = f"{batch.claims or batch.grant_id}.{member_id}"
                self.claim(batch.shop_id, member_id, batch.template_id, key=key)
                granted += 1
            except (Conflict, NotFound) as exc:
                refused[member_id] = exc.code if exc.code != "conflict" else exc.message
                if isinstance(exc, Conflict):  # a member refused (not a stranger): their erasure must find it
                    coupon_store.note_refusal(self.db, batch.shop_id, member_id, batch.grant_id, batch.chunk)
        coupon_store.record_chunk(self.db, batch.shop_id, batch.grant_id, batch.chunk, granted, refused, self.clock())
        return {"granted": granted, "refused": len(refused)}

    def grant_report(self, shop_id: str, grant_id: str) -> dict[str, Any]:
        found = coupon_store.get_grant(self.db, shop_id, grant_id)
        if found is None:
            raise NotFound(f"grant {grant_id} not found", field="grant_id")
        grant, refused = found
        return {
            "grant_id": grant_id,
            "template_id": grant["template_id"],
            "members": grant["members"],
            "granted": grant["granted"],
            "refused": grant["refused"],
            "status": "done" if grant["chunks_done"] >= grant["chunks"] else "processing",
            "refusals": [{"member_id": member, "reason": reason} for member, reason in sorted(refused.items())],
        }

    # ------------------------------------------------------------------ checkout

    def quote(self, shop_id: str, request: QuoteRequest) -> dict[str, Any]:
        """The cart priced as order.paid will price it: member price, then coupons, then points; and the points it
        would earn, by the same rule as earning (domain/earning.py)."""
        program = self.shops.program(shop_id)
        member = self.members.member(shop_id, request.member_id)
        now = self.clock()
        tier = program.tier_of(member.tier.tier)
        listed = priced_lines(request.lines, program.currency)
        lines = member_priced(listed, tier.discount_percent if tier else Decimal(0))
        codes = [normalise_code(code) for code in request.coupon_codes]
        found = coupon_store.find_coupons(self.db, shop_id, request.member_id, codes)
        result = program.price(
            lines,
            codes,
            found,
            member_id=request.member_id,
            points=request.points,
            available=member.balance.available,
            at=now,
        )
        earning = earn(
            result.lines,
            program,
            at=now,
            tier=tier,
            birthday=is_birthday(member.profile.birthday, now, program.timezone),
        )
        money = program.currency

        def fmt(minor: int) -> str:
            return format_amount(minor, money)

        payable, wallet = result.payable, None
        if request.wallet_used is not None:
            used, principal, bonus = self._wallet_draw(program, shop_id, request.member_id, request.wallet_used)
            if used > payable:
                raise InvalidInput(f"wallet_used is more than the {fmt(payable)} left to pay", field="wallet_used")
            payable -= used
            wallet = {"used": fmt(used), "principal": fmt(principal), "bonus": fmt(bonus)}
        return {
            "currency": money,
            "subtotal": fmt(sum(line.amount for line in listed)),
            "member_discount": fmt(sum(line.amount for line in listed) - result.subtotal),
            "discounts": [{"code": d.code, "amount": fmt(d.amount)} for d in result.discounts],
            "points_used": result.points_used,
            "points_offset": fmt(result.points_offset),
            "points_max": result.points_max,
            "payable": fmt(payable),
            "points_to_earn": earning.points,
            "earning": earning.detail,
            **({"wallet": wallet} if wallet else {}),
        }

    def _wallet_draw(self, program: Program, shop_id: str, member_id: str, text: str) -> tuple[int, int, int]:
        """(used, from principal, from bonus) of paying `text` from the member's wallet, as order.paid would draw."""
        if program.wallet is None:
            raise InvalidInput("this program has no wallet", field="wallet_used")
        try:
            used = parse_amount(text, program.currency)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="wallet_used") from exc
        balance = wallet_store.get_wallet(self.db, shop_id, member_id)
        principal, bonus = wallet_split(program.wallet.draw, balance, used, program.currency)
        return used, principal, bonus

    # ------------------------------------------------------------------ reminders and expiry (scheduled runs)

    def remind(self, item: Item, time: datetime) -> bool:
        """Publish coupon.expiring for one unused coupon (as the due index lists it), once, if its member agreed
        to marketing."""
        pk, sk = item["PK"], item["SK"]
        expires_at = datetime.fromisoformat(str(item["expires_at"]).replace("Z", "+00:00"))
        if not coupon_store.refile_for_expiry(self.db, pk, sk, expires_at, now=time, shards=self.shards):
            return False
        shop_id, member_id = member_of(pk)
        if not member_store.consents_to_marketing(self.db, shop_id, member_id):
            return False  # marketing, to a member who did not agree to it: filed for its expiry, not sent
        try:
            self.events.publish(
                "coupon.expiring",
                {
                    "shop_id": shop_id,
                    "member_id": member_id,
                    "code": code_of(sk),
                    "coupon_id": item.get("coupon_id"),
                    "template_id": item.get("template_id"),
                    "expires_at": iso(expires_at),
                },
            )
        except Exception:
            member_store.unmark_reminded(self.db, pk, sk, (item["DuePK"], item["DueSK"]))
            raise
        return True

    def expire(self, item: Item, time: datetime) -> bool:
        return coupon_store.expire(self.db, item["PK"], item["SK"], time)


@dataclass(frozen=True)
class CouponToGive:
    """A coupon ready to be claimed inside another transaction, and the template stock shard it comes from."""

    coupon: Coupon
    template: Template
    shard: int


def new_coupon(template: Template, member_id: str, now: datetime) -> Coupon:
    """A coupon of the template for the member, with a new code, its window from the template's as of `now`."""
    valid_from, expires_at = template.window(now)
    return Coupon(
        coupon_id="cpn_" + secrets.token_hex(8),
        code=new_code(),
        template_id=template.template_id,
        member_id=member_id,
        terms=template.terms,
        claimed_at=now,
        valid_from=valid_from,
        expires_at=expires_at,
    )


def coupon_view(coupon: Coupon, status: str, currency: str) -> dict[str, Any]:
    terms = coupon.terms
    view: dict[str, Any] = {
        "coupon_id": coupon.coupon_id,
        "code": coupon.code,
        "template_id": coupon.template_id,
        "status": status,
        "kind": terms.kind,
        "min_spend": format_amount(terms.min_spend, currency),
        "claimed_at": iso(coupon.claimed_at),
        "valid_from": iso(coupon.valid_from) if coupon.valid_from else None,
        "expires_at": iso(coupon.expires_at),
    }
    if terms.kind == "amount_off":
        view["amount"] = format_amount(terms.amount, currency)
    else:
        view["percent"] = str(terms.percent)
        view["max_discount"] = format_amount(terms.max_discount, currency) if terms.max_discount is not None else None
    if terms.categories or terms.skus:
        view["scope"] = {"categories": terms.categories, "skus": terms.skus}
    if coupon.order_id:
        view["order_id"] = coupon.order_id
    return view
