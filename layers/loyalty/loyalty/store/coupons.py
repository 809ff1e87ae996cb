"""Coupon templates and their stock, coupons, codes, and bulk grants."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from loyalty.domain.coupons import Coupon, Template
from loyalty.domain.errors import NotFound
from loyalty.domain.ledger import iso
from loyalty.store import idempotency
from loyalty.store.dynamo import ConditionFailed, Dynamo, Item, Transaction, TransactionCancelled, model_of
from loyalty.store.keys import (
    CHUNK_PREFIX,
    CODE_SK,
    COUPON_EXPIRE_JOB,
    COUPON_PREFIX,
    COUPON_REMIND_JOB,
    GRANT_REFUSED_PREFIX,
    GRANT_SK,
    PROFILE_SK,
    STOCK_SK,
    TEMPLATE_SK,
    code_pk,
    coupon_sk,
    due_keys,
    grant_pk,
    member_pk,
    stock_pk,
    template_pk,
)

ClaimOutcome = Literal["ok", "replay", "shard_empty", "limit", "no_member", "code_taken"]


def stock_split(stock: int, shards: int) -> list[int]:
    """Stock per shard: as even as whole coupons allow, summing to `stock`."""
    base, extra = divmod(stock, shards)
    return [base + (1 if n < extra else 0) for n in range(shards)]


def create_template(db: Dynamo, shop_id: str, template: Template, shards: int, now: datetime) -> None:
    tx = db.transaction()
    tx.put(
        {
            "PK": template_pk(shop_id, template.template_id),
            "SK": TEMPLATE_SK,
            "type": "coupon_template",
            **template.model_dump(mode="json"),
            "stock_shards": shards,
        },
        condition="attribute_not_exists(PK)",
    )
    for shard, cap in enumerate(stock_split(template.stock, shards)):
        tx.put(
            {
                "PK": stock_pk(shop_id, template.template_id, shard),
                "SK": STOCK_SK,
                "type": "coupon_stock",
                "cap": cap,
                "issued": 0,
                "created_at": iso(now),
            },
            condition="attribute_not_exists(PK)",
        )
    db.commit(tx)


def get_template(db: Dynamo, shop_id: str, template_id: str) -> tuple[Template, int] | None:
    """The template and how many stock shards it has."""
    item = db.get(template_pk(shop_id, template_id), TEMPLATE_SK, consistent=False)
    return (model_of(Template, item), int(item["stock_shards"])) if item else None


def stock_left(db: Dynamo, shop_id: str, template_id: str, shards: int) -> dict[int, int]:
    """Coupons left per shard, in one read. `issued` only ever grows, so a shard read as empty is empty; one
    read as not empty may have emptied since (the claim's condition decides)."""
    keys = [(stock_pk(shop_id, template_id, n), STOCK_SK) for n in range(shards)]
    items = db.get_many(keys)
    return {n: int(items[key]["cap"]) - int(items[key]["issued"]) for n, key in enumerate(keys) if key in items}


def commit_claim(
    db: Dynamo,
    shop_id: str,
    template: Template,
    shard: int,
    coupon: Coupon,
    *,
    key: str,
    request: str,
    response: dict[str, Any],
    now: datetime,
    due_shards: int,
    remind_days: int,
) -> ClaimOutcome:
    """One claim in one transaction: the idempotency record, then the claim itself (add_claim). Nothing is read
    first; the conditions decide, so no concurrency can oversell or over-issue."""
    tx = db.transaction()
    idempotency.add_record(tx, shop_id, coupon.member_id, "claim", key, request=request, response=response, now=now)
    claim = add_claim(tx, shop_id, template, shard, coupon, now=now, due_shards=due_shards, remind_days=remind_days)
    member = tx.check({"PK": member_pk(shop_id, coupon.member_id), "SK": PROFILE_SK}, "attribute_exists(PK)")
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        # Several conditions may fail at once; answer with the most fundamental.
        if exc.failed(0):
            return "replay"
        if exc.failed(member):
            return "no_member"
        outcome = claim.outcome(exc)
        if outcome is None:
            raise
        return outcome
    return "ok"


@dataclass(frozen=True)
class Claim:
    """Where a claim's actions sit in its transaction, to tell which condition refused it."""

    stock: int
    limit: int
    code: int

    def outcome(self, exc: TransactionCancelled) -> ClaimOutcome | None:
        for index, outcome in ((self.limit, "limit"), (self.stock, "shard_empty"), (self.code, "code_taken")):
            if exc.failed(index):
                return outcome  # type: ignore[return-value]
        return None


def add_claim(
    tx: Transaction,
    shop_id: str,
    template: Template,
    shard: int,
    coupon: Coupon,
    *,
    now: datetime,
    due_shards: int,
    remind_days: int,
) -> Claim:
    """Add a claim to `tx`: one coupon from the shard's stock (never past its cap), the member's count for the
    template (never past the limit), the coupon and its code (unique in the shop)."""
    stock = tx.update(
        {"PK": stock_pk(shop_id, template.template_id, shard), "SK": STOCK_SK},
        "ADD issued :one",
        values={":one": 1},
        condition="issued < cap",
    )
    limit = tx.update(
        {"PK": member_pk(shop_id, coupon.member_id), "SK": f"CLAIMS#{template.template_id}"},
        "ADD claimed :one SET #type = :type",
        values={":one": 1, ":limit": template.per_member_limit, ":type": "coupon_claims"},
        condition="attribute_not_exists(claimed) OR claimed < :limit",
        names={"#type": "type"},
    )
    tx.put(coupon_item(shop_id, coupon, now=now, shards=due_shards, remind_days=remind_days))
    code = tx.put(
        {"PK": code_pk(shop_id, coupon.code), "SK": CODE_SK, "type": "coupon_code", "member_id": coupon.member_id},
        condition="attribute_not_exists(PK)",
    )
    return Claim(stock=stock, limit=limit, code=code)


def claim_record(db: Dynamo, shop_id: str, member_id: str, key: str) -> Item | None:
    return idempotency.get_record(db, shop_id, member_id, "claim", key)


def coupon_item(shop_id: str, coupon: Coupon, *, now: datetime, shards: int, remind_days: int) -> Item:
    """The coupon, filed in the due index: for its reminder `remind_days` ahead, else for its expiry."""
    pk, sk = member_pk(shop_id, coupon.member_id), coupon_sk(coupon.code)
    item: Item = {"PK": pk, "SK": sk, "type": "coupon", **coupon.model_dump(mode="json", exclude_none=True)}
    if coupon.status == "available":
        item["DuePK"], item["DueSK"] = coupon_due(pk, sk, coupon.expires_at, now=now, shards=shards, remind=remind_days)
    return item


def coupon_due(pk: str, sk: str, expires_at: datetime, *, now: datetime, shards: int, remind: int) -> tuple[str, str]:
    remind_at = expires_at - timedelta(days=remind)
    if remind and remind_at > now:
        return due_keys(COUPON_REMIND_JOB, remind_at, pk, shards, sk, now=now)
    return due_keys(COUPON_EXPIRE_JOB, expires_at, pk, shards, sk, now=now)


def get_coupon(db: Dynamo, shop_id: str, member_id: str, code: str) -> Coupon | None:
    item = db.get(member_pk(shop_id, member_id), coupon_sk(code))
    return model_of(Coupon, item) if item else None


def find_coupons(db: Dynamo, shop_id: str, member_id: str, codes: list[str]) -> dict[str, Coupon]:
    """The member's coupons among `codes` (normalised), one read per distinct code; codes not theirs are left out."""
    found = {}
    for code in dict.fromkeys(codes):
        coupon = find_coupon(db, shop_id, member_id, code)
        if coupon is not None:
            found[code] = coupon
    return found


def find_coupon(db: Dynamo, shop_id: str, member_id: str, code: str) -> Coupon | None:
    """The coupon with this code: the member's own (one read) or, failing that, whoever holds it, so a checkout
    can say 'not this member's' rather than 'unknown'."""
    own = get_coupon(db, shop_id, member_id, code)
    if own is not None:
        return own
    owner = db.get(code_pk(shop_id, code), CODE_SK, consistent=False)
    return get_coupon(db, shop_id, str(owner["member_id"]), code) if owner else None


def member_coupons(db: Dynamo, shop_id: str, member_id: str) -> list[Coupon]:
    return [model_of(Coupon, item) for item in db.query_all(member_pk(shop_id, member_id), COUPON_PREFIX)]


# ---------------------------------------------------------------------------- inside an order's transaction


def add_use(tx: Transaction, shop_id: str, member_id: str, code: str, order_id: str, at: datetime) -> int:
    """Mark a coupon used by an order; only an available coupon can be (two orders racing: one wins)."""
    return tx.update(
        {"PK": member_pk(shop_id, member_id), "SK": coupon_sk(code)},
        "SET #status = :used, order_id = :order, used_at = :at REMOVE DuePK, DueSK",
        values={":used": "used", ":order": order_id, ":at": iso(at), ":available": "available"},
        condition="#status = :available",
        names={"#status": "status"},
    )


def add_return(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    code: str,
    order_id: str,
    expires_at: datetime,
    *,
    now: datetime,
    shards: int,
) -> None:
    """Give a coupon back from a cancelled (or refunded) order: available again until its own expiry, or expired
    if that has passed meanwhile."""
    pk, sk = member_pk(shop_id, member_id), coupon_sk(code)
    values: dict[str, Any] = {":used": "used", ":order": order_id}
    if expires_at > now:
        due_pk_, due_sk_ = coupon_due(pk, sk, expires_at, now=now, shards=shards, remind=0)
        expression = "SET #status = :status, DuePK = :due_pk, DueSK = :due_sk REMOVE order_id, used_at"
        values |= {":status": "available", ":due_pk": due_pk_, ":due_sk": due_sk_}
    else:
        expression = "SET #status = :status REMOVE order_id, used_at"
        values[":status"] = "expired"
    tx.update(
        {"PK": pk, "SK": sk},
        expression,
        values=values,
        condition="#status = :used AND order_id = :order",
        names={"#status": "status"},
    )


# ---------------------------------------------------------------------------- the expiry run


def refile_for_expiry(db: Dynamo, pk: str, sk: str, expires_at: datetime, *, now: datetime, shards: int) -> bool:
    """After the reminder: file the coupon under its expiry. True only the first time (then publish)."""
    due_pk_, due_sk_ = due_keys(COUPON_EXPIRE_JOB, expires_at, pk, shards, sk, now=now)
    try:
        db.update(
            pk,
            sk,
            "SET reminded_at = :now, DuePK = :due_pk, DueSK = :due_sk",
            values={":now": iso(now), ":due_pk": due_pk_, ":due_sk": due_sk_, ":available": "available"},
            condition="#status = :available AND attribute_not_exists(reminded_at)",
            names={"#status": "status"},
        )
        return True
    except ConditionFailed:
        return False


def expire(db: Dynamo, pk: str, sk: str, now: datetime) -> bool:
    """An unused coupon past its expiry becomes expired and leaves the index. False if it was used or is not due."""
    try:
        db.update(
            pk,
            sk,
            "SET #status = :expired, expired_at = :now REMOVE DuePK, DueSK",
            values={":expired": "expired", ":now": iso(now), ":available": "available"},
            condition="#status = :available AND expires_at <= :now",
            names={"#status": "status"},
        )
        return True
    except ConditionFailed:
        return False


# ---------------------------------------------------------------------------- bulk grants


def create_grant(db: Dynamo, shop_id: str, grant: Item) -> Item | None:
    """Record a bulk grant; returns the existing record instead if this grant id exists (a replay)."""
    try:
        db.put(
            {"PK": grant_pk(shop_id, grant["grant_id"]), "SK": GRANT_SK, "type": "coupon_grant", **grant},
            condition="attribute_not_exists(PK)",
        )
    except ConditionFailed as exc:
        return exc.item or db.get(grant_pk(shop_id, grant["grant_id"]), GRANT_SK)
    return None


def note_refusal(db: Dynamo, shop_id: str, member_id: str, grant_id: str, chunk: int) -> None:
    """Note in the member's partition that a grant's batch lists them as refused (the batch's record names them),
    if they are a member."""
    tx = db.transaction()
    tx.check({"PK": member_pk(shop_id, member_id), "SK": PROFILE_SK}, "attribute_exists(PK)")
    tx.put({"PK": member_pk(shop_id, member_id), "SK": refusal_sk(grant_id, chunk), "type": "grant_refusal"})
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        if not exc.failed(0):
            raise


def refusal_sk(grant_id: str, chunk: int) -> str:
    return f"{GRANT_REFUSED_PREFIX}{grant_id}#{chunk:06d}"


def refusal_chunk_key(shop_id: str, sk: str) -> tuple[str, str]:
    """The batch record a member's refusal note points at."""
    grant_id, chunk = sk.removeprefix(GRANT_REFUSED_PREFIX).split("#")
    return grant_pk(shop_id, grant_id), f"{CHUNK_PREFIX}{chunk}"


def record_chunk(
    db: Dynamo, shop_id: str, grant_id: str, chunk: int, granted: int, refused: dict[str, str], now: datetime
) -> None:
    """A batch's outcome and the grant's totals, once: a redelivered batch finds its record and adds nothing. The
    members granted to are counted, not listed (each holds the coupon; a list would name them after an erasure);
    those refused are listed with why, for the shop's report."""
    pk = grant_pk(shop_id, grant_id)
    tx = db.transaction()
    tx.put(
        {"PK": pk, "SK": f"{CHUNK_PREFIX}{chunk:06d}", "granted": granted, "refused": refused, "at": iso(now)},
        condition="attribute_not_exists(SK)",
    )
    tx.update(
        {"PK": pk, "SK": GRANT_SK},
        "ADD granted :g, refused :r, chunks_done :one SET updated_at = :now",
        values={":g": granted, ":r": len(refused), ":one": 1, ":now": iso(now)},
        condition="attribute_exists(PK)",
    )
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        if exc.failed(1):
            raise NotFound(f"grant {grant_id} not found", field="grant_id") from exc
        if not exc.failed(0):
            raise


def get_grant(db: Dynamo, shop_id: str, grant_id: str) -> tuple[Item, dict[str, str]] | None:
    """The grant's record and every member it could not grant to, with why."""
    pk = grant_pk(shop_id, grant_id)
    grant = db.get(pk, GRANT_SK)
    if grant is None:
        return None
    refused: dict[str, str] = {}
    for chunk in db.query_all(pk, CHUNK_PREFIX):
        refused |= chunk.get("refused", {})
    return grant, refused
