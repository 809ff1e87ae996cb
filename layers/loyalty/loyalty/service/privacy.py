"""A member's rights over their data (PIPL, GDPR).

Access: every item of their partition (profile, ledger, lots, coupons, wallet, exchanges, draws, check-ins, tier
decisions, reminders, counters) and the orders their points came from, as JSON, without our keys and index
attributes.

Erasure: the member id is replaced by a pseudonym (a keyed digest only the shop's key makes, which nothing maps
back) everywhere it is personal, and contacts, birthday and consent are removed; the ledger, lots, orders and
counters stay, so every balance and every report adds up as before. See store/erasure.py for how.
"""

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from loyalty.domain.errors import NotFound
from loyalty.domain.ledger import iso
from loyalty.service.members import Members
from loyalty.service.shops import Shops
from loyalty.store import erasure as erasure_store
from loyalty.store.dynamo import Dynamo, Item
from loyalty.store.events import Events
from loyalty.store.keys import LEDGER_PREFIX, LOT_PREFIX, ORDER_SK, PROFILE_SK, member_of, member_pk, order_pk

# Attributes that are ours, not the member's: keys and index placements.
INTERNAL = {"PK", "SK", "DuePK", "DueSK", "MembersPK", "MembersSK", "type", "rev"}


class Privacy:
    def __init__(
        self, db: Dynamo, members: Members, shops: Shops, events: Events, *, clock: Callable[[], datetime], shards: int
    ) -> None:
        self.db = db
        self.members = members
        self.shops = shops
        self.events = events
        self.clock = clock
        self.shards = shards

    def erase(self, shop_id: str, member_id: str, should_stop: Callable[[], bool]) -> dict[str, Any]:
        """Erase the member (irreversibly). The answer names the pseudonym their ledger and orders now carry,
        and whether everything has moved (`complete`: not if `should_stop` said so first); asking again, or the
        nightly outbox run, carries on and answers the same."""
        ref = self.shops.pseudonym(shop_id, member_id)

        def pseudonym_of(enrolled_at: str) -> str:  # one per enrolment of the id, never mapped back
            return self.shops.pseudonym(shop_id, f"{member_id}|{enrolled_at}")

        pseudonym = erasure_store.begin(
            self.db, shop_id, member_id, ref, pseudonym_of, now=self.clock(), shards=self.shards
        )
        if pseudonym is None:  # erased before (cut short: its marker says where the rest goes), or never
            marker = erasure_store.marker(self.db, shop_id, member_id)
            if marker is None:
                erased = erasure_store.erased_as(self.db, shop_id, ref)
                if erased is None:
                    raise NotFound(f"member {member_id} not found", field="member_id")
                return {"member_id": erased, "erased": True, "complete": True}
            pseudonym = str(marker["pseudonym"])
        complete = self._move(shop_id, member_id, pseudonym, should_stop)
        return {"member_id": pseudonym, "erased": True, "complete": complete}

    def resume_erasure(self, item: Item, should_stop: Callable[[], bool]) -> bool:
        """Finish an erasure its request left (its marker, as the outbox run finds it). True when finished."""
        shop_id, member_id = member_of(item["PK"])
        marker = erasure_store.marker(self.db, shop_id, member_id)  # the index holds its keys, not its pseudonym
        return marker is None or self._move(shop_id, member_id, str(marker["pseudonym"]), should_stop)

    def _move(self, shop_id: str, member_id: str, pseudonym: str, should_stop: Callable[[], bool]) -> bool:
        """Move what is left, page by page; once all has moved, tell the shop's other systems (their CRM, their
        messaging) to erase the member too, then remove the marker. True when finished."""
        while not should_stop():
            if erasure_store.move_page(self.db, shop_id, member_id, pseudonym, now=self.clock(), shards=self.shards):
                detail = {"shop_id": shop_id, "member_id": member_id, "pseudonym": pseudonym}
                self.events.publish("member.erased", detail)  # consumers dedupe on the pseudonym
                erasure_store.finish(self.db, shop_id, member_id)
                return True
        return False

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
