"""Check-ins, behaviour activities and the per-day and per-month counters their caps are checked against. Each
lives in the member's partition; each is written in the same transaction as the points it grants."""

from datetime import date, datetime
from typing import Any

from loyalty.domain.ledger import iso
from loyalty.domain.members import Member
from loyalty.store.dynamo import Dynamo, Item, Transaction
from loyalty.store.keys import (
    CHECK_IN_PREFIX,
    PROFILE_SK,
    REFERRAL_JOB,
    REFERRAL_SK,
    REFERRALS_PREFIX,
    activity_sk,
    check_in_sk,
    due_keys,
    earned_sk,
    member_pk,
)
from loyalty.store.members import member_from_item

# On a counter item: each behaviour's points under its own attribute, and (on a month's) all behaviours' together.
TOTAL = "all"


def _counter(behaviour: str) -> str:
    return f"b_{behaviour}"


def check_in_state(db: Dynamo, shop_id: str, member_id: str, yesterday: date) -> tuple[Member | None, int]:
    """The member and the streak of their check-in yesterday (0 if none), in one read."""
    pk = member_pk(shop_id, member_id)
    found = db.get_many([(pk, PROFILE_SK), (pk, check_in_sk(yesterday))], consistent=True)
    profile = found.get((pk, PROFILE_SK))
    last = found.get((pk, check_in_sk(yesterday)))
    return (member_from_item(profile) if profile else None), int(last["streak"]) if last else 0


def add_check_in(tx: Transaction, shop_id: str, member_id: str, day: date, record: dict[str, Any]) -> int:
    """The day's check-in; only if the member has none that day."""
    return tx.put(
        {"PK": member_pk(shop_id, member_id), "SK": check_in_sk(day), "type": "check_in", **record},
        condition="attribute_not_exists(SK)",
    )


def check_ins(db: Dynamo, shop_id: str, member_id: str, month: str) -> list[Item]:
    """The member's check-ins of a month ('2026-12'), first day first."""
    return list(db.query_all(member_pk(shop_id, member_id), f"{CHECK_IN_PREFIX}{month}-"))


class ActivityState:
    """What a behaviour's grant is decided on: the member, an earlier grant of the same activity, and the points
    behaviours earned the member this day and month."""

    def __init__(self, member: Member | None, earlier: Item | None, day: Item | None, month: Item | None) -> None:
        self.member = member
        self.earlier = earlier
        self._day = day or {}
        self._month = month or {}

    def earned_today(self, behaviour: str) -> int:
        return int(self._day.get(_counter(behaviour), 0))

    def earned_this_month(self, behaviour: str | None = None) -> int:
        return int(self._month.get(_counter(behaviour) if behaviour else TOTAL, 0))


def activity_state(
    db: Dynamo, shop_id: str, member_id: str, behaviour: str, reference: str | None, day: date
) -> ActivityState:
    pk = member_pk(shop_id, member_id)
    keys = [(pk, PROFILE_SK), (pk, activity_sk(behaviour, reference)), (pk, earned_sk(day.isoformat()))]
    keys.append((pk, earned_sk(day.isoformat()[:7])))
    found = db.get_many(keys, consistent=True)
    profile = found.get(keys[0])
    return ActivityState(
        member_from_item(profile) if profile else None, found.get(keys[1]), found.get(keys[2]), found.get(keys[3])
    )


