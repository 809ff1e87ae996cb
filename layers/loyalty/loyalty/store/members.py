"""Members, their contact look-ups, lots and ledger."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from loyalty.domain.errors import Conflict, Retryable
from loyalty.domain.ledger import Balance, iso
from loyalty.domain.members import ConsentRecord, Member, Profile, referral_code
from loyalty.domain.tiers import MemberTier, TierChange
from loyalty.store.dynamo import ConditionFailed, Dynamo, Item, Transaction, TransactionCancelled, model_of
from loyalty.store.keys import (
    BIRTHDAY_JOB,
    BIRTHDAY_SK,
    CONTACT_SK,
    MEMBER_SHARDS,
    PROFILE_SK,
    PUBLISH_JOB,
    REFEREE_PREFIX,
    REFERRAL_SK,
    REVIEW_JOB,
    TIER_PREFIX,
    contact_pk,
    due_keys,
    member_pk,
    members_keys,
    members_pk,
    tier_decision_sk,
)

REFERRAL_CODE = "refcode"  # the kind of contact item a referral code is claimed as


def enrol(
    db: Dynamo,
    shop_id: str,
    profile: Profile,
    now: datetime,
    *,
    birthday: tuple[date, datetime] | None = None,
    referrer: str | None = None,
    shards: int = 8,
    opening: tuple[int, Callable[[Transaction], None]] | None = None,
    tier: TierChange | None = None,
) -> tuple[bool, Member]:
    """Create the member and claim its phone and e-mail for it, atomically; with `birthday` (its next local date and
    the instant that day begins), file it for the birthday run in the same transaction. The member's referral code
    is claimed for them; with `referrer` (the member their `referred_by` code names), the referral waits for their
    first order. Returns (created, member).

    An import brings an `opening` balance (the points, and what adds their lots and ledger entries to the
    transaction) and a `tier` (held from now until its review).

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
        **members_keys(shop_id, profile.member_id),  # listed on the MembersIndex (monthly benefits, exports)
    }
    if referrer is not None:
        item["referrer"] = referrer
    if opening is not None:
        item["available"] = opening[0]
    if profile.marketing_consent:  # given at enrolment: the shop asked for it there
        item["consent"] = ConsentRecord(given=True, at=now, by="enrolment").model_dump(mode="json")
    if tier is not None:
        item |= {"tier": tier.to_tier, "tier_since": iso(tier.at), "rev": 1}
        if tier.review_at is not None:
            item["tier_review_at"] = iso(tier.review_at)
            item["DuePK"], item["DueSK"] = due_keys(REVIEW_JOB, tier.review_at, pk, shards, PROFILE_SK, now=now)
    tx.put(item, condition="attribute_not_exists(PK)")
    # The referral code is claimed like a contact: unique in the shop, found by its digest.
    contacts = profile.contacts() | {REFERRAL_CODE: referral_code(shop_id, profile.member_id)}
    for kind, value in contacts.items():
        add_contact_claim(tx, shop_id, kind, value, profile.member_id)
    if birthday is not None:
        add_next_birthday(tx, shop_id, profile.member_id, *birthday, now=now, shards=shards)
    if opening is not None:
        opening[1](tx)
    if tier is not None:
        add_tier_decision(tx, shop_id, profile.member_id, tier, shards, now=now)
    if referrer is not None:
        item_referral = {"PK": pk, "SK": REFERRAL_SK, "type": "referral", "referrer": referrer, "status": "waiting"}
        tx.put(item_referral, condition="attribute_not_exists(SK)")
        # The referrer's side: an erasure of either finds the other's items that name them.
        tx.put({"PK": member_pk(shop_id, referrer), "SK": f"{REFEREE_PREFIX}{profile.member_id}", "type": "referee"})
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        if exc.failed(0):
            existing = exc.items[0] or db.get(pk, PROFILE_SK)
            # Consent is the member's to change since: a shop enrolling on every login still gets its replay.
            if (
                existing
                and _profile(existing).model_copy(update={"marketing_consent": profile.marketing_consent}) == profile
            ):
                return False, member_from_item(existing)
            raise Conflict(f"member {profile.member_id} exists with other details", field="member_id") from exc
        for index, kind in enumerate(contacts, start=1):
            if exc.failed(index) and kind == REFERRAL_CODE:  # two member ids whose codes collide: ~never
                raise Conflict("this member id's referral code is taken; choose another id", field="member_id") from exc
            if exc.failed(index):
                raise Conflict(f"this {kind} belongs to another member", field=kind) from exc
        raise
    return True, member_from_item(item)  # what was written, without reading it back


