"""Members, their contact look-ups, lots and ledger."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from loyalty.domain.errors import Conflict
from loyalty.domain.ledger import Balance, Draw, LedgerEntry, Lot, iso
from loyalty.domain.members import Member, Profile
from loyalty.domain.tiers import MemberTier, TierChange
from loyalty.store.dynamo import ConditionFailed, Dynamo, Item, Transaction, TransactionCancelled, model_of
from loyalty.store.keys import (
    CONTACT_SK,
    EXPIRE_JOB,
    LEDGER_PREFIX,
    LOT_PREFIX,
    ORDER_SK,
    PROFILE_SK,
    PUBLISH_JOB,
    REMIND_JOB,
    REVIEW_JOB,
    TIER_PREFIX,
    contact_pk,
    due_keys,
    ledger_sk,
    lot_id_of,
    lot_sk,
    member_pk,
    order_pk,
    remind_sk,
    tier_decision_sk,
)

# A transaction holds at most 100 actions; keep room for the order, member, ledger and idempotency items.
MAX_DRAWS = 90


def enrol(db: Dynamo, shop_id: str, profile: Profile, now: datetime) -> tuple[bool, Member]:
    """Create the member and claim its phone and e-mail for it, atomically. Returns (created, member).

    Enrolling again with identical details is a replay (created False); different details are a conflict.
    """
    pk = member_pk(shop_id, profile.member_id)
    tx = db.transaction()
    item = {
        "PK": pk,
        "SK": PROFILE_SK,
        "type": "member",
        **profile.model_dump(mode="json"),
        "enrolled_at": iso(now),
        "available": 0,
        "pending": 0,
        "debt": 0,
        "qualifying": {},
        "rev": 0,
    }
    tx.put(item, condition="attribute_not_exists(PK)")
    contacts = profile.contacts()
    for kind, value in contacts.items():
        tx.put(
            {
                "PK": contact_pk(shop_id, kind, value),
                "SK": CONTACT_SK,
                "type": "contact",
                "kind": kind,
                "member_id": profile.member_id,
            },
            condition="attribute_not_exists(PK) OR member_id = :member",
            values={":member": profile.member_id},
        )
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        if exc.failed(0):
            existing = exc.items[0] or db.get(pk, PROFILE_SK)
            if existing and _profile(existing) == profile:
                return False, _member(existing)
            raise Conflict(f"member {profile.member_id} exists with other details", field="member_id") from exc
        for index, kind in enumerate(contacts, start=1):
            if exc.failed(index):
                raise Conflict(f"this {kind} belongs to another member", field=kind) from exc
        raise
    return True, _member(item)  # what was written, without reading it back


def get_member(db: Dynamo, shop_id: str, member_id: str, *, consistent: bool = True) -> Member | None:
    item = db.get(member_pk(shop_id, member_id), PROFILE_SK, consistent=consistent)
    return _member(item) if item else None


def find_member_id(db: Dynamo, shop_id: str, kind: str, normalised: str) -> str | None:
    item = db.get(contact_pk(shop_id, kind, normalised), CONTACT_SK, consistent=False)
    return str(item["member_id"]) if item else None


def lots(db: Dynamo, shop_id: str, member_id: str) -> list[Lot]:
    """Every lot with points left, oldest-expiring first (the sort key's order)."""
    return [_lot(item) for item in db.query_all(member_pk(shop_id, member_id), LOT_PREFIX)]


def ledger_page(
    db: Dynamo, shop_id: str, member_id: str, *, limit: int, start: Item | None
) -> tuple[list[LedgerEntry], Item | None]:
    items, last = db.query_page(
        member_pk(shop_id, member_id), LEDGER_PREFIX, limit=limit, newest_first=True, start=start, consistent=False
    )
    return [model_of(LedgerEntry, item) for item in items], last


def ledger_all(db: Dynamo, shop_id: str, member_id: str) -> list[LedgerEntry]:
    """Oldest first; for audits and tests."""
    return [model_of(LedgerEntry, item) for item in db.query_all(member_pk(shop_id, member_id), LEDGER_PREFIX)]


# ---------------------------------------------------------------------------- transaction parts


def add_balance_change(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    *,
    available: int,
    pending: int,
    debt: int,
    now: datetime,
    expect_available: int | None = None,
    expect_debt: int | None = None,
    at_least: int | None = None,
    tier: "TierUpdate | None" = None,
) -> int:
    """ADD the changes to the member, which must exist. The `expect_*` values are what the change was computed
    from and must still hold; `at_least` requires that many available points (a spend never overdraws).
    `tier` moves the tier metric and applies a tier decision, in the same update (one action per item)."""
    condition = "attribute_exists(PK)"
    values: dict[str, Any] = {":a": available, ":p": pending, ":d": debt, ":now": iso(now)}
    names: dict[str, str] = {}
    sets = ["updated_at = :now"]
    removes: list[str] = []
    if expect_available is not None:
        condition += " AND available = :ea"
        values[":ea"] = expect_available
    if expect_debt is not None:
        condition += " AND debt = :ed"
        values[":ed"] = expect_debt
    if at_least is not None:
        condition += " AND available >= :least"
        values[":least"] = at_least
    if tier is not None:
        tier.apply(member_pk(shop_id, member_id), sets, removes, values, names, now=now)
        if tier.expect_rev is not None:
            condition += " AND rev = :rev"
            values[":rev"] = tier.expect_rev
    expression = "ADD available :a, pending :p, debt :d SET " + ", ".join(sets)
    if removes:
        expression += " REMOVE " + ", ".join(removes)
    return tx.update(
        {"PK": member_pk(shop_id, member_id), "SK": PROFILE_SK},
        expression,
        values=values,
        condition=condition,
        names=names or None,
    )


@dataclass(frozen=True)
class TierUpdate:
    """What a settlement or a review changes of a member's tier state."""

    day: str | None  # the qualifying day whose metric moves
    delta: int
    change: TierChange | None
    expect_rev: int | None  # the tier state the decision was made on; None: nothing was decided
    shards: int

    def apply(
        self,
        pk: str,
        sets: list[str],
        removes: list[str],
        values: dict[str, Any],
        names: dict[str, str],
        *,
        now: datetime,
    ) -> None:
        sets.append("rev = if_not_exists(rev, :zero) + :one")
        values |= {":zero": 0, ":one": 1}
        if self.day is not None and self.delta:
            names["#day"] = self.day
            sets.append("qualifying.#day = if_not_exists(qualifying.#day, :zero) + :q")
            values[":q"] = self.delta
        change = self.change
        if change is None:
            return
        sets.append("tier = :tier")
        values[":tier"] = change.to_tier
        if change.moved:
            sets.append("tier_since = :since")
            values[":since"] = iso(change.at)
        if change.review_at is None:
            removes.extend(["tier_review_at", "DuePK", "DueSK"])
        else:
            sets.extend(["tier_review_at = :review", "DuePK = :due_pk", "DueSK = :due_sk"])
            due_pk_, due_sk_ = due_keys(REVIEW_JOB, change.review_at, pk, self.shards, PROFILE_SK, now=now)
            values |= {":review": iso(change.review_at), ":due_pk": due_pk_, ":due_sk": due_sk_}


def add_tier_decision(
    tx: Transaction, shop_id: str, member_id: str, change: TierChange, shards: int, *, now: datetime
) -> None:
    """Record a tier decision. One that moved the tier is also listed for publishing as tier.changed (an outbox:
    published right after the commit, and by the review run for any the first attempt missed)."""
    pk, sk = member_pk(shop_id, member_id), tier_decision_sk(change)
    item: Item = {"PK": pk, "SK": sk, "type": "tier_decision", **change.model_dump(mode="json")}
    if change.moved:
        item["DuePK"], item["DueSK"] = due_keys(PUBLISH_JOB, change.at, pk, shards, sk, now=now)
    tx.put(item)


def tier_history(db: Dynamo, shop_id: str, member_id: str) -> list[TierChange]:
    return [model_of(TierChange, item) for item in db.query_all(member_pk(shop_id, member_id), TIER_PREFIX)]


def unpublished_tier_decision(db: Dynamo, pk: str, sk: str) -> TierChange | None:
    """A tier decision still in the outbox (its tier.changed not yet published), or None."""
    item = db.get(pk, sk)
    return model_of(TierChange, item) if item is not None and "DuePK" in item else None


def add_lot(
    tx: Transaction, shop_id: str, member_id: str, lot: Lot, *, now: datetime, shards: int, remind_days: int
) -> None:
    """A new lot; one that expires is listed in the due index for the expiry run, and its member's reminder
    for that expiry instant is listed for the reminder run `remind_days` ahead."""
    pk, sk = member_pk(shop_id, member_id), lot_sk(lot.lot_id)
    item: Item = {"PK": pk, "SK": sk, "type": "lot", **lot.model_dump(mode="json", exclude={"lot_id"})}
    if lot.expires_at is not None:
        # A lot that is already past its expiry (a very late event) is due at once, in today's partition.
        item["DuePK"], item["DueSK"] = due_keys(EXPIRE_JOB, lot.expires_at, pk, shards, sk, now=now)
    tx.put(item, condition="attribute_not_exists(SK)")
    if lot.expires_at is not None and remind_days > 0:
        remind_at = lot.expires_at - timedelta(days=remind_days)
        reminder = remind_sk(lot.expires_at)
        due_pk_, due_sk_ = due_keys(REMIND_JOB, remind_at, pk, shards, reminder, now=now)
        # Re-listing a reminder that was already sent is harmless: the run sends each one once (reminded_at).
        tx.update(
            {"PK": pk, "SK": reminder},
            "SET #type = :type, expires_at = :expires, DuePK = :due_pk, DueSK = :due_sk",
            values={":type": "reminder", ":expires": iso(lot.expires_at), ":due_pk": due_pk_, ":due_sk": due_sk_},
            names={"#type": "type"},
        )


def add_returned_lot(tx: Transaction, shop_id: str, member_id: str, lot: Lot, *, now: datetime, shards: int) -> None:
    """Points given back to a lot like the one they were spent from: created, or grown if an earlier partial
    refund made it already (and the member may have spent from it since)."""
    pk, sk = member_pk(shop_id, member_id), lot_sk(lot.lot_id)
    sets = "#type = :type, earned_at = :earned, #source = :source, #reference = :ref"
    values: dict[str, Any] = {
        ":n": lot.remaining,
        ":type": "lot",
        ":earned": iso(lot.earned_at),
        ":source": lot.source,
        ":ref": lot.reference,
    }
    if lot.expires_at is not None:
        sets += ", expires_at = :expires, DuePK = :due_pk, DueSK = :due_sk"
        due_pk_, due_sk_ = due_keys(EXPIRE_JOB, lot.expires_at, pk, shards, sk, now=now)
        values |= {":expires": iso(lot.expires_at), ":due_pk": due_pk_, ":due_sk": due_sk_}
    tx.update(
        {"PK": pk, "SK": sk},
        f"ADD remaining :n, granted :n SET {sets}",
        values=values,
        names={"#type": "type", "#source": "source", "#reference": "reference"},
    )


def add_draws(tx: Transaction, shop_id: str, member_id: str, draws: list[Draw]) -> None:
    """Each draw takes from a lot whose remainder must be what it was read as; an emptied lot is deleted."""
    if len(draws) > MAX_DRAWS:
        raise Conflict(f"this would draw on {len(draws)} lots; at most {MAX_DRAWS} at once", field="points")
    for item in draws:
        key = {"PK": member_pk(shop_id, member_id), "SK": lot_sk(item.lot_id)}
        if item.take == item.remaining_before:
            tx.delete(key, condition="remaining = :before", values={":before": item.remaining_before})
        else:
            tx.update(
                key,
                "ADD remaining :minus",
                values={":minus": -item.take, ":before": item.remaining_before},
                condition="remaining = :before",
            )


def add_entry(tx: Transaction, shop_id: str, member_id: str, entry: LedgerEntry) -> int:
    return tx.put(
        {
            "PK": member_pk(shop_id, member_id),
            "SK": ledger_sk(entry.at, entry.reason, entry.reference),
            "type": "ledger",
            **entry.model_dump(mode="json"),
        },
        condition="attribute_not_exists(SK)",
    )


# ---------------------------------------------------------------------------- item -> model


def _profile(item: Item) -> Profile:
    return model_of(Profile, item)  # absent fields are None: None is never stored


def _member(item: Item) -> Member:
    return Member(
        profile=_profile(item),
        balance=Balance(available=item["available"], pending=item["pending"], debt=item["debt"]),
        enrolled_at=item["enrolled_at"],
        tier=MemberTier(
            tier=item.get("tier"),
            since=item.get("tier_since"),
            review_at=item.get("tier_review_at"),
            qualifying=item.get("qualifying", {}),
            rev=item.get("rev", 0),
        ),
    )


def _lot(item: Item) -> Lot:
    return model_of(Lot, item, lot_id=lot_id_of(item["SK"]))


# ---------------------------------------------------------------------------- expiry and reminders


def get_lot(db: Dynamo, pk: str, sk: str) -> Lot | None:
    item = db.get(pk, sk)
    return _lot(item) if item else None


def lot_from_index(item: Item) -> Lot | None:
    """The lot as the due index projects it (possibly a little stale: writes condition on `remaining`)."""
    try:
        return _lot(item)
    except (KeyError, ValueError):
        return None


def commit_lapse(db: Dynamo, shop_id: str, member_id: str, lot: Lot, entry: LedgerEntry, now: datetime) -> None:
    """Remove what is left of an expired lot, in one transaction: the lot (at the remainder it was read at), the
    member's balance, the ledger entry, and the order's count of lapsed points (so a later refund does not take
    them a second time)."""
    tx = db.transaction()
    tx.delete(
        {"PK": member_pk(shop_id, member_id), "SK": lot_sk(lot.lot_id)},
        condition="remaining = :left",
        values={":left": lot.remaining},
    )
    add_balance_change(tx, shop_id, member_id, available=entry.points, pending=0, debt=0, now=now)
    add_entry(tx, shop_id, member_id, entry)
    if lot.source == "purchase":
        tx.update(
            {"PK": order_pk(shop_id, lot.reference), "SK": ORDER_SK},
            "ADD expired :lapsed",
            values={":lapsed": lot.remaining},
            condition="attribute_exists(PK)",
        )
    db.commit(tx)


def mark_reminded(db: Dynamo, pk: str, sk: str, now: datetime) -> bool:
    """Take the reminder off the due index; True only the first time (it is then to be published)."""
    try:
        db.update(
            pk,
            sk,
            "SET reminded_at = :now REMOVE DuePK, DueSK",
            values={":now": iso(now)},
            condition="attribute_exists(PK) AND attribute_not_exists(reminded_at)",
        )
        return True
    except ConditionFailed:
        db.update(pk, sk, "REMOVE DuePK, DueSK")  # sent before: just leave the index
        return False


def unmark_reminded(db: Dynamo, pk: str, sk: str, due: tuple[str, str]) -> None:
    """Put a reminder (of points or of a coupon) back on the index after its event could not be published."""
    db.update(
        pk, sk, "SET DuePK = :due_pk, DueSK = :due_sk REMOVE reminded_at", values={":due_pk": due[0], ":due_sk": due[1]}
    )


def lots_expiring_at(db: Dynamo, shop_id: str, member_id: str, expires_at: datetime) -> int:
    prefix = f"{LOT_PREFIX}{iso(expires_at)}#"
    return sum(int(item["remaining"]) for item in db.query_all(member_pk(shop_id, member_id), prefix))
