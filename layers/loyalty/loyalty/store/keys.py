"""Every key in the table, in one place. Every key starts with the shop: tenants are walls.

| item            | PK                                   | SK                              |
|-----------------|--------------------------------------|---------------------------------|
| shop            | SHOP#<shop>                          | SHOP                            |
| program         | SHOP#<shop>                          | PROGRAM                         |
| member          | SHOP#<shop>#MEMBER#<member>          | PROFILE                         |
| ledger entry    | SHOP#<shop>#MEMBER#<member>          | LEDGER#<at>#<reason>#<reference>|
| lot             | SHOP#<shop>#MEMBER#<member>          | LOT#<expires>#<earned>#<source>#<ref> |
| contact (unique)| SHOP#<shop>#EMAIL#<sha256> / PHONE#  | CONTACT                         |
| order           | SHOP#<shop>#ORDER#<order>            | ORDER                           |
| idempotency     | SHOP#<shop>#MEMBER#<member>          | IDEMPOTENCY#<scope>#<sha256 of key> |
| expiry reminder | SHOP#<shop>#MEMBER#<member>          | REMIND#<expires>                |
| tier decision   | SHOP#<shop>#MEMBER#<member>          | TIER#<at>#<reason>              |
| check-in        | SHOP#<shop>#MEMBER#<member>          | CHECKIN#<local date>            |
| activity        | SHOP#<shop>#MEMBER#<member>          | ACTIVITY#<behaviour>[#<reference>] |
| earned (caps)   | SHOP#<shop>#MEMBER#<member>          | EARNED#<local month or date>    |
| next birthday   | SHOP#<shop>#MEMBER#<member>          | BIRTHDAY                        |
| referral        | SHOP#<shop>#MEMBER#<referee>         | REFERRAL                        |
| monthly benefits| SHOP#<shop>                          | MONTHLY                         |
| referral code   | SHOP#<shop>#REFCODE#<sha256>         | CONTACT                         |
| referee (pointer)| SHOP#<shop>#MEMBER#<referrer>       | REFEREE#<referee>               |
| referrals/month | SHOP#<shop>#MEMBER#<referrer>        | REFERRALS#<local month>         |
| run state       | SCHEDULE#<job>                       | STATE                           |
| coupon template | SHOP#<shop>#COUPONTPL#<template>     | TEMPLATE                        |
| template stock  | SHOP#<shop>#COUPONTPL#<template>#STOCK#<n> | STOCK                     |
| coupon          | SHOP#<shop>#MEMBER#<member>          | COUPON#<code>                   |
| claims counter  | SHOP#<shop>#MEMBER#<member>          | CLAIMS#<template>               |
| coupon code     | SHOP#<shop>#CODE#<code>              | CODE                            |
| bulk grant      | SHOP#<shop>#GRANT#<grant>            | GRANT, and CHUNK#<n> per batch  |
| erased member   | SHOP#<shop>#ERASED#<keyed digest of the id> | ERASED (the pseudonym it was given) |
| grant refusal   | SHOP#<shop>#MEMBER#<member>          | GRANTREFUSED#<grant>#<n> (points at the batch) |
| integration     | SHOP#<shop>                          | INTEGRATION#<platform>          |
| mall item       | SHOP#<shop>                          | MALLITEM#<item>                 |
| mall item stock | SHOP#<shop>#MALLITEM#<item>#STOCK#<n>| STOCK                           |
| mall exchanges  | SHOP#<shop>#MEMBER#<member>          | MALLCOUNT#<item> (units so far) |
| exchange        | SHOP#<shop>#MEMBER#<member>          | EXCHANGE#<at>#<exchange>        |
| exchange (by id)| SHOP#<shop>#EXCHANGE#<exchange>      | EXCHANGE (where it is)          |
| lottery         | SHOP#<shop>                          | LOTTERY#<lottery>               |
| lottery prize   | SHOP#<shop>#LOTTERY#<lottery>#PRIZE#<prize> | STOCK (a limited prize's)|
| lottery report  | SHOP#<shop>#LOTTERY#<lottery>#REPORT#<n> | REPORT                      |
| lottery audit   | SHOP#<shop>#LOTTERY#<lottery>#DAY#<date>#<n> | <draw>                  |
| digest chain    | SHOP#<shop>#LOTTERY#<lottery>        | CHAIN (next day), DIGEST#<date> |
| draws (limits)  | SHOP#<shop>#MEMBER#<member>          | DRAWS#<lottery>[#<local date>]  |
| draw            | SHOP#<shop>#MEMBER#<member>          | DRAW#<at>#<draw>                |
| wallet          | SHOP#<shop>#MEMBER#<member>          | WALLET (principal, bonus)       |
| wallet entry    | SHOP#<shop>#MEMBER#<member>          | WLEDGER#<at>#<reason>#<reference> |
| bonus lot       | SHOP#<shop>#MEMBER#<member>          | WLOT#<expires>#<earned>#<source>#<ref> |
| bonus reminder  | SHOP#<shop>#MEMBER#<member>          | WREMIND#<expires>               |
| savings/month   | SHOP#<shop>#MEMBER#<member>          | SAVINGS#<local month>           |
| card attempts   | SHOP#<shop>#MEMBER#<member>          | CARDTRIES#<hour> (expires by TTL) |
| gift card       | SHOP#<shop>#CARD#<sha256 of code>    | CARD                            |
| card batch      | SHOP#<shop>                          | CARDBATCH#<batch>               |
| batch counter   | SHOP#<shop>#CARDBATCH#<batch>#COUNT#<n> | COUNT (redeemed, in shards)  |
| delivery seen   | SHOP#<shop>#DELIVERY#<platform>#<sha256 of id> | DELIVERY (expires by TTL) |
| staff API key   | SHOP#<shop>                          | APIKEY#<key> (digests, role)    |
| adjusted/day    | SHOP#<shop>#APIKEY#<key>             | ADJUSTED#<local date> (the cap's counter) |
| audit entry     | SHOP#<shop>#AUDIT#<UTC date>#<n>     | <at>#<request>#<n>              |

The run state (where a scheduled run resumes) is the only item that belongs to no shop: runs serve all
shops, and it is written once per run.

A template's stock is split over several items (shards) so a popular coupon is not one hot key.
A member's partition holds its profile, ledger, lots and coupons, so one busy shop spreads over its members.
The sparse DueIndex (DuePK = DUE#<job>#<date>#<shard>) lists work due on a date; see due_keys().
The MembersIndex (MembersPK = SHOP#<shop>#MEMBERS#<shard>, MembersSK = <member>, with the member's tier) lists a
shop's members without a Scan, split over MEMBER_SHARDS partitions; see members_keys().
"""

