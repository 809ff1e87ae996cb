"""A member's erasure (PIPL's and GDPR's right to be forgotten), as the table carries it out.

It begins with one transaction: the profile leaves the member's partition for a pseudonymous one (without phone,
e-mail, birthday or consent), the contact look-ups and the filed birthday are deleted, and a marker (`ERASURE`)
is left in the old partition. From that instant the member id names no member: every write to a member requires
its profile, so nothing more lands in the old partition. The rest of it is then moved, a page at a time, each
page one transaction (items re-keyed, their due-index places re-filed, reminders and idempotency records dropped,
the member id replaced by the pseudonym wherever an item holds it); items elsewhere that name the member (orders,
coupon codes, exchanges, lottery audit lines) are re-pointed first. The marker goes last, once `member.erased`
is published. Whoever finds the marker (the request, its replay, or the outbox run, which lists it) carries on
where it stopped.
"""

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from loyalty.domain.errors import Conflict, Retryable
from loyalty.domain.ledger import iso
from loyalty.domain.members import referral_code
from loyalty.store import coupons as coupon_store
from loyalty.store import lottery as lottery_store
from loyalty.store import members as member_store
from loyalty.store.dynamo import Dynamo, Item, TransactionCancelled
from loyalty.store.keys import (
    BIRTHDAY_SK,
    CARD_TRIES_PREFIX,
    CODE_SK,
    COUPON_EXPIRE_JOB,
    COUPON_PREFIX,
    COUPON_REMIND_JOB,
    DRAW_PREFIX,
    EXCHANGE_PREFIX,
    EXCHANGE_SK,
    GRANT_REFUSED_PREFIX,
    IDEMPOTENCY_PREFIX,
    LEDGER_PREFIX,
    LOT_PREFIX,
    ORDER_SK,
    PROFILE_SK,
    PUBLISH_JOB,
    REFEREE_PREFIX,
    REFERRAL_SK,
    REMIND_JOB,
    REMIND_PREFIX,
    WALLET_LEDGER_PREFIX,
    WALLET_LOT_PREFIX,
    WALLET_REMIND_PREFIX,
    WALLET_SK,
    code_of,
    code_pk,
    due_keys,
    erased_pk,
    exchange_pk,
    member_pk,
    members_keys,
    order_pk,
)

ERASURE_SK = "ERASURE"  # in the old partition while it is being emptied: where its items go
ERASED_SK = "ERASED"  # under the member's keyed digest: the pseudonym their erasure gave them
PERSONAL = (
    "phone",
    "email",
    "birthday",
    "referred_by",
    "marketing_consent",
    "consent",
)  # what a profile says of the person
# Not carried over: reminders (an erased member is sent nothing), answers kept for replays (no one can replay
# as them now, and each names them), and the counters of card attempts (expire by TTL anyway).
DROPPED = (
    REMIND_PREFIX,
    WALLET_REMIND_PREFIX,
    IDEMPOTENCY_PREFIX,
    CARD_TRIES_PREFIX,
    BIRTHDAY_SK,
    GRANT_REFUSED_PREFIX,
)
PAGE = 45  # items moved per transaction: a Put and a Delete each, and room for what they point at
MAX_ACTIONS = 100  # DynamoDB's limit on one transaction


