"""A reminder that something expires (points, wallet bonus), published once per member and expiry instant, to a
member who agreed to marketing (reminders are marketing; what happened to their points, e.g. tier.changed, is
published for everyone).

The due index lists each reminder; taking it off the index (`mark_reminded`) is what makes it sent once, so a
reminder whose event EventBridge refuses is put back on the index for the next run.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from loyalty.domain.ledger import iso
from loyalty.store import members as member_store
from loyalty.store.dynamo import Dynamo, Item
from loyalty.store.events import Events
from loyalty.store.keys import expiry_of_reminder, member_of


def publish_once(
    db: Dynamo,
    events: Events,
    item: Item,
    time: datetime,
    detail_type: str,
    expiring: Callable[[str, str, datetime], dict[str, Any] | None],
) -> bool:
    """Publish `detail_type` for the reminder `item` (as the due index lists it), with what `expiring(shop_id,
    member_id, expires_at)` says is expiring then (None: nothing left, nothing to say). True if it was published."""
    pk, sk = item["PK"], item["SK"]
    shop_id, member_id = member_of(pk)
    if not member_store.mark_reminded(db, pk, sk, time):
        return False
    if not member_store.consents_to_marketing(db, shop_id, member_id):
        return False  # a reminder is marketing: off the index, and not sent
    expires = expiry_of_reminder(sk)
    what = expiring(shop_id, member_id, expires)
    if what is None:
        return False
    detail = {
        "shop_id": shop_id,
        "member_id": member_id,
        **what,
        "expires_at": iso(expires),
        "reminder_id": f"{member_id}:{iso(expires)}",
    }
    try:
        events.publish(detail_type, detail)
    except Exception:
        member_store.unmark_reminded(db, pk, sk, (item["DuePK"], item["DueSK"]))
        raise
    return True
