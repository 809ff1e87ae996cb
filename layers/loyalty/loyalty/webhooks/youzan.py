"""Youzan 有赞: trade_TradePaid and trade_TradeSuccess (paid), trade_TradeClose (closed), trade_refund_RefundSuccess.

Signed with header Event-Sign = lower-case hex MD5(client_id + raw body + client_secret). The body is JSON whose
`msg` is URL-encoded JSON (`+` for spaces). Youzan wants an answer containing `success` within 5 seconds. Money is
yuan as decimal strings; each line's `payment` is what the buyer paid for it after promotions; the post fee never
earns. Refunds are measured against the trade's payment. Pay times are China time.
"""

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus
from zoneinfo import ZoneInfo

from loyalty.domain.integrations import Integration
from loyalty.webhooks.common import Delivery, MappingError, SignatureError, customer, minor, money, sku

CURRENCY = "CNY"
CHINA = ZoneInfo("Asia/Shanghai")
PAID = {"trade_TradePaid", "trade_TradeSuccess"}
ANSWER = {"code": 0, "msg": "success"}


def sign(client_id: str, secret: str, raw: bytes) -> str:
    return hashlib.md5(client_id.encode() + raw + secret.encode(), usedforsecurity=False).hexdigest()


def verify(integration: Integration, headers: Mapping[str, str], raw: bytes, now: datetime) -> None:
    client_id = integration.client_id or ""
    given = headers.get("event-sign")
    if not given or not hmac.compare_digest(sign(client_id, integration.secret, raw), given.strip().lower()):
        raise SignatureError("Event-Sign does not match the body")
    if headers.get("client-id") not in (None, client_id):
        raise SignatureError("Client-Id is not this shop's")


def parse(integration: Integration, headers: Mapping[str, str], body: dict[str, Any]) -> Delivery:
    kind = str(body.get("type") or headers.get("event-type") or "")
    delivery = Delivery(str(body.get("msg_id") or f"{kind}:{body.get('id')}:{body.get('version')}"))
    try:
        message = json.loads(unquote_plus(str(body.get("msg") or "")))
    except ValueError as exc:
        raise MappingError("msg is not URL-encoded JSON", "msg") from exc
    if not isinstance(message, dict):
        raise MappingError("msg is not an object", "msg")
    if kind in PAID and not message.get("full_order_info"):
        delivery.ignored = f"{kind} without the order's detail: trade_TradePaid carries it"
    elif kind in PAID:
        paid = _paid(integration, body, message)
        if paid is None:
            delivery.ignored = "no buyer id or phone: no member to credit"
        else:
            delivery.events.append(paid)
    elif kind == "trade_TradeClose":
        delivery.events.append({"type": "order.cancelled", "data": {"order_id": _tid(body, message)}})
    elif kind == "trade_refund_RefundSuccess":
        fee = message.get("refunded_fee", message.get("refund_fee"))
        refund_id = message.get("refund_id")
        if fee is None or not refund_id:
            raise MappingError("refund_id and refunded_fee are required", "msg.refunded_fee")
        amount = minor(fee, CURRENCY, "msg.refunded_fee")
        delivery.events.append(
            {
                "type": "order.refunded",
                "data": {
                    "order_id": _tid(body, message),
                    "refund_id": str(refund_id),
                    "amount": money(amount, CURRENCY),
                },
            }
        )
    else:
        delivery.ignored = f"message type {kind or '(none)'} carries nothing for points"
    return delivery


def _paid(integration: Integration, body: dict[str, Any], message: dict[str, Any]) -> dict[str, Any] | None:
    full = message.get("full_order_info") or {}
    info = full.get("order_info") or {}
    buyer = full.get("buyer_info") or {}
    phone = buyer.get("buyer_phone")
    who = customer(
        integration,
        customer_id=buyer.get("yz_open_id") or buyer.get("outer_user_id") or buyer.get("buyer_id"),
        phone=None if isinstance(phone, str) and "$" in phone else phone,  # encrypted in newer pushes: unusable
    )
    if who is None:
        return None
    lines = []
    for n, item in enumerate(full.get("orders") or []):
        outer = item.get("outer_sku_id") or item.get("outer_item_id")
        lines.append(
            {
                "sku": sku(outer or item.get("sku_id"), f"item-{item.get('item_id', n)}"),
                "category": integration.category_map.category(sku=outer, product_id=item.get("item_id")),
                "quantity": max(int(item.get("num") or 1), 1),
                "amount": money(minor(item.get("payment", "0"), CURRENCY, f"msg.orders[{n}].payment"), CURRENCY),
            }
        )
    if not lines:
        raise MappingError("the trade has no orders (lines)", "msg.full_order_info.orders")
    payment = (full.get("pay_info") or {}).get("payment")
    if payment is None:
        raise MappingError("pay_info.payment is missing", "msg.full_order_info.pay_info.payment")
    return {
        "type": "order.paid",
        "data": {
            "order_id": _tid(body, message),
            "customer": who,
            "currency": CURRENCY,
            "total": money(minor(payment, CURRENCY, "msg.pay_info.payment"), CURRENCY),
            "lines": lines,
            "paid_at": _china_time(info.get("pay_time") or info.get("created"), "pay_time"),
        },
    }


def _tid(body: dict[str, Any], message: dict[str, Any]) -> str:
    tid = (
        ((message.get("full_order_info") or {}).get("order_info") or {}).get("tid")
        or message.get("tid")
        or body.get("id")
    )
    if not tid:
        raise MappingError("the trade id (tid) is missing", "id")
    return str(tid)


def _china_time(value: Any, field: str) -> str:
    try:
        moment = datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S").replace(tzinfo=CHINA)
    except ValueError as exc:
        raise MappingError(f"{field} is not 'YYYY-MM-DD HH:MM:SS'", f"msg.order_info.{field}") from exc
    return moment.isoformat()
