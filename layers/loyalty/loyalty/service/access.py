"""Staff API keys: created with a name and a role, listed (never shown again), rotated with an overlap, revoked;
and checking a key a request presents.

A key reads `<shop>.<key id>.<secret>`: the shop and key ids say which digest to compare with, so checking it is
one read (cached per container for `cache_seconds`). A revoked or rotated key is refused at once by the container
that revoked it and by the others within `cache_seconds`.
"""

import hmac
import re
import secrets
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from loyalty.domain.access import Caller, Denied, Role
from loyalty.domain.errors import Conflict, InvalidInput, NotFound
from loyalty.domain.ledger import iso
from loyalty.service.cache import TTLCache
from loyalty.store import api_keys as key_store
from loyalty.store.api_keys import ApiKey
from loyalty.store.dynamo import Dynamo
from loyalty.store.keys import digest

SHOP_ID = re.compile(r"shp_[0-9a-f]{16}")
KEY_ID = re.compile(r"key_[0-9a-f]{12}")
# How long a rotated key's previous secret keeps opening, unless the rotation says otherwise; and the most.
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=30)
# What a support key may adjust per local day unless its creation says otherwise.
DEFAULT_SUPPORT_CAP = 1000


def new_key(shop_id: str, name: str, role: Role, now: datetime, adjustment_cap: int | None) -> tuple[ApiKey, str]:
    """A key and its secret form (shown once)."""
    key_id = "key_" + secrets.token_hex(6)
    api_key = f"{shop_id}.{key_id}.{secrets.token_urlsafe(32)}"
    return ApiKey(key_id, name, role, digest(api_key), now, adjustment_cap=adjustment_cap), api_key


class Access:
    def __init__(self, db: Dynamo, *, clock: Callable[[], datetime], cache_seconds: float) -> None:
        self.db = db
        self.clock = clock
        self._keys: TTLCache[ApiKey | None] = TTLCache(cache_seconds)

    def authenticate(self, api_key: str, shop_id: str) -> Caller:
        """The caller a staff key stands for. Denied('unauthenticated') for a key that is not one of ours (or is
        revoked, or a rotated secret past its overlap); Denied('forbidden') for another shop's key."""
        key_shop, key_id, secret = [*api_key.split(".", 2), "", ""][:3]
        if not (SHOP_ID.fullmatch(key_shop) and KEY_ID.fullmatch(key_id) and secret) or len(api_key) > 200:
            raise Denied("unauthenticated")  # not of our shape: no read
        # An unknown key is remembered as unknown too: a stranger repeating it does not reach the table.
        key = self._keys.get(
            f"{key_shop}/{key_id}", lambda: key_store.get_key(self.db, key_shop, key_id), remember_missing=True
        )
        if key is None or key.revoked_at is not None or not self._opens(key, digest(api_key)):
            raise Denied("unauthenticated")
        if key_shop != shop_id:
            raise Denied("forbidden", "these credentials do not open this shop")
        return Caller(
            kind="key", shop_id=key_shop, key_id=key.key_id, name=key.name, role=key.role,
            adjustment_cap=key.adjustment_cap,
        )  # fmt: skip

    def _opens(self, key: ApiKey, supplied: str) -> bool:
        if hmac.compare_digest(key.secret_sha256, supplied):
            return True
        previous, until = key.previous_sha256, key.previous_until
        return bool(previous and until and self.clock() < until and hmac.compare_digest(previous, supplied))

    def create(self, shop_id: str, name: str, role: Role, adjustment_cap: int | None = None) -> dict[str, object]:
        if adjustment_cap is None and role == "support":
            adjustment_cap = DEFAULT_SUPPORT_CAP
        key, api_key = new_key(shop_id, name, role, self.clock(), adjustment_cap)
        key_store.create_key(self.db, shop_id, key)
        return {**view(key), "api_key": api_key}

    def list(self, shop_id: str) -> list[dict[str, object]]:
        return [view(key) for key in key_store.keys(self.db, shop_id)]

    def rotate(self, shop_id: str, key_id: str, overlap: timedelta | None) -> dict[str, object]:
        """A new secret for the key; the previous one keeps opening for `overlap` (so deployments can switch)."""
        overlap = DEFAULT_OVERLAP if overlap is None else overlap
        if overlap > MAX_OVERLAP:
            raise InvalidInput(f"at most {MAX_OVERLAP.days} days", field="overlap_seconds")
        now = self.clock()
        api_key = f"{shop_id}.{key_id}.{secrets.token_urlsafe(32)}"
        key_store.rotate(self.db, shop_id, key_id, digest(api_key), now=now, until=now + overlap)
        self._keys.forget(f"{shop_id}/{key_id}")
        rotated = key_store.get_key(self.db, shop_id, key_id, consistent=True)
        assert rotated is not None
        return {**view(rotated), "api_key": api_key}

    def revoke(self, shop_id: str, key_id: str, *, by: Caller) -> dict[str, object]:
        """Revoke at once; never the shop's last active owner key (409)."""
        current = key_store.get_key(self.db, shop_id, key_id, consistent=True)
        if current is None or current.revoked_at is not None:
            raise NotFound(f"no active key {key_id}", field="key_id")
        keep = key_id
        if current.role == "owner":
            others = [
                key.key_id
                for key in key_store.keys(self.db, shop_id)
                if key.role == "owner" and key.revoked_at is None and key.key_id != key_id
            ]
            if not others:
                raise Conflict("a shop keeps at least one active owner key", field="key_id")
            keep = by.key_id if by.key_id in others else others[0]
        now = self.clock()
        key_store.revoke(self.db, shop_id, key_id, now=now, keep_owner=keep)
        self._keys.forget(f"{shop_id}/{key_id}")
        return view(replace(current, revoked_at=now))  # what was written, without reading it back


def view(key: ApiKey) -> dict[str, object]:
    """A key as listed: never its secret or digest."""
    shown: dict[str, object] = {
        "key_id": key.key_id,
        "name": key.name,
        "role": key.role,
        "created_at": iso(key.created_at),
        "adjustment_cap": key.adjustment_cap,
        "rotated_at": iso(key.rotated_at) if key.rotated_at else None,
        "previous_valid_until": iso(key.previous_until) if key.previous_until else None,
        "revoked_at": iso(key.revoked_at) if key.revoked_at else None,
    }
    return {name: value for name, value in shown.items() if value is not None}