def begin(
    db: Dynamo,
    shop_id: str,
    member_id: str,
    ref: str,
    pseudonym_of: Callable[[str], str],
    *,
    now: datetime,
    shards: int,
) -> str | None:
    """Take the member's profile and contacts out, in one transaction (the erasure's audited one). Returns the
    pseudonym, `pseudonym_of(enrolled_at)`: one per enrolment, so an id enrolled again after its erasure can be
    erased again. It is also kept under `ref` (the member's keyed digest, as the audit trail names them), so a
    repeated request finds it. None: no such member (erased before, or never). Conflict (`wallet`) while the
    wallet still holds money the member paid in: it is theirs, to be refunded first."""
    old_pk = member_pk(shop_id, member_id)
    for _ in range(3):
        found = db.get_many([(old_pk, PROFILE_SK), (old_pk, WALLET_SK)], consistent=True)
        profile, wallet = found.get((old_pk, PROFILE_SK)), found.get((old_pk, WALLET_SK))
        if profile is None:
            return None
        if wallet is not None and int(wallet.get("principal", 0)) > 0:
            raise Conflict(
                "the member's wallet holds money they paid in; refund it before erasing them",
                field="wallet",
                code="wallet_not_empty",
            )
        pseudonym = pseudonym_of(str(profile["enrolled_at"]))
        new_pk = member_pk(shop_id, pseudonym)
        tx = db.transaction()
        # The copy is made from what was read: any write to the member since then refuses this transaction.
        tx.delete(
            {"PK": old_pk, "SK": PROFILE_SK},
            condition="updated_at = :updated AND rev = :rev"
            if "updated_at" in profile
            else "attribute_not_exists(updated_at) AND rev = :rev",
            values={
                ":rev": profile.get("rev", 0),
                **({":updated": profile["updated_at"]} if "updated_at" in profile else {}),
            },
        )
        kept = _moved(profile, member_id, pseudonym, new_pk, now=now, shards=shards)
        kept |= members_keys(shop_id, pseudonym) | {
            "member_id": pseudonym,
            "erased_at": iso(now),
            "updated_at": iso(now),
        }
        tx.put(kept, condition="attribute_not_exists(PK)")
        contacts = {kind: profile[kind] for kind in ("email", "phone") if profile.get(kind)}
        contacts[member_store.REFERRAL_CODE] = referral_code(shop_id, member_id)
        for kind, value in contacts.items():
            member_store.add_contact_release(tx, shop_id, kind, value, member_id)
        tx.delete({"PK": old_pk, "SK": BIRTHDAY_SK})
        # The marker is also on the outbox's index: the nightly run finishes an erasure its request could not.
        due_pk, due_sk = due_keys(PUBLISH_JOB, now, old_pk, shards, ERASURE_SK, now=now)
        tx.put(
            {"PK": old_pk, "SK": ERASURE_SK, "type": "erasure", "pseudonym": pseudonym, "at": iso(now)}
            | {"DuePK": due_pk, "DueSK": due_sk}
        )
        if wallet is not None:  # unchanged since it was read empty
            tx.check({"PK": old_pk, "SK": WALLET_SK}, "principal = :zero", values={":zero": 0})
        tx.put(
            {"PK": erased_pk(shop_id, ref), "SK": ERASED_SK, "type": "erased", "pseudonym": pseudonym, "at": iso(now)}
        )
        try:
            db.commit(tx)
        except TransactionCancelled as exc:
            if exc.failed(1):
                raise Conflict("the member's pseudonym is taken", field="member_id") from exc
            continue  # the member changed (or another erasure began) meanwhile: read again
        return pseudonym
    raise Retryable(f"member {member_id} kept changing; try the erasure again")


def marker(db: Dynamo, shop_id: str, member_id: str) -> Item | None:
    return db.get(member_pk(shop_id, member_id), ERASURE_SK)


def finish(db: Dynamo, shop_id: str, member_id: str) -> None:
    """The last of the old partition: its marker (once member.erased is published, so a failed publish is retried
    by whoever finds the marker next)."""
    tx = db.transaction()
    tx.audited = True
    tx.delete({"PK": member_pk(shop_id, member_id), "SK": ERASURE_SK})
    db.commit(tx)


def erased_as(db: Dynamo, shop_id: str, ref: str) -> str | None:
    """The pseudonym of the member (by `ref`) as their latest erasure left it, if they were erased."""
    item = db.get(erased_pk(shop_id, ref), ERASED_SK)
    return str(item["pseudonym"]) if item else None


def move_page(db: Dynamo, shop_id: str, member_id: str, pseudonym: str, *, now: datetime, shards: int) -> bool:
    """Move one page of the old partition; True when it is empty (and the marker gone)."""
    old_pk, new_pk = member_pk(shop_id, member_id), member_pk(shop_id, pseudonym)
    items, _ = db.query_page(old_pk, "", limit=PAGE)
    rest = [item for item in items if item["SK"] != ERASURE_SK]
    _repoint(db, shop_id, member_id, pseudonym, rest)
    tx = db.transaction()
    tx.audited = True  # the erasure's entry is on its first transaction; this is its continuation
    for item in rest:
        tx.delete({"PK": old_pk, "SK": item["SK"]})
        if not item["SK"].startswith(DROPPED):
            tx.put(_moved(item, member_id, pseudonym, new_pk, now=now, shards=shards))
    done = len(items) < PAGE  # the page held all that was left (the marker stays until finish())
    db.commit(tx)
    return done


