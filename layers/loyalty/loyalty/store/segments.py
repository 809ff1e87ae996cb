"""Members' RFM and segments, and the shop's win-back campaigns.

| item                    | PK                                  | SK                      |
|-------------------------|-------------------------------------|-------------------------|
| a member's RFM, segment | SHOP#<shop>#MEMBER#<member>         | RFM                     |
| win-back campaign       | SHOP#<shop>                         | CAMPAIGN#<campaign>     |
| member reached by one   | SHOP#<shop>#MEMBER#<member>         | WINBACK#<campaign>      |

The RFM item is in the `SegmentIndex` (SegPK = SHOP#<shop>#SEGMENT#<segment>#<0-15>, SegSK = <member>), so a
segment's members are listed without a Scan, and on the due index (job `segment`) for the day its segment next
changes with time alone.
"""

import base64
import binascii
import json
import zlib
from datetime import UTC, date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from loyalty.domain.errors import InvalidInput
from loyalty.domain.segments import Rfm, SegmentRules, next_review
from loyalty.store.dynamo import Dynamo, Item, Transaction, encode_cursor
from loyalty.store.keys import due_keys, member_pk, shop_pk

RFM_SK = "RFM"
CAMPAIGN_PREFIX = "CAMPAIGN#"
WINBACK_PREFIX = "WINBACK#"
SEGMENT_JOB = "segment"
SEGMENT_SHARDS = 16


def segment_pk(shop_id: str, segment: str, shard: int) -> str:
    return f"SHOP#{shop_id}#SEGMENT#{segment}#{shard}"


def rfm_of(item: Item | None) -> Rfm:
    if item is None:
        return Rfm()
    return Rfm.model_validate({k: item[k] for k in Rfm.model_fields if k in item})


def rfm_item(
    shop_id: str,
    member_id: str,
    rfm: Rfm,
    *,
    before: Item | None,
    segment: str,
    today: date,
    rules: SegmentRules,
    timezone: str,
    winback: dict[str, str],
    now: datetime,
    shards: int,
    reach: str | None = None,
) -> Item:
    """The member's RFM item as it is to be stored in place of `before`: in `segment` since today (or since when
    `before` entered it), on the segment's index, and on the due index for the local day its segment next changes
    with time (from that day's start in the program's time zone). `reach`: the segment it entered whose
    campaigns the nightly review is still to reach it with (it is due at once)."""
    kept = before is not None and before.get("segment") == segment
    segment_since = date.fromisoformat(str(before["segment_since"])) if before is not None and kept else today
    review = next_review(rfm, today, rules)
    rev = int((before or {}).get("rev", 0)) + 1
    pk = member_pk(shop_id, member_id)
    item: Item = {
        "PK": pk,
        "SK": RFM_SK,
        "type": "rfm",
        "member_id": member_id,
        **rfm.model_dump(mode="json", exclude_none=True),
        "segment": segment,
        "segment_since": segment_since.isoformat(),
        "rev": rev,
        "SegPK": segment_pk(shop_id, segment, zlib.crc32(member_id.encode()) % SEGMENT_SHARDS),
        "SegSK": member_id,
    }
    if winback:
        item["winback"] = winback
    if reach is not None:
        item["reach"] = reach
        review = segment_since
    if review is not None:
        at = datetime.combine(review, time(), ZoneInfo(timezone)).astimezone(UTC)
        item["DuePK"], item["DueSK"] = due_keys(SEGMENT_JOB, at, pk, shards, RFM_SK, now=now)
    return item


def put_rfm(tx: Transaction, item: Item, *, before: Item | None) -> None:
    """Write the RFM item, conditioned on the version it was computed from."""
    if before is None:
        tx.put(item, condition="attribute_not_exists(PK)")
    else:
        tx.put(item, condition="rev = :rev", values={":rev": before["rev"]})


def rfm_items(db: Dynamo, pks: list[str], extra: list[tuple[str, str]]) -> dict[tuple[str, str], Item]:
    return db.get_many([(pk, RFM_SK) for pk in pks] + extra, consistent=True)


def get_rfm(db: Dynamo, shop_id: str, member_id: str) -> Item | None:
    return db.get(member_pk(shop_id, member_id), RFM_SK)


def segment_page(
    db: Dynamo, shop_id: str, segment: str, *, limit: int, cursor: str | None
) -> tuple[list[Item], str | None]:
    """A page of the segment's members, shard after shard; `cursor` is where the last page stopped."""
    shard, start = 0, None
    if cursor:
        shard_text, _, rest = cursor.partition(".")
        if not shard_text.isdigit() or int(shard_text) >= SEGMENT_SHARDS:
            raise InvalidInput("not a cursor this API returned", field="next")
        shard = int(shard_text)
        start = _start(rest, shop_id, segment_pk(shop_id, segment, shard)) if rest else None
    out: list[Item] = []
    while shard < SEGMENT_SHARDS and len(out) < limit:
        items, last = db.query_index(
            "SegmentIndex", "SegPK", segment_pk(shop_id, segment, shard), limit=limit - len(out), start=start
        )
        out += items
        if last is not None:
            return out, f"{shard}.{encode_cursor(last)}"
        shard, start = shard + 1, None
    return out, (f"{shard}." if shard < SEGMENT_SHARDS else None)


def _start(cursor: str, shop_id: str, seg_pk: str) -> Item:
    """Where a segment listing continues: only ever this shop's segment partition (InvalidInput otherwise)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, binascii.Error) as exc:
        raise InvalidInput("not a cursor this API returned", field="next") from exc
    if (
        not isinstance(key, dict)
        or key.get("SegPK") != seg_pk
        or key.get("PK") != member_pk(shop_id, str(key.get("SegSK")))
    ):
        raise InvalidInput("not a cursor this API returned", field="next")
    return key


# ---------------------------------------------------------------- win-back campaigns


def put_campaign(db: Dynamo, shop_id: str, campaign: dict[str, Any]) -> None:
    db.put(
        {"PK": shop_pk(shop_id), "SK": CAMPAIGN_PREFIX + campaign["campaign_id"], "type": "campaign", **campaign},
        condition="attribute_not_exists(PK)",
    )


def campaigns(db: Dynamo, shop_id: str) -> list[Item]:
    return list(db.query_all(shop_pk(shop_id), CAMPAIGN_PREFIX))


def get_campaign(db: Dynamo, shop_id: str, campaign_id: str) -> Item | None:
    return db.get(shop_pk(shop_id), CAMPAIGN_PREFIX + campaign_id)


def add_reached(
    tx: Transaction, shop_id: str, member_id: str, campaign_id: str, *, code: str | None, at: datetime
) -> None:
    """The member was reached by the campaign: once per member and campaign, ever."""
    tx.put(
        {
            "PK": member_pk(shop_id, member_id),
            "SK": WINBACK_PREFIX + campaign_id,
            "type": "winback",
            "campaign_id": campaign_id,
            "code": code,
            "at": at.isoformat(),
        },
        condition="attribute_not_exists(PK)",
    )
