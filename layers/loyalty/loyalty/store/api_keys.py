"""Staff API keys: kept as SHA-256 digests (keys are 256 random bits, so a digest cannot be guessed back), with
their name, role and, while a rotation overlaps, the previous secret's digest and when it stops opening."""

from dataclasses import dataclass
from datetime import datetime

from loyalty.domain.access import Role
from loyalty.domain.errors import Conflict, NotFound
from loyalty.domain.ledger import iso
from loyalty.store.dynamo import ConditionFailed, Dynamo, Item, Transaction, TransactionCancelled
from loyalty.store.keys import ADJUSTED_PREFIX, API_KEY_PREFIX, api_key_pk, shop_pk


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    name: str
    role: Role
    secret_sha256: str
    created_at: datetime
    adjustment_cap: int | None = None
    previous_sha256: str | None = None
    previous_until: datetime | None = None
    rotated_at: datetime | None = None
    revoked_at: datetime | None = None


def add_key(tx: Transaction, shop_id: str, key: ApiKey) -> None:
    tx.put(_item(shop_id, key), condition="attribute_not_exists(PK)")


def create_key(db: Dynamo, shop_id: str, key: ApiKey) -> None:
    tx = db.transaction()
    add_key(tx, shop_id, key)
    db.commit(tx)


def get_key(db: Dynamo, shop_id: str, key_id: str, *, consistent: bool = False) -> ApiKey | None:
    item = db.get(shop_pk(shop_id), API_KEY_PREFIX + key_id, consistent=consistent)
    return _key(item) if item else None


def keys(db: Dynamo, shop_id: str) -> list[ApiKey]:
    return [_key(item) for item in db.query_all(shop_pk(shop_id), API_KEY_PREFIX)]


def rotate(db: Dynamo, shop_id: str, key_id: str, secret_sha256: str, *, now: datetime, until: datetime) -> None:
    """A new secret; the one it replaces keeps opening until `until`. Refused for a revoked key."""
    try:
        db.update(
            shop_pk(shop_id),
            API_KEY_PREFIX + key_id,
            "SET previous_sha256 = secret_sha256, previous_until = :until, secret_sha256 = :new, rotated_at = :now",
            values={":until": iso(until), ":new": secret_sha256, ":now": iso(now)},
            condition="attribute_exists(PK) AND attribute_not_exists(revoked_at)",
        )
    except ConditionFailed as exc:
        raise NotFound(f"no active key {key_id}", field="key_id") from exc


def revoke(db: Dynamo, shop_id: str, key_id: str, *, now: datetime, keep_owner: str) -> None:
    """Revoke a key at once. `keep_owner`: another owner key that must still be active, so a shop never loses its
    last owner (the transaction refuses otherwise)."""
    tx = db.transaction()
    tx.update(
        {"PK": shop_pk(shop_id), "SK": API_KEY_PREFIX + key_id},
        "SET revoked_at = :now",
        values={":now": iso(now)},
        condition="attribute_exists(PK) AND attribute_not_exists(revoked_at)",
    )
    owner = -1
    if keep_owner != key_id:
        owner = tx.check(
            {"PK": shop_pk(shop_id), "SK": API_KEY_PREFIX + keep_owner},
            "attribute_not_exists(revoked_at) AND #role = :owner",
            values={":owner": "owner"},
            names={"#role": "role"},
        )
    try:
        db.commit(tx)
    except TransactionCancelled as exc:
        if exc.failed(0):
            raise NotFound(f"no active key {key_id}", field="key_id") from exc
        if owner >= 0 and exc.failed(owner):
            raise Conflict("a shop keeps at least one active owner key", field="key_id") from exc
        raise


def add_adjusted(tx: Transaction, shop_id: str, key_id: str, day: str, points: int, cap: int | None) -> int:
    """Count `points` (absolute) against the key's cap for its local `day`; the transaction fails past the cap."""
    if cap is None:
        return -1
    return tx.update(
        {"PK": api_key_pk(shop_id, key_id), "SK": ADJUSTED_PREFIX + day},
        "ADD points_adjusted :n",
        values={":n": points, ":room": cap - points},
        condition="attribute_not_exists(points_adjusted) OR points_adjusted <= :room",
    )


def _item(shop_id: str, key: ApiKey) -> Item:
    return {
        "PK": shop_pk(shop_id),
        "SK": API_KEY_PREFIX + key.key_id,
        "type": "api_key",
        "key_id": key.key_id,
        "name": key.name,
        "role": key.role,
        "secret_sha256": key.secret_sha256,
        "created_at": iso(key.created_at),
        "adjustment_cap": key.adjustment_cap,
    }


def _key(item: Item) -> ApiKey:
    def when(name: str) -> datetime | None:
        return datetime.fromisoformat(item[name]) if item.get(name) else None

    return ApiKey(
        key_id=item["key_id"],
        name=item["name"],
        role=item["role"],
        secret_sha256=item["secret_sha256"],
        created_at=datetime.fromisoformat(item["created_at"]),
        adjustment_cap=item.get("adjustment_cap"),
        previous_sha256=item.get("previous_sha256"),
        previous_until=when("previous_until"),
        rotated_at=when("rotated_at"),
        revoked_at=when("revoked_at"),
    )