import hashlib
import zlib
from datetime import date, datetime
from typing import TYPE_CHECKING

from loyalty.domain.ledger import iso

if TYPE_CHECKING:
    from loyalty.domain.tiers import TierChange

SHOP_SK = "SHOP"
PROGRAM_SK = "PROGRAM"
PROFILE_SK = "PROFILE"
ORDER_SK = "ORDER"
CONTACT_SK = "CONTACT"
IDEMPOTENCY_PREFIX = "IDEMPOTENCY#"
LEDGER_PREFIX = "LEDGER#"
LOT_PREFIX = "LOT#"
REMIND_PREFIX = "REMIND#"
TIER_PREFIX = "TIER#"
CHECK_IN_PREFIX = "CHECKIN#"  # one per member and local day: the day's check-in and the streak it made
ACTIVITY_PREFIX = "ACTIVITY#"  # one per member, behaviour and reference (behaviour alone when it earns once)
REFERRAL_SK = "REFERRAL"  # on the referee: who referred them and the state of both rewards
REFERRALS_PREFIX = "REFERRALS#"  # on the referrer: rewards earned per local month (its cap's counter)
REFEREE_PREFIX = "REFEREE#"  # on the referrer: a member they referred (so an erasure finds who names them)
BIRTHDAY_SK = "BIRTHDAY"  # a member's next birthday, on the due index for the birthday run
MONTHLY_SK = "MONTHLY"  # on the shop: the next 1st of the month, on the due index for the tiers' monthly coupons
EARNED_PREFIX = "EARNED#"  # per member and local day or month: behaviour points earned, against the caps