def add_next_birthday(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    day: date,
    starts: datetime,
    *,
    now: datetime,
    shards: int,
    replacing: date | None = None,
) -> int:
    """File the member's next birthday (its local date, due when that day begins) for the birthday run. `replacing`:
    the birthday a run has just celebrated, which must still be the one filed (so it is celebrated once)."""
    pk = member_pk(shop_id, member_id)
    due_pk_, due_sk_ = due_keys(BIRTHDAY_JOB, starts, pk, shards, BIRTHDAY_SK, now=now)
    item = {"PK": pk, "SK": BIRTHDAY_SK, "type": "birthday", "day": day.isoformat(), "DuePK": due_pk_, "DueSK": due_sk_}
    if replacing is None:
        return tx.put(item, condition="attribute_not_exists(SK)")
    return tx.put(
        item, condition="#day = :celebrated", values={":celebrated": replacing.isoformat()}, names={"#day": "day"}
    )


def change_profile(
    db: Dynamo,
    shop_id: str,
    before: Profile,
    after: Profile,
    *,
    birthday: tuple[date, datetime] | None,
    consent: ConsentRecord | None,
    now: datetime,
    shards: int,
) -> None:
    """Write a changed profile in one transaction: only while it is still as it was read, its contacts moved
    (the old look-up deleted, the new one claimed: Conflict naming the field if another member holds it), and its
    filed birthday replaced by `birthday` (its next local date and when that begins) or removed. A change of
    consent comes with its record (`consent`: when, and by whom)."""
    pk = member_pk(shop_id, before.member_id)
    tx = db.transaction()
    fields = ("phone", "email", "birthday", "marketing_consent")
    values: dict[str, Any] = {":now": iso(now)}
    names: dict[str, str] = {}
    sets, removes, condition = ["updated_at = :now"], [], ["attribute_exists(PK)"]
    for index, name in enumerate(fields):
        names[f"#f{index}"] = name
        old, new = getattr(before, name), getattr(after, name)
        new = new.isoformat() if isinstance(new, date) else new
        old = old.isoformat() if isinstance(old, date) else old
        if new is None:
            removes.append(f"#f{index}")
        else:
            sets.append(f"#f{index} = :new{index}")
            values[f":new{index}"] = new
        if old is None or old is False:  # not stored (or consent never given: members from before it was asked)
            condition.append(f"(attribute_not_exists(#f{index}) OR #f{index} = :old{index})")
            values[f":old{index}"] = old if old is not None else ""
        else:
            condition.append(f"#f{index} = :old{index}")
            values[f":old{index}"] = old
    if consent is not None:
        sets.append("consent = :consent")
        values[":consent"] = consent.model_dump(mode="json")
    expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
    tx.update({"PK": pk, "SK": PROFILE_SK}, expression, values=values, condition=" AND ".join(condition), names=names)
    claims: dict[int, str] = {}
    old_contacts, new_contacts = before.contacts(), after.contacts()
    for kind in ("email", "phone"):
        if old_contacts.get(kind) == new_contacts.get(kind):
            continue
        if kind in old_contacts:
            add_contact_release(tx, shop_id, kind, old_contacts[kind], before.member_id)
        if kind in new_contacts:
            claims[add_contact_claim(tx, shop_id, kind, new_contacts[kind], before.member_id)] = kind
    if before.birthday != after.birthday:
        if birthday is None:
            tx.delete({"PK": pk, "SK": BIRTHDAY_SK})
        else:
            due_pk_, due_sk_ = due_keys(BIRTHDAY_JOB, birthday[1], pk, shards, BIRTHDAY_SK, now=now)
            tx.put(
                {"PK": pk, "SK": BIRTHDAY_SK, "type": "birthday", "day": birthday[0].isoformat()}
                | {"DuePK": due_pk_, "DueSK": due_sk_}
            )
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        for index, kind in claims.items():
            if exc.failed(index):
                raise Conflict(f"this {kind} belongs to another member", field=kind) from exc
        if exc.failed(0):
            raise Retryable("the member changed meanwhile; try again") from exc
        raise


