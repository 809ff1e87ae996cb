"""Stripe: checkout.session.completed (and async_payment_succeeded) once paid; charge.refunded (the cumulative
amount_refunded) and refund.created/updated once succeeded.

Signed with `Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]` = hex HMAC-SHA256 of "{t}.{raw body}", keyed with the
whole `whsec_...` secret as UTF-8; `t` must be within 5 minutes. Amounts are integers in the currency's minor
unit (JPY has none, so 1999 is ¥1999); currencies are lower-case. A session carries no line items, so it earns as
one line: its subtotal less its discounts (shipping and added tax excluded), in the integration's default
category. Refunds are measured against what the session charged. The order is the payment intent, which charges
and refunds name too.
"""

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from loyalty.domain.integrations import Integration
from loyalty.webhooks.common import Delivery, MappingError, SignatureError, customer, money

TOLERANCE_SECONDS = 300


def sign(secret: str, timestamp: int, raw: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()


def verify(integration: Integration, headers: Mapping[str, str], raw: bytes, now: datetime) -> None:
    header = headers.get("stripe-signature")
    if not header:
        raise SignatureError("Stripe-Signature is missing")
    parts = [part.split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for key, value in parts if key.strip() == "t"]
    candidates = [value.strip() for key, value in parts if key.strip() == "v1"]
    try:
        timestamp = int(stamps[0])
    except (IndexError, ValueError) as exc:
        raise SignatureError("Stripe-Signature has no timestamp") from exc
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("Stripe-Signature's timestamp is outside the 5-minute tolerance")
    expected = sign(integration.secret, timestamp, raw)
    if not any(hmac.compare_digest(expected, candidate) for candidate in candidates):
        raise SignatureError("no v1 signature matches")


def parse(integration: Integration, headers: Mapping[str, str], body: dict[str, Any]) -> Delivery:
    event_id = body.get("id")
    if not event_id:
        raise MappingError("id is missing", "id")
    delivery = Delivery(str(event_id))
    kind = str(body.get("type", ""))
    obj = (body.get("data") or {}).get("object") or {}
    if kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded"):
        if obj.get("payment_status") != "paid":
            delivery.ignored = f"payment_status {obj.get('payment_status')}: not paid yet"
            return delivery
        paid = _paid(integration, body, obj)
        if paid is None:
            delivery.ignored = "no customer, e-mail or phone on the session: no member to credit"
        else:
            delivery.events.append(paid)
    elif kind == "charge.refunded":
        delivery.events.append(
            {
                "type": "order.refunded",
                "data": {
                    "order_id": _order(obj),
                    "refund_id": str(event_id),
                    "amount": money(_int(obj, "amount_refunded"), _currency(obj)),
                    "cumulative": True,
                },
            }
        )
    elif kind in ("refund.created", "refund.updated", "charge.refund.updated"):
        if obj.get("status") != "succeeded":
            delivery.ignored = f"refund status {obj.get('status')}: not final"
            return delivery
        delivery.events.append(
            {
                "type": "order.refunded",
                "data": {
                    "order_id": _order(obj),
                    "refund_id": str(obj.get("id")),
                    "amount": money(_int(obj, "amount"), _currency(obj)),
                },
            }
        )
    else:
        delivery.ignored = f"event type {kind or '(none)'} carries nothing for points"
    return delivery


def _paid(integration: Integration, event: dict[str, Any], session: dict[str, Any]) -> dict[str, Any] | None:
    currency = _currency(session)
    details = session.get("customer_details") or {}
    who = customer(
        integration,
        customer_id=session.get("customer"),
        email=details.get("email") or session.get("customer_email"),
        phone=details.get("phone"),
    )
    if who is None:
        return None
    discount = int((session.get("total_details") or {}).get("amount_discount") or 0)
    goods = max(_int(session, "amount_subtotal") - discount, 0)
    created = event.get("created")
    if not isinstance(created, int):
        raise MappingError("created is missing", "created")
    return {
        "type": "order.paid",
        "data": {
            "order_id": _order(session),
            "customer": who,
            "currency": currency,
            "total": money(_int(session, "amount_total"), currency),
            "lines": [
                {
                    "sku": "checkout-session",
                    "category": integration.category_map.default,
                    "quantity": 1,
                    "amount": money(goods, currency),
                }
            ],
            "paid_at": datetime.fromtimestamp(created, UTC).isoformat(),
        },
    }


def _order(obj: dict[str, Any]) -> str:
    """The payment intent links a session to its charge and refunds. Without one (the legacy Charges API) a refund
    names its charge, a charge is itself, and a session is its own order."""
    own = str(obj.get("id", ""))
    order = obj.get("payment_intent") or obj.get("charge") or (own if own.startswith(("ch_", "cs_")) else None)
    if not order:
        raise MappingError("payment_intent is missing", "data.object.payment_intent")
    return str(order)


def _int(obj: dict[str, Any], name: str) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise MappingError(f"{name} must be a whole number of minor units", f"data.object.{name}")
    return value


def _currency(obj: dict[str, Any]) -> str:
    currency = obj.get("currency")
    if not isinstance(currency, str) or len(currency) != 3:
        raise MappingError("currency is missing", "data.object.currency")
    return currency.upper()