# Jobs of the due index: orders whose pending points activate, lots that lapse, reminders to publish.
ACTIVATE_JOB = "activate"
EXPIRE_JOB = "expire"
REMIND_JOB = "remind"
REVIEW_JOB = "review"  # members whose tier validity ends
PUBLISH_JOB = "publish"  # the outbox: tier decisions and exchange steps whose event is not yet published
COUPON_REMIND_JOB = "coupon-remind"  # unused coupons to remind of (then re-filed under coupon-expire)
COUPON_EXPIRE_JOB = "coupon-expire"  # unused coupons past their expiry
REFERRAL_JOB = "referral"  # referees whose first order's return window has closed
BIRTHDAY_JOB = "birthday"  # members whose birthday has begun (program time zone)
LOTTERY_DIGEST_JOB = "lottery-digest"  # lotteries whose day is over: its draws' digest to chain and publish
MONTHLY_JOB = "monthly"  # shops whose month has begun (program time zone): the tiers' monthly coupons

# A shop's members are listed over this many MembersIndex partitions. Fixed, not configured: it is part of every
# stored member's keys (16 partitions take some 16,000 enrolments a second into one shop).
MEMBER_SHARDS = 16

TEMPLATE_SK = "TEMPLATE"
STOCK_SK = "STOCK"
CODE_SK = "CODE"
GRANT_SK = "GRANT"
COUPON_PREFIX = "COUPON#"
CLAIMS_PREFIX = "CLAIMS#"
CHUNK_PREFIX = "CHUNK#"
GRANT_REFUSED_PREFIX = "GRANTREFUSED#"  # on a member: a grant's batch that lists them as refused (for an erasure)
INTEGRATION_PREFIX = "INTEGRATION#"
MALL_ITEM_PREFIX = "MALLITEM#"  # a mall item, in its shop's partition (a shop lists tens to hundreds)
MALL_COUNT_PREFIX = "MALLCOUNT#"  # units of an item a member has exchanged (its per-member limit's counter)
EXCHANGE_PREFIX = "EXCHANGE#"  # a member's exchange, by time
EXCHANGE_SK = "EXCHANGE"  # an exchange's look-up by id: which member's partition holds it
LOTTERY_PREFIX = "LOTTERY#"  # a lottery, in its shop's partition
DRAWS_PREFIX = "DRAWS#"  # a member's draws of a lottery, in all and per local day (the limits' counters)
DRAW_PREFIX = "DRAW#"  # a member's draw, by time
REPORT_SK = "REPORT"
WALLET_SK = "WALLET"
WALLET_LEDGER_PREFIX = "WLEDGER#"
WALLET_LOT_PREFIX = "WLOT#"  # a grant of bonus and what is left of it (expiring like points)
WALLET_REMIND_PREFIX = "WREMIND#"  # a member's reminder of bonus expiring at an instant
SAVINGS_PREFIX = "SAVINGS#"
CARD_TRIES_PREFIX = "CARDTRIES#"  # a member's gift-card redemption attempts per hour (the limit's counter)
CARD_SK = "CARD"
CARD_BATCH_PREFIX = "CARDBATCH#"
COUNT_SK = "COUNT"
CARD_COUNT_SHARDS = 8
# A lottery's report counters and its audit listing are split over this many partitions: every draw writes one of
# each, so a popular lottery is not one hot key.
LOTTERY_SHARDS = 16
DELIVERY_SK = "DELIVERY"
API_KEY_PREFIX = "APIKEY#"  # a staff key, in its shop's partition (a shop has a handful)
ADJUSTED_PREFIX = "ADJUSTED#"
# Every audited write adds an entry to one of this many partitions of its UTC day, so a busy shop's audit trail
# is not one hot key; a listing merges them.
AUDIT_SHARDS = 8


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def shop_pk(shop_id: str) -> str:
    return f"SHOP#{shop_id}"


