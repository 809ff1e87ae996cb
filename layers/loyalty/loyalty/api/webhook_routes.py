"""Webhooks: verify over the raw bytes, map to our order events, enqueue, answer as the sender expects. Nothing else.

POST /v1/shops/{shop_id}/webhooks/orders           our own events, signed as Standard Webhooks (202)
POST /v1/shops/{shop_id}/webhooks/{platform}       shopify, woocommerce, stripe, youzan, signed their way (200)
"""

import json
from decimal import Decimal
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import ValidationError

from loyalty import runtime
from loyalty.api import errors
from loyalty.api.common import json_response
from loyalty.domain.integrations import PLATFORMS, Platform
from loyalty.domain.orders import EVENT_TYPES, OrderEnvelope
from loyalty.webhooks import standard, woocommerce, youzan
from loyalty.webhooks.common import MappingError, SignatureError, lower
from loyalty.webhooks.platforms import PLATFORMS as HANDLERS


def build() -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)
    errors.install(app)  # the signature is the credential, checked in each route before the body is read

    @app.post(
        "/v1/shops/<shop_id>/webhooks/orders",
        summary="Receive a signed order event (Standard Webhooks)",
        tags=["webhooks"],
    )
    def order_webhook(shop_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
        event = app.current_event
        raw = event.decoded_body.encode() if event.decoded_body is not None else b""
        services = runtime.services()
        shop = services.shops.shop(shop_id)
        if shop is None:
            return errors.error_response(401, "unauthenticated", "unknown shop or bad signature")
        try:
            delivery_id = standard.verify(shop.webhook_secret, event.headers, raw, services.clock())
        except SignatureError as exc:
            return errors.error_response(401, "bad_signature", str(exc))
        try:
            payload = json.loads(raw)
        except ValueError:
            return errors.error_response(400, "invalid", "body is not JSON", field="body")
        kind = EVENT_TYPES.get(str(payload.get("type"))) if isinstance(payload, dict) else None
        if kind is None:
            return errors.error_response(400, "invalid", f"type must be one of {sorted(EVENT_TYPES)}", field="type")
        try:
            envelope = OrderEnvelope.queued(shop_id, delivery_id, kind.model_validate(payload))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = tuple(first["loc"])
            field = "webhook-id" if loc[:1] == ("delivery_id",) else errors.field_name(loc)
            return errors.error_response(400, "invalid", f"{field}: {first['msg']}", field=field)
        runtime.queues().enqueue_order_event(envelope)
        return json_response(202, {"accepted": True, "delivery_id": delivery_id})

    @app.post(
        "/v1/shops/<shop_id>/webhooks/<platform>",
        summary="Receive a shop platform's webhook (shopify, woocommerce, stripe, youzan), verified its own way",
        tags=["webhooks"],
    )
    def platform_webhook(shop_id: Annotated[str, Path(max_length=64)], platform: str) -> Response[str]:
        event = app.current_event
        raw = event.decoded_body.encode() if event.decoded_body is not None else b""
        headers = lower(event.headers or {})
        if platform not in PLATFORMS:
            return errors.error_response(
                404, "not_found", f"platform must be one of {list(PLATFORMS)}", field="platform"
            )
        name: Platform = platform
        if name == "woocommerce" and woocommerce.is_ping(headers, raw):
            return json_response(200, {"accepted": False, "reason": "WooCommerce webhook created (ping)"})
        services = runtime.services()
        integration = services.platforms.integration(shop_id, name) if services.shops.shop(shop_id) else None
        if integration is None:
            return errors.error_response(401, "unauthenticated", f"unknown shop, or no {name} integration")
        try:
            HANDLERS[name].verify(integration, headers, raw, services.clock())
        except SignatureError as exc:
            return errors.error_response(401, "bad_signature", str(exc))
        try:
            body = json.loads(raw, parse_float=Decimal)  # exact: Shopify sends some amounts as JSON numbers
        except ValueError:
            return errors.error_response(400, "invalid", "body is not JSON", field="body")
        if not isinstance(body, dict):
            return errors.error_response(400, "invalid", "body is not a JSON object", field="body")
        try:
            delivery = services.platforms.platform_delivery(shop_id, integration, headers, body, runtime.queues())
        except MappingError as exc:
            return errors.error_response(400, "invalid", exc.message, field=exc.field)
        answer: dict[str, object] = {"accepted": bool(delivery.events), "delivery_id": delivery.delivery_id}
        if delivery.ignored:
            answer["reason"] = delivery.ignored
        else:
            answer["events"] = [e["type"] for e in delivery.events]
        if name == "youzan":  # Youzan retries unless the answer contains "success"
            answer |= youzan.ANSWER
        return json_response(200, answer)

    return app
