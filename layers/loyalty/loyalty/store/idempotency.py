"""Records of requests made idempotent by a caller's key: what was asked (a fingerprint) and the first answer.
Each is kept in the partition of the member the request acts for (keys.idempotency_key)."""

from datetime import datetime
from typing import Any

from loyalty.domain.ledger import iso
from loyalty.store.dynamo import Dynamo, Item, Transaction
from loyalty.store.keys import idempotency_key


def add_record(
    tx: Transaction,
    shop_id: str,
    member_id: str,
    scope: str,
    key: str,
    *,
    request: str,
    response: dict[str, Any],
    now: datetime,
) -> int:
    """Part of the request's own transaction, so the key is taken exactly when the request's effect is made."""
    pk, sk = idempotency_key(shop_id, member_id, scope, key)
    return tx.put(
        {
            "PK": pk,
            "SK": sk,
            "type": "idempotency",
            "request_sha256": request,
            "response": response,
            "created_at": iso(now),
        },
        condition="attribute_not_exists(SK)",
    )


def get_record(db: Dynamo, shop_id: str, member_id: str, scope: str, key: str) -> Item | None:
    return db.get(*idempotency_key(shop_id, member_id, scope, key))
