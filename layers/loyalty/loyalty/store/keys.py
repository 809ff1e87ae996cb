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
| idempotency     | SHOP#<shop>#IDEMPOTENCY#<scope>#<sha256 of key> | IDEMPOTENCY          |
| expiry reminder | SHOP#<shop>#MEMBER#<member>          | REMIND#<expires>                |
| tier decision   | SHOP#<shop>#MEMBER#<member>          | TIER#<at>#<reason>              |
| run state       | SCHEDULE#<job>                       | STATE                           |

The run state (where a scheduled run resumes) is the only item that belongs to no shop: runs serve all
shops, and it is written once per run.

A member's partition holds its profile, ledger and lots, so one busy shop spreads over its members.
The sparse DueIndex (DuePK = DUE#<job>#<date>#<shard>) lists work due on a date; see due_keys().
"""

import hashlib
import zlib
from datetime import datetime
from typing import TYPE_CHECKING

from loyalty.domain.ledger import iso

if TYPE_CHECKING:
    from loyalty.domain.tiers import TierChange

SHOP_SK = "SHOP"
PROGRAM_SK = "PROGRAM"
PROFILE_SK = "PROFILE"
ORDER_SK = "ORDER"
CONTACT_SK = "CONTACT"
IDEMPOTENCY_SK = "IDEMPOTENCY"
LEDGER_PREFIX = "LEDGER#"
LOT_PREFIX = "LOT#"
REMIND_PREFIX = "REMIND#"
TIER_PREFIX = "TIER#"

# Jobs of the due index: orders whose pending points activate, lots that lapse, reminders to publish.
ACTIVATE_JOB = "activate"
EXPIRE_JOB = "expire"
REMIND_JOB = "remind"
REVIEW_JOB = "review"  # members whose tier validity ends
PUBLISH_JOB = "publish"  # tier decisions whose tier.changed event is not yet published (an outbox)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def shop_pk(shop_id: str) -> str:
    return f"SHOP#{shop_id}"


def member_pk(shop_id: str, member_id: str) -> str:
    return f"SHOP#{shop_id}#MEMBER#{member_id}"


def order_pk(shop_id: str, order_id: str) -> str:
    return f"SHOP#{shop_id}#ORDER#{order_id}"


def contact_pk(shop_id: str, kind: str, normalised: str) -> str:
    # Hashed so that phone numbers and e-mail addresses never appear in keys, metrics or logs.
    return f"SHOP#{shop_id}#{kind.upper()}#{digest(normalised)}"


def idempotency_pk(shop_id: str, scope: str, key: str) -> str:
    return f"SHOP#{shop_id}#IDEMPOTENCY#{scope}#{digest(key)}"


def ledger_sk(at: datetime, reason: str, reference: str) -> str:
    return f"{LEDGER_PREFIX}{iso(at)}#{reason}#{reference}"


def lot_sk(lot_id: str) -> str:
    return f"{LOT_PREFIX}{lot_id}"


def lot_id_of(sk: str) -> str:
    return sk.removeprefix(LOT_PREFIX)


def due_pk(job: str, day: str, shard: int) -> str:
    return f"DUE#{job}#{day}#{shard}"


def due_keys(job: str, at: datetime, pk: str, shards: int, sk: str = "") -> tuple[str, str]:
    """(DuePK, DueSK) for an item due at `at`: the day (UTC) is split into `shards` partitions by item key.

    DueSK starts with the due instant, so a run asks for everything due up to its own time."""
    shard = zlib.crc32(f"{pk}|{sk}".encode()) % shards
    stamp = iso(at)
    return due_pk(job, stamp[:10], shard), f"{stamp}#{pk}#{sk}"


def tier_decision_sk(change: "TierChange") -> str:
    return f"{TIER_PREFIX}{iso(change.at)}#{change.reason}"


def remind_sk(expires_at: datetime) -> str:
    return f"{REMIND_PREFIX}{iso(expires_at)}"
