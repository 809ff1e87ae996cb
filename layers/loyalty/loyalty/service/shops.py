"""Shops: provisioning, their credentials, and their loyalty programs (cached per container)."""

import base64
import secrets
from collections.abc import Callable
from datetime import datetime

from loyalty.domain.engagement import day_starts, local_day, next_month_start
from loyalty.domain.errors import NotFound
from loyalty.domain.members import pseudonym
from loyalty.domain.program import Program
from loyalty.service.access import SHOP_ID, new_key
from loyalty.service.cache import TTLCache
from loyalty.store import shops as shop_store
from loyalty.store.dynamo import Dynamo
from loyalty.store.shops import ShopRecord


class Shops:
    def __init__(self, db: Dynamo, *, clock: Callable[[], datetime], cache_seconds: float, shards: int) -> None:
        self.db = db
        self.clock = clock
        self.shards = shards
        self._shops: TTLCache[ShopRecord | None] = TTLCache(cache_seconds)
        self._programs: TTLCache[Program | None] = TTLCache(cache_seconds)

    def create_shop(self, name: str, currency: str | None = None) -> dict[str, str]:
        """The shop, its program and its first owner key (named "owner"; more keys are made with it)."""
        shop_id = "shp_" + secrets.token_hex(8)
        now = self.clock()
        owner, api_key = new_key(shop_id, "owner", "owner", now, None)
        webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        program = Program(currency=currency) if currency else Program()
        record = ShopRecord(shop_id, name, webhook_secret, secrets.token_urlsafe(32))
        shop_store.create_shop(self.db, record, program, owner, now)
        return {"shop_id": shop_id, "api_key": api_key, "key_id": owner.key_id, "webhook_secret": webhook_secret}

    def shop(self, shop_id: str) -> ShopRecord | None:
        """The shop, or None. Ids not of our shape cost no read, and an unknown id is remembered as unknown for
        the cache's time, so strangers repeating a made-up shop id do not reach the table."""
        if not SHOP_ID.fullmatch(shop_id):
            return None
        return self._shops.get(shop_id, lambda: shop_store.get_shop(self.db, shop_id), remember_missing=True)

    def pseudonym(self, shop_id: str, member_id: str) -> str:
        """How the audit trail names a member of the shop."""
        record = self.shop(shop_id)
        if record is None:
            raise NotFound(f"shop {shop_id} not found", field="shop_id")
        return pseudonym(record.pseudonym_key, member_id)

    def program(self, shop_id: str) -> Program:
        program = self._programs.get(shop_id, lambda: shop_store.get_program(self.db, shop_id))
        if program is None:
            raise NotFound(f"shop {shop_id} not found", field="shop_id")
        return program

    def set_program(self, shop_id: str, program: Program) -> Program:
        """Save the program; one whose tiers give monthly coupons files the shop for the monthly run's next 1st."""
        now = self.clock()
        monthly = None
        if any(tier.monthly_coupons for tier in program.tiers):
            first = next_month_start(local_day(now, program.timezone))
            monthly = (first, day_starts(first, program.timezone))
        shop_store.put_program(self.db, shop_id, program, now, monthly=monthly, shards=self.shards)
        self._programs.forget(shop_id)
        return program
