"""WooCommerce: order.created and order.updated, read by status; refunds as new entries in refunds[].

Signed with X-WC-Webhook-Signature = base64 HMAC-SHA256 of the raw body, keyed with the webhook's secret. On
creation WooCommerce sends an unsigned, form-encoded ping (`webhook_id=N`) that must get a 200. Money is decimal
strings in the order's currency. A line earns its total after discounts, plus its tax when the store's prices
include tax; shipping never earns. WooCommerce reports refunds only as amounts, so they are measured against the
order total (a refund of a tenth of what was paid takes a tenth of the points).
"""

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from loyalty.domain.integrations import Integration
from loyalty.webhooks.common import (
    Delivery,
    MappingError,
    SignatureError,
    customer,
    hmac_base64,
    minor,
    money,
    same,
    sku,
)

PAID = {"processing", "completed", "refunded"}  # statuses an order only reaches once paid


def is_ping(headers: Mapping[str, str], raw: bytes) -> bool:
    return "x-wc-webhook-signature" not in headers and raw.strip().startswith(b"webhook_id=")


def verify(integration: Integration, headers: Mapping[str, str], raw: bytes, now: datetime) -> None:
    if not same(hmac_base64(integration.secret, raw), headers.get("x-wc-webhook-signature")):
        raise SignatureError("X-WC-Webhook-Signature does not match the body")


def parse(integration: Integration, headers: Mapping[str, str], body: dict[str, Any]) -> Delivery:
    topic = headers.get("x-wc-webhook-topic", "")
    order_id = body.get("id")
    if order_id in (None, ""):
        raise MappingError("id is missing", "id")
    delivery = Delivery(
        headers.get("x-wc-webhook-delivery-id") or f"{topic}:{order_id}:{body.get('date_modified_gmt')}"
    )
    if topic and not topic.startswith("order."):
        delivery.ignored = f"topic {topic} carries nothing for points"
        return delivery
    status = str(body.get("status", ""))
    currency = str(body.get("currency") or "").upper()
    if not currency:
        raise MappingError("currency is missing", "currency")
    if status in PAID:
        paid = _paid(integration, body, currency)
        if paid is None:
            delivery.ignored = "guest checkout without e-mail or phone: no member to credit"
            return delivery
        delivery.events.append(paid)
    for n, refund in enumerate(body.get("refunds") or []):
        amount = -minor(refund.get("total"), currency, f"refunds[{n}].total")  # WooCommerce lists them negative
        if amount > 0:
            delivery.events.append(
                {
                    "type": "order.refunded",
                    "data": {
                        "order_id": str(order_id),
                        "refund_id": str(refund.get("id")),
                        "amount": money(amount, currency),
                    },
                }
            )
    if status == "cancelled":
        delivery.events.append({"type": "order.cancelled", "data": {"order_id": str(order_id)}})
    if not delivery.events:
        delivery.ignored = f"status {status or '(none)'}: not paid yet"
    return delivery


def _paid(integration: Integration, order: dict[str, Any], currency: str) -> dict[str, Any] | None:
    billing = order.get("billing") or {}
    who = customer(
        integration, customer_id=order.get("customer_id"), email=billing.get("email"), phone=billing.get("phone")
    )
    if who is None:
        return None
    include_tax = bool(order.get("prices_include_tax"))
    lines = []
    for n, item in enumerate(order.get("line_items") or []):
        where = f"line_items[{n}]"
        paid = minor(item.get("total", "0"), currency, f"{where}.total")
        if include_tax:
            paid += minor(item.get("total_tax", "0"), currency, f"{where}.total_tax")
        lines.append(
            {
                "sku": sku(item.get("sku"), f"product-{item.get('product_id', n)}"),
                "category": integration.category_map.category(sku=item.get("sku"), product_id=item.get("product_id")),
                "quantity": max(int(item.get("quantity") or 1), 1),
                "amount": money(paid, currency),
            }
        )
    if not lines:
        raise MappingError("the order has no line items", "line_items")
    return {
        "type": "order.paid",
        "data": {
            "order_id": str(order["id"]),
            "customer": who,
            "currency": currency,
            "total": money(minor(order.get("total", "0"), currency, "total"), currency),
            "lines": lines,
            "paid_at": _paid_at(order),
        },
    }


def _paid_at(order: dict[str, Any]) -> str:
    """date_paid_gmt (naive, UTC); an order completed without it (e.g. cash on delivery) counts when completed."""
    for name in ("date_paid_gmt", "date_completed_gmt", "date_modified_gmt", "date_created_gmt"):
        value = order.get(name)
        if value:
            try:
                moment = datetime.fromisoformat(str(value))
            except ValueError as exc:
                raise MappingError(f"{name} is not a date", name) from exc
            return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
    raise MappingError("no payment date (date_paid_gmt)", "date_paid_gmt")