def api_key_pk(shop_id: str, key_id: str) -> str:
    return f"SHOP#{shop_id}#APIKEY#{key_id}"


def audit_pk(shop_id: str, day: date, shard: int) -> str:
    return f"SHOP#{shop_id}#AUDIT#{day.isoformat()}#{shard}"


def member_pk(shop_id: str, member_id: str) -> str:
    return f"SHOP#{shop_id}#MEMBER#{member_id}"


def erased_pk(shop_id: str, ref: str) -> str:
    """Where an erased member's pseudonym is found by their keyed digest (`ref`, as the audit trail names them)."""
    return f"SHOP#{shop_id}#ERASED#{ref}"


def order_pk(shop_id: str, order_id: str) -> str:
    return f"SHOP#{shop_id}#ORDER#{order_id}"


def members_keys(shop_id: str, member_id: str) -> dict[str, str]:
    """The MembersIndex attributes of a member's profile: one of MEMBER_SHARDS partitions of the shop."""
    shard = zlib.crc32(member_id.encode()) % MEMBER_SHARDS
    return {"MembersPK": members_pk(shop_id, shard), "MembersSK": member_id}


def members_pk(shop_id: str, shard: int) -> str:
    return f"SHOP#{shop_id}#MEMBERS#{shard}"


def shop_of(pk: str) -> str:
    """The shop of a shop's own partition key (SHOP#<shop>), as the due index hands it to a run."""
    return pk.removeprefix("SHOP#")


def contact_pk(shop_id: str, kind: str, normalised: str) -> str:
    # Hashed so that phone numbers and e-mail addresses never appear in keys, metrics or logs.
    return f"SHOP#{shop_id}#{kind.upper()}#{digest(normalised)}"


def idempotency_key(shop_id: str, member_id: str, scope: str, key: str) -> tuple[str, str]:
    """Where a member's request made idempotent by a caller's key keeps its first answer: in the member's own
    partition, so their keys are theirs alone and an erasure finds (and removes) every answer that named them."""
    return member_pk(shop_id, member_id), f"{IDEMPOTENCY_PREFIX}{scope}#{digest(key)}"


def template_pk(shop_id: str, template_id: str) -> str:
    return f"SHOP#{shop_id}#COUPONTPL#{template_id}"


def stock_pk(shop_id: str, template_id: str, shard: int) -> str:
    return f"{template_pk(shop_id, template_id)}#STOCK#{shard}"


def code_pk(shop_id: str, code: str) -> str:
    return f"SHOP#{shop_id}#CODE#{code}"


def mall_stock_pk(shop_id: str, item_id: str, shard: int) -> str:
    return f"SHOP#{shop_id}#MALLITEM#{item_id}#STOCK#{shard}"


def lottery_pk(shop_id: str, lottery_id: str) -> str:
    return f"SHOP#{shop_id}#LOTTERY#{lottery_id}"


def lottery_of(pk: str) -> tuple[str, str]:
    """(shop_id, lottery_id) of a lottery's own partition key, as the due index hands it to a run."""
    _, shop_id, _, lottery_id = pk.split("#", 3)
    return shop_id, lottery_id


def exchange_pk(shop_id: str, exchange_id: str) -> str:
    return f"SHOP#{shop_id}#EXCHANGE#{exchange_id}"


def grant_pk(shop_id: str, grant_id: str) -> str:
    return f"SHOP#{shop_id}#GRANT#{grant_id}"


def delivery_pk(shop_id: str, platform: str, delivery_id: str) -> str:
    return f"SHOP#{shop_id}#DELIVERY#{platform}#{digest(delivery_id)}"