def add_contact_claim(tx: Transaction, shop_id: str, kind: str, value: str, member_id: str) -> int:
    """Claim a unique contact (an e-mail, a phone, a referral code) for the member: refused if another holds it."""
    return tx.put(
        {"PK": contact_pk(shop_id, kind, value), "SK": CONTACT_SK, "type": "contact", "kind": kind}
        | {"member_id": member_id},
        condition="attribute_not_exists(PK) OR member_id = :member",
        values={":member": member_id},
    )


def add_contact_release(tx: Transaction, shop_id: str, kind: str, value: str, member_id: str) -> int:
    """Free a contact the member held (never one another member holds now)."""
    return tx.delete(
        {"PK": contact_pk(shop_id, kind, value), "SK": CONTACT_SK},
        condition="attribute_not_exists(PK) OR member_id = :member",
        values={":member": member_id},
    )


def unlisted_members(
    db: Dynamo, *, segment: int, segments: int, start: Item | None = None
) -> tuple[list[Item], Item | None]:
    """A page of the profiles of members enrolled before the MembersIndex (a one-off migration's Scan), and where
    the next page of this segment starts (None: the segment is done)."""
    return db.scan_page(
        "SK = :profile AND attribute_not_exists(MembersSK)",
        {":profile": PROFILE_SK},
        segment=segment,
        segments=segments,
        start=start,
    )


def bring_up_to_date(
    db: Dynamo,
    shop_id: str,
    member_id: str,
    *,
    birthday: tuple[date, datetime] | None,
    now: datetime,
    shards: int,
) -> bool:
    """Give a member enrolled before this release what enrolment gives today: their MembersIndex keys, their
    referral code claimed, and their next birthday filed (unless one is filed). One transaction; a referral code
    another member holds, or a birthday already filed, is left as it is. False: already done."""
    pk = member_pk(shop_id, member_id)
    with_code, with_birthday = True, birthday is not None
    for _ in range(3):
        tx = db.transaction()
        tx.update(
            {"PK": pk, "SK": PROFILE_SK},
            "SET MembersPK = :members_pk, MembersSK = :members_sk",
            values={":members_pk": members_keys(shop_id, member_id)["MembersPK"], ":members_sk": member_id},
            condition="attribute_exists(PK) AND attribute_not_exists(MembersSK)",
        )
        code = (
            add_contact_claim(tx, shop_id, REFERRAL_CODE, referral_code(shop_id, member_id), member_id)
            if with_code
            else None
        )
        filed = (
            add_next_birthday(tx, shop_id, member_id, *birthday, now=now, shards=shards)
            if with_birthday and birthday is not None
            else None
        )
        try:
            db.commit(tx)
        except TransactionCancelled as exc:
            if exc.failed(0):
                return False
            if code is not None and exc.failed(code):
                with_code = False  # another member's code: this member cannot refer (as at enrolment, ~never)
            if filed is not None and exc.failed(filed):
                with_birthday = False  # filed already (enrolled after birthdays came): keep it
            continue
        return True
    raise Retryable(f"member {member_id}: could not be brought up to date")


