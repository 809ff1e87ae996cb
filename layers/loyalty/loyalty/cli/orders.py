"""`loyalty send-order`: a sample order event, signed with the shop's webhook secret as Standard Webhooks asks,
sent to the shop's order webhook, so points can be seen arriving without writing any HMAC code."""

import argparse
import json
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from loyalty.cli.http import base_url, call
from loyalty.webhooks.standard import sign


def add_command(commands: Any) -> None:
    command = commands.add_parser("send-order", help="sign and send a sample order.paid event")
    command.add_argument("--shop", required=True, help="the shop's id (shp_…)")
    command.add_argument("--secret", required=True, help="the shop's webhook_secret (whsec_…)")
    command.add_argument("--member", required=True, help="the member who paid")
    command.add_argument("--amount", required=True, help="what they paid, e.g. 99.00")
    command.add_argument("--currency", default="CNY")
    command.add_argument("--category", default="general", help="the line's category (for category multipliers)")
    command.add_argument("--order-id", help="default: a new one; send the same again to see it applied once")
    command.add_argument("--url", help="the API (default $LOYALTY_URL or http://127.0.0.1:3000)")
    command.set_defaults(run=run)


def order_event(member: str, amount: str, currency: str, category: str, order_id: str) -> dict[str, Any]:
    try:
        Decimal(amount)
    except InvalidOperation as exc:
        raise SystemExit(f"--amount: not a number: {amount!r}") from exc
    return {
        "type": "order.paid",
        "data": {
            "order_id": order_id,
            "member_id": member,
            "currency": currency,
            "total": amount,
            "lines": [{"sku": "sample", "category": category, "quantity": 1, "amount": amount}],
            "paid_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
    }


def run(args: argparse.Namespace) -> int:
    order_id = args.order_id or "cli-" + uuid.uuid4().hex[:12]
    body = json.dumps(order_event(args.member, args.amount, args.currency, args.category, order_id)).encode()
    message_id, stamp = "msg_" + uuid.uuid4().hex, int(time.time())
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(args.secret, message_id, stamp, body),
    }
    url = f"{base_url(args.url)}/v1/shops/{args.shop}/webhooks/orders"
    status, answer = call("POST", url, body=body, headers=headers)
    print(json.dumps({"order_id": order_id, "status": status, "answer": answer}))
    return 0 if status in (200, 202) else 1
