"""Shops' platform integrations, and the deliveries already taken from each platform."""

import contextlib
from datetime import datetime, timedelta

from loyalty.domain.integrations import Integration, Platform
from loyalty.domain.ledger import iso
from loyalty.store.dynamo import ConditionFailed, Dynamo
from loyalty.store.keys import DELIVERY_SK, INTEGRATION_PREFIX, delivery_pk, shop_pk

# Platforms retry for hours (Shopify) to days (Stripe); a delivery id is remembered well beyond that.
REMEMBER_DELIVERIES = timedelta(days=30)


def put_integration(db: Dynamo, shop_id: str, integration: Integration, now: datetime) -> None:
    db.put(
        {
            "PK": shop_pk(shop_id),
            "SK": f"{INTEGRATION_PREFIX}{integration.platform}",
            "type": "integration",
            **integration.model_dump(mode="json"),
            "updated_at": iso(now),
        }
    )


def get_integration(db: Dynamo, shop_id: str, platform: Platform) -> Integration | None:
    item = db.get(shop_pk(shop_id), f"{INTEGRATION_PREFIX}{platform}", consistent=False)
    if item is None:
        return None
    fields = {key: value for key, value in item.items() if key in Integration.model_fields}
    return Integration.model_validate(fields)


def seen(db: Dynamo, shop_id: str, platform: str, delivery_id: str) -> bool:
    return db.get(delivery_pk(shop_id, platform, delivery_id), DELIVERY_SK, consistent=False) is not None


def remember(db: Dynamo, shop_id: str, platform: str, delivery_id: str, now: datetime) -> None:
    """Record a delivery whose events are queued. Written after the queueing: a crash between the two lets a retry
    queue them again, which the order's own idempotency absorbs; the reverse could lose an event."""
    with contextlib.suppress(ConditionFailed):  # a concurrent retry recorded it first
        db.put(
            {
                "PK": delivery_pk(shop_id, platform, delivery_id),
                "SK": DELIVERY_SK,
                "type": "delivery",
                "at": iso(now),
                "ttl": int((now + REMEMBER_DELIVERIES).timestamp()),
            },
            condition="attribute_not_exists(PK)",
        )
