"""Shopify: orders/paid, refunds/create, orders/cancelled.

Signed with X-Shopify-Hmac-Sha256 = base64 HMAC-SHA256 of the raw body, keyed with the app's secret. Money is
taken in shop money (the store's currency), never presentment money (the buyer's). What earns is each line's
price x quantity less its discount allocations (shipping is a separate line and never earns; tax counts as the
store's prices include it). Refunds are measured in goods: the refund's line subtotals against the order's goods.
"""

from collections.abc import Mapping
from datetime import datetime
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


def verify(integration: Integration, headers: Mapping[str, str], raw: bytes, now: datetime) -> None:
    if not same(hmac_base64(integration.secret, raw), headers.get("x-shopify-hmac-sha256")):
        raise SignatureError("X-Shopify-Hmac-Sha256 does not match the body")


def parse(integration: Integration, headers: Mapping[str, str], body: dict[str, Any]) -> Delivery:
    topic = headers.get("x-shopify-topic", "")
    delivery = Delivery(
        headers.get("x-shopify-webhook-id") or headers.get("x-shopify-event-id") or f"{topic}:{body.get('id')}"
    )
    if topic == "orders/paid":
        event = _paid(integration, body)
        if event is None:
            delivery.ignored = "guest checkout without customer, e-mail or phone: no member to credit"
        else:
            delivery.events.append(event)
    elif topic == "refunds/create":
        currency = _shop_currency(body)
        amount = sum(
            minor(_shop(item, "subtotal", currency), currency, f"refund_line_items[{n}].subtotal")
            for n, item in enumerate(body.get("refund_line_items") or [])
        )
        if amount <= 0:
            delivery.ignored = "the refund returns no goods (shipping or an adjustment only)"
        else:
            delivery.events.append(
                {
                    "type": "order.refunded",
                    "data": {
                        "order_id": _id(body, "order_id"),
                        "refund_id": _id(body, "id"),
                        "amount": money(amount, currency),
                    },
                }
            )
    elif topic == "orders/cancelled":
        delivery.events.append({"type": "order.cancelled", "data": {"order_id": _id(body, "id")}})
    else:
        delivery.ignored = f"topic {topic or '(none)'} carries nothing for points"
    return delivery


def _paid(integration: Integration, order: dict[str, Any]) -> dict[str, Any] | None:
    currency = _shop_currency(order)
    buyer = order.get("customer") or {}
    who = customer(
        integration,
        customer_id=buyer.get("id"),
        email=buyer.get("email") or order.get("email") or order.get("contact_email"),
        phone=buyer.get("phone") or order.get("phone"),
    )
    if who is None:
        return None
    lines = []
    for n, item in enumerate(order.get("line_items") or []):
        where = f"line_items[{n}]"
        if item.get("gift_card"):
            continue  # selling a gift card is not spending: points come when the card is spent
        quantity = int(item.get("quantity") or 0)
        price = minor(_shop(item, "price", currency), currency, f"{where}.price")
        discounts = sum(
            minor(_shop(allocation, "amount", currency), currency, f"{where}.discount_allocations[{k}]")
            for k, allocation in enumerate(item.get("discount_allocations") or [])
        )
        paid = max(price * quantity - discounts, 0)
        category = integration.category_map.category(
            sku=item.get("sku"),
            product_id=item.get("product_id"),
            vendor=item.get("vendor"),
            product_type=item.get("product_type"),
        )
        lines.append(
            {
                "sku": sku(item.get("sku"), f"line-{item.get('id', n)}"),
                "category": category,
                "quantity": max(quantity, 1),
                "amount": money(paid, currency),
            }
        )
    if not lines:
        raise MappingError("the order has no goods lines", "line_items")
    total = sum(minor(line["amount"], currency, "line") for line in lines)
    return {
        "type": "order.paid",
        "data": {
            "order_id": _id(order, "id"),
            "customer": who,
            "currency": currency,
            "total": money(total, currency),
            "lines": lines,
            "paid_at": order.get("processed_at") or order.get("created_at"),
        },
    }


def _shop_currency(body: dict[str, Any]) -> str:
    currency = body.get("currency")
    if not currency:  # refunds carry it in each amount set
        for item in body.get("refund_line_items") or []:
            currency = ((item.get("subtotal_set") or {}).get("shop_money") or {}).get("currency_code")
            if currency:
                break
    if not isinstance(currency, str) or not currency:
        raise MappingError("no shop currency in the payload", "currency")
    return currency.upper()


def _shop(item: dict[str, Any], name: str, currency: str) -> Any:
    """The shop-money amount of a field (`<name>_set.shop_money`), else the plain field (also shop money)."""
    shop_money = (item.get(f"{name}_set") or {}).get("shop_money") or {}
    if shop_money.get("amount") is not None:
        if str(shop_money.get("currency_code", currency)).upper() != currency:
            raise MappingError(f"{name}_set.shop_money is not in the shop's currency {currency}", f"{name}_set")
        return shop_money["amount"]
    if item.get(name) is None:
        raise MappingError(f"{name} is missing", name)
    return item[name]


def _id(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if value in (None, ""):
        raise MappingError(f"{name} is missing", name)
    return str(value)
