"""Reading the audit trail: who wrote what, and when, over a window of at most MAX_WINDOW (entries are written
by the store, in each write's own transaction: store/audit.py)."""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from loyalty.domain.errors import InvalidInput
from loyalty.service.shops import Shops
from loyalty.store import audit as audit_store
from loyalty.store.audit import AuditFilter
from loyalty.store.dynamo import Dynamo, Item

MAX_WINDOW = timedelta(days=31)  # a page reads every day of its window: a month's is 31 x AUDIT_SHARDS queries


class Audit:
    def __init__(self, db: Dynamo, shops: Shops, *, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.shops = shops
        self.clock = clock

    def entries(
        self,
        shop_id: str,
        *,
        since: datetime | None,
        until: datetime | None,
        actor: str | None,
        member_id: str | None,
        limit: int,
        cursor: str | None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Entries oldest first from `since` (default: a day before `until`) to `until` (default: now), of one
        key (`actor`: its key id) and one member if given."""
        until = until or self.clock()
        since = since or until - timedelta(days=1)
        if since > until:
            raise InvalidInput("must not be after until", field="from")
        if until - since > MAX_WINDOW:
            raise InvalidInput(f"a window is at most {MAX_WINDOW.days} days", field="until")
        member_ref = self.shops.pseudonym(shop_id, member_id) if member_id else None
        which = AuditFilter(since, until, actor_id=actor, member_ref=member_ref)
        items, next_cursor = audit_store.page(self.db, shop_id, which, limit=limit, cursor=cursor)
        return [view(item) for item in items], next_cursor


def view(item: Item) -> dict[str, Any]:
    shown = {
        "at": item["at"],
        "actor": item["actor"],
        "member_ref": item.get("member_ref"),
        "method": item["method"],
        "route": item["route"],
        "target": item.get("target") or {},
        "changes": item.get("changes") or {},
        "request_id": item["request_id"],
    }
    return {name: value for name, value in shown.items() if value is not None}