def members_pages(db: Dynamo, shop_id: str, *, limit: int = 1000) -> Iterator[list[tuple[str, str | None]]]:
    """Every member of the shop, a page at a time from the MembersIndex, partition by partition: (member id, the
    tier stored on them, None for a member never moved from the base tier)."""
    for shard in range(MEMBER_SHARDS):
        start: Item | None = None
        while True:
            items, start = db.query_members(members_pk(shop_id, shard), start=start, limit=limit)
            if items:
                yield [(item["MembersSK"], item.get("tier")) for item in items]
            if start is None:
                break


def birthday_state(db: Dynamo, shop_id: str, member_id: str) -> tuple[Member | None, date | None]:
    """The member and the birthday filed for the run (its local date), in one read."""
    pk = member_pk(shop_id, member_id)
    found = db.get_many([(pk, PROFILE_SK), (pk, BIRTHDAY_SK)], consistent=True)
    profile, filed = found.get((pk, PROFILE_SK)), found.get((pk, BIRTHDAY_SK))
    return (member_from_item(profile) if profile else None), date.fromisoformat(filed["day"]) if filed else None


def get_member(db: Dynamo, shop_id: str, member_id: str, *, consistent: bool = True) -> Member | None:
    item = db.get(member_pk(shop_id, member_id), PROFILE_SK, consistent=consistent)
    return member_from_item(item) if item else None


def consents_to_marketing(db: Dynamo, shop_id: str, member_id: str) -> bool:
    """Whether the member agreed to marketing (reminders, offers); a member enrolled before consent was asked, or
    no longer there, did not."""
    item = db.get(member_pk(shop_id, member_id), PROFILE_SK, consistent=False)
    return bool(item and item.get("marketing_consent"))


def find_member_id(db: Dynamo, shop_id: str, kind: str, normalised: str) -> str | None:
    item = db.get(contact_pk(shop_id, kind, normalised), CONTACT_SK, consistent=False)
    return str(item["member_id"]) if item else None


# ---------------------------------------------------------------------------- transaction parts


def add_member_update(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    *,
    available: int = 0,
    pending: int = 0,
    debt: int = 0,
    now: datetime,
    expect_available: int | None = None,
    expect_debt: int | None = None,
    at_least: int | None = None,
    tier: "TierUpdate | None" = None,
    first_order: str | None = None,
) -> int:
    """ADD the changes to the member's balance (only store/points.py moves points) and tier state; the member must
    exist. The `expect_*` values are what the change was computed from and must still hold; `at_least` requires
    that many available points (a spend never overdraws). `tier` moves the tier metric and applies a tier
    decision, in the same update (one action per item); `first_order` marks the member's first paid order."""
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
    if first_order is not None:  # the member's first paid order: set once, and only by this order
        sets.append("first_order = :first")
        condition += " AND attribute_not_exists(first_order)"
        values[":first"] = first_order
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
    if change.moved and change.reason != "import":  # an imported tier is the shop's own, not news to publish
        item["DuePK"], item["DueSK"] = due_keys(PUBLISH_JOB, change.at, pk, shards, sk, now=now)
    tx.put(item)


def tier_history(db: Dynamo, shop_id: str, member_id: str) -> list[TierChange]:
    return [model_of(TierChange, item) for item in db.query_all(member_pk(shop_id, member_id), TIER_PREFIX)]


def unpublished_tier_decision(db: Dynamo, pk: str, sk: str) -> TierChange | None:
    """A tier decision still in the outbox (its tier.changed not yet published), or None."""
    item = db.get(pk, sk)
    return model_of(TierChange, item) if item is not None and "DuePK" in item else None


# ---------------------------------------------------------------------------- item -> model


def _profile(item: Item) -> Profile:
    return model_of(Profile, item)  # absent fields are None: None is never stored


def member_from_item(item: Item) -> Member:
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
        referrer=item.get("referrer"),
        first_order=item.get("first_order"),
        erased_at=item.get("erased_at"),
        consent=item.get("consent"),
    )


# ---------------------------------------------------------------------------- reminders (of points and of coupons)


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