def add_activity(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    behaviour: str,
    reference: str | None,
    *,
    points: int,
    caps: dict[str, int | None],
    day: date,
    response: dict[str, Any],
    now: datetime,
) -> None:
    """Record the activity (only if not recorded before) and add its points to the day's and month's counters, each
    required to stay within its cap (`caps`: 'daily', 'monthly', 'all_monthly'; None: no cap). The conditions, not
    the read the grant was computed from, are what keep concurrent grants within the caps."""
    pk = member_pk(shop_id, member_id)
    tx.put(
        {"PK": pk, "SK": activity_sk(behaviour, reference), "type": "activity", "response": response, "at": iso(now)},
        condition="attribute_not_exists(SK)",
    )
    if points <= 0:
        return
    names = {"#b": _counter(behaviour)}
    daily = caps.get("daily")
    tx.update(
        {"PK": pk, "SK": earned_sk(day.isoformat())},
        "ADD #b :p",
        values={":p": points} | ({":room": daily - points} if daily is not None else {}),
        condition="attribute_not_exists(#b) OR #b <= :room" if daily is not None else None,
        names=names,
    )
    conditions: list[str] = []
    values: dict[str, Any] = {":p": points}
    for cap, attribute in (("monthly", "#b"), ("all_monthly", "#t")):
        limit = caps.get(cap)
        if limit is not None:
            conditions.append(f"(attribute_not_exists({attribute}) OR {attribute} <= :{cap})")
            values[f":{cap}"] = limit - points
    tx.update(
        {"PK": pk, "SK": earned_sk(day.isoformat()[:7])},
        "ADD #b :p, #t :p",
        values=values,
        condition=" AND ".join(conditions) or None,
        names=names | {"#t": TOTAL},
    )


# ---------------------------------------------------------------------------- referrals


def add_referral_due(
    tx: Transaction, shop_id: str, referee: str, order_id: str, due: datetime, *, now: datetime, shards: int
) -> int:
    """The referee's first order is paid: the referral is due when its return window closes."""
    pk = member_pk(shop_id, referee)
    due_pk_, due_sk_ = due_keys(REFERRAL_JOB, due, pk, shards, REFERRAL_SK, now=now)
    return tx.update(
        {"PK": pk, "SK": REFERRAL_SK},
        "SET order_id = :order, due_at = :due, DuePK = :due_pk, DueSK = :due_sk",
        values={":order": order_id, ":due": iso(due), ":due_pk": due_pk_, ":due_sk": due_sk_, ":waiting": "waiting"},
        condition="#status = :waiting AND attribute_not_exists(order_id)",
        names={"#status": "status"},
    )


class ReferralState:
    """A due referral as the reward decides on it: its item, both members, and the referrer's rewards this month."""

    def __init__(self, referral: Item | None, referee: Member | None, referrer: Member | None, month: Item | None):
        self.referral = referral
        self.referee = referee
        self.referrer = referrer
        self.rewarded_this_month = int((month or {}).get("rewards", 0))


def referral_state(db: Dynamo, shop_id: str, referee: str, month: str) -> ReferralState:
    pk = member_pk(shop_id, referee)
    referral = db.get(pk, REFERRAL_SK)
    if referral is None:
        return ReferralState(None, None, None, None)
    referrer_pk = member_pk(shop_id, str(referral["referrer"]))
    keys = [(pk, PROFILE_SK), (referrer_pk, PROFILE_SK), (referrer_pk, f"{REFERRALS_PREFIX}{month}")]
    found = db.get_many(keys, consistent=True)
    referee_item, referrer_item = found.get(keys[0]), found.get(keys[1])
    return ReferralState(
        referral,
        member_from_item(referee_item) if referee_item else None,
        member_from_item(referrer_item) if referrer_item else None,
        found.get(keys[2]),
    )


def close_referral(tx: Transaction, shop_id: str, referee: str, outcome: str, now: datetime) -> int:
    """Take the referral off the due index as `rewarded` or `void`, once."""
    return tx.update(
        {"PK": member_pk(shop_id, referee), "SK": REFERRAL_SK},
        "SET #status = :outcome, closed_at = :now REMOVE DuePK, DueSK",
        values={":outcome": outcome, ":now": iso(now), ":waiting": "waiting"},
        condition="#status = :waiting",
        names={"#status": "status"},
    )


def add_referral_reward_count(tx: Transaction, shop_id: str, referrer: str, month: str, cap: int | None) -> int:
    """Count a reward against the referrer's month, within its cap."""
    return tx.update(
        {"PK": member_pk(shop_id, referrer), "SK": f"{REFERRALS_PREFIX}{month}"},
        "ADD rewards :one",
        values={":one": 1} | ({":cap": cap} if cap is not None else {}),
        condition="attribute_not_exists(rewards) OR rewards < :cap" if cap is not None else None,
    )