def card_pk(shop_id: str, code: str) -> str:
    # Only the code's digest is kept: whoever reads the table cannot redeem a card.
    return f"SHOP#{shop_id}#CARD#{digest(code)}"


def card_count_pk(shop_id: str, batch_id: str, shard: int) -> str:
    return f"SHOP#{shop_id}#CARDBATCH#{batch_id}#COUNT#{shard}"


def wallet_ledger_sk(at: datetime, reason: str, reference: str, part: str = "") -> str:
    return f"{WALLET_LEDGER_PREFIX}{iso(at)}#{reason}#{reference}" + (f"#{part}" if part else "")


def coupon_sk(code: str) -> str:
    return f"{COUPON_PREFIX}{code}"


def ledger_sk(at: datetime, reason: str, reference: str, part: str = "") -> str:
    """An entry's key. `part` tells apart entries of one instant, reason and reference (two lots of one order
    lapsing in the same run); most entries have none."""
    return f"{LEDGER_PREFIX}{iso(at)}#{reason}#{reference}" + (f"#{part}" if part else "")


def lot_sk(lot_id: str) -> str:
    return f"{LOT_PREFIX}{lot_id}"


def lot_id_of(sk: str) -> str:
    return sk.removeprefix(LOT_PREFIX)


def due_pk(job: str, day: str, shard: int) -> str:
    return f"DUE#{job}#{day}#{shard}"


def due_keys(job: str, at: datetime, pk: str, shards: int, sk: str = "", *, now: datetime) -> tuple[str, str]:
    """(DuePK, DueSK) for an item due at `at`, written at `now`: filed under the day (UTC) of the later of the
    two, split into `shards` partitions by item key. Lots of points are split by their partition key alone, so a
    member's lots due at one instant sit side by side and lapse together (Runs.expire_shard). Runs visit days from
    where the last one stopped, never before today: work due before the day it is filed (a late event, a review
    already overdue) is filed today, so it is found however late it was filed.

    DueSK starts with the due instant, so a run asks for everything due up to its own time."""
    together = job == EXPIRE_JOB and sk.startswith(LOT_PREFIX)
    shard = zlib.crc32((pk if together else f"{pk}|{sk}").encode()) % shards
    stamp = iso(at)
    return due_pk(job, iso(max(at, now))[:10], shard), f"{stamp}#{pk}#{sk}"


def tier_decision_sk(change: "TierChange") -> str:
    return f"{TIER_PREFIX}{iso(change.at)}#{change.reason}"


def remind_sk(expires_at: datetime, prefix: str = REMIND_PREFIX) -> str:
    return f"{prefix}{iso(expires_at)}"


def expiry_of_reminder(sk: str) -> datetime:
    return datetime.fromisoformat(sk.split("#", 1)[1].replace("Z", "+00:00"))


def code_of(sk: str) -> str:
    return sk.removeprefix(COUPON_PREFIX)


def member_of(pk: str) -> tuple[str, str]:
    """(shop_id, member_id) of a member's partition key, as the due index hands it to a run."""
    _, shop_id, _, member_id = pk.split("#", 3)
    return shop_id, member_id


def order_of(pk: str) -> tuple[str, str]:
    """(shop_id, order_id) of an order's partition key."""
    _, shop_id, _, order_id = pk.split("#", 3)
    return shop_id, order_id


def schedule_state_key(job: str) -> tuple[str, str]:
    """Where a scheduled run records the day its next run resumes from."""
    return f"SCHEDULE#{job}", "STATE"


def check_in_sk(day: date) -> str:
    return f"{CHECK_IN_PREFIX}{day.isoformat()}"


def activity_sk(behaviour: str, reference: str | None) -> str:
    return f"{ACTIVITY_PREFIX}{behaviour}" + (f"#{reference}" if reference is not None else "")


def earned_sk(period: str) -> str:
    """'2026-12' (a month) or '2026-12-03' (a day)."""
    return f"{EARNED_PREFIX}{period}"