def _repoint(db: Dynamo, shop_id: str, member_id: str, pseudonym: str, items: Iterable[Item]) -> None:
    """Items outside the partition that name the member get the pseudonym instead: the orders its ledger and lots
    refer to, its coupons' codes, its exchanges' look-ups, the lotteries' audit lines of its draws, and the
    members it referred (their `referrer`); the referrer's pointer to it is re-keyed. Each only while it still
    names this member (a reference may be another member's order), so a repeat changes nothing."""
    named_by: dict[tuple[str, str], str] = {}  # an item that may name the member -> the attribute that would
    for item in items:
        sk = str(item["SK"])
        if sk.startswith((LEDGER_PREFIX, LOT_PREFIX, WALLET_LEDGER_PREFIX, WALLET_LOT_PREFIX)) and item.get(
            "reference"
        ):
            named_by[(order_pk(shop_id, str(item["reference"])), ORDER_SK)] = "member_id"
        elif sk.startswith(COUPON_PREFIX):
            named_by[(code_pk(shop_id, code_of(sk)), CODE_SK)] = "member_id"
        elif sk.startswith(EXCHANGE_PREFIX) and item.get("exchange_id"):
            named_by[(exchange_pk(shop_id, str(item["exchange_id"])), EXCHANGE_SK)] = "member_id"
        elif sk.startswith(DRAW_PREFIX):
            named_by |= dict.fromkeys(lottery_store.audit_line_keys(shop_id, item), "member_id")
        elif sk.startswith(REFEREE_PREFIX):
            referee = member_pk(shop_id, sk.removeprefix(REFEREE_PREFIX))
            named_by |= {(referee, PROFILE_SK): "referrer", (referee, REFERRAL_SK): "referrer"}
        elif sk == REFERRAL_SK:
            named_by[(member_pk(shop_id, str(item["referrer"])), f"{REFEREE_PREFIX}{member_id}")] = "SK"
        elif sk.startswith(GRANT_REFUSED_PREFIX):
            named_by[coupon_store.refusal_chunk_key(shop_id, sk)] = "refused"
    if not named_by:
        return
    found = db.get_many(sorted(named_by), consistent=True)
    naming = [
        (key, attribute)
        for key, item in found.items()
        if (attribute := named_by[key]) == "SK"
        or item.get(attribute) == member_id
        or (attribute == "refused" and member_id in item.get("refused", {}))
    ]
    for start in range(0, len(naming), MAX_ACTIONS // 2):
        tx = db.transaction()
        tx.audited = True
        for (pk, sk), attribute in naming[start : start + MAX_ACTIONS // 2]:
            if attribute == "SK":  # the referrer's pointer: its key names the member
                tx.delete({"PK": pk, "SK": sk}, condition="attribute_exists(SK)")
                tx.put(found[(pk, sk)] | {"SK": f"{REFEREE_PREFIX}{pseudonym}"})
                continue
            if attribute == "refused":  # a grant's batch lists the member, with why, by id
                tx.update(
                    {"PK": pk, "SK": sk},
                    "SET refused.#pseudonym = refused.#member REMOVE refused.#member",
                    condition="attribute_exists(refused.#member)",
                    names={"#pseudonym": pseudonym, "#member": member_id},
                )
                continue
            tx.update(
                {"PK": pk, "SK": sk},
                "SET #named = :pseudonym",
                values={":pseudonym": pseudonym, ":member": member_id},
                condition="#named = :member",
                names={"#named": attribute},
            )
        try:
            db.commit(tx)
        except TransactionCancelled as exc:  # one changed hands meanwhile (~never): the next attempt reads again
            raise Retryable("an item naming the member changed during its erasure; try again") from exc


def _moved(item: Item, member_id: str, pseudonym: str, new_pk: str, *, now: datetime, shards: int) -> Item:
    """The item as it is kept under the pseudonym: re-keyed, the member id replaced wherever it is a value, no
    personal field, and re-filed on the due index under its new key (a coupon's reminder becomes its expiry)."""
    moved: Item = _replaced(item, member_id, pseudonym)
    moved["PK"] = new_pk
    due_pk = item.get("DuePK")
    if due_pk is not None:
        job, at_text = str(due_pk).split("#")[1], str(item["DueSK"]).split("#", 1)[0]
        at = datetime.fromisoformat(at_text.replace("Z", "+00:00"))
        if job == COUPON_REMIND_JOB:
            job, at = COUPON_EXPIRE_JOB, datetime.fromisoformat(str(item["expires_at"]).replace("Z", "+00:00"))
        if job == REMIND_JOB:
            del moved["DuePK"], moved["DueSK"]
        else:
            moved["DuePK"], moved["DueSK"] = due_keys(job, at, new_pk, shards, str(item["SK"]), now=now)
    return moved


def _replaced(value: Any, member_id: str, pseudonym: str) -> Any:
    """The value with the member id replaced by the pseudonym, and personal fields (a birthday ledger entry's
    date) left out, at any depth."""
    if value == member_id:
        return pseudonym
    if isinstance(value, dict):
        return {name: _replaced(inner, member_id, pseudonym) for name, inner in value.items() if name not in PERSONAL}
    if isinstance(value, list):
        return [_replaced(inner, member_id, pseudonym) for inner in value]
    return value
