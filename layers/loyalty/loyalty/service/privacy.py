"""What we hold on a member, for the member (PIPL's and GDPR's right of access): every item of their partition
(profile, ledger, lots, coupons, wallet, exchanges, draws, check-ins, tier decisions, reminders, counters) and the
orders their points came from, as JSON, without our keys and index attributes."""

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from loyalty.domain.ledger import iso
from loyalty.service.members import Members
from loyalty.store.dynamo import Dynamo, Item
from loyalty.store.keys import LEDGER_PREFIX, LOT_PREFIX, ORDER_SK, PROFILE_SK, member_pk, order_pk

# Attributes that are ours, not the member's: keys and index placements.
INTERNAL = {"PK", "SK", "DuePK", "DueSK", "MembersPK", "MembersSK", "type", "rev"}


class Privacy:
    def __init__(self, db: Dynamo, members: Members, *, clock: Callable[[], datetime]) -> None:
        self.db = db
        self.members = members
        self.clock = clock

    def export(self, shop_id: str, member_id: str) -> dict[str, Any]:
        self.members.member(shop_id, member_id)  # 404 for no such member
        held: dict[str, list[Item]] = defaultdict(list)
        orders: set[str] = set()
        for item in self.db.query_all(member_pk(shop_id, member_id), ""):
            kind = str(item["SK"]).split("#", 1)[0].lower()
            if item["SK"].startswith((LEDGER_PREFIX, LOT_PREFIX)) and item.get("reference"):
                orders.add(str(item["reference"]))
            held[kind].append({name: value for name, value in item.items() if name not in INTERNAL})
        found = self.db.get_many([(order_pk(shop_id, order_id), ORDER_SK) for order_id in sorted(orders)])
        mine = [
            {name: value for name, value in item.items() if name not in INTERNAL}
            for _, item in sorted(found.items())
            if item.get("member_id") == member_id  # a refund id may also be another member's order id
        ]
        profile = held.pop(PROFILE_SK.lower(), [{}])[0]
        return {
            "member_id": member_id,
            "shop_id": shop_id,
            "exported_at": iso(self.clock()),
            "profile": profile,
            "orders": mine,
            **{kind: items for kind, items in sorted(held.items())},
        }
