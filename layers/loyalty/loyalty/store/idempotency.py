"""Records of requests made idempotent by a caller's key: what was asked (a fingerprint) and the first answer."""

from datetime import datetime
from typing import Any

from loyalty.domain.ledger import iso
from loyalty.store.dynamo import Dynamo, Item, Transaction
from loyalty.store.keys import IDEMPOTENCY_SK, idempotency_pk


def add_record(
    tx: Transaction, shop_id: str, scope: str, key: str, *, request: str, response: dict[str, Any], now: datetime
) -> int:
    """Part of the request's own transaction, so the key is taken exactly when the request's effect is made."""
    return tx.put(
        {
            "PK": idempotency_pk(shop_id, scope, key),
            "SK": IDEMPOTENCY_SK,
            "type": "idempotency",
            "request_sha256": request,
            "response": response,
            "created_at": iso(now),
        },
        condition="attribute_not_exists(PK)",
    )


def get_record(db: Dynamo, shop_id: str, scope: str, key: str) -> Item | None:
    return db.get(idempotency_pk(shop_id, scope, key), IDEMPOTENCY_SK)
