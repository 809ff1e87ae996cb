"""POST /v1/shops/{shop_id}/webhooks/orders: verify, validate, enqueue, answer 202. Nothing else."""

import json
from collections.abc import Callable
from typing import Annotated

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import ValidationError

from loyalty.api import errors
from loyalty.api.common import json_response
from loyalty.domain.orders import EVENT_TYPES
from loyalty.service.loyalty import Loyalty
from loyalty.store.queue import Queues
from loyalty.webhooks import standard


def build(service: Callable[[], Loyalty], queues: Callable[[], Queues]) -> APIGatewayRestResolver:
    app = APIGatewayRestResolver(enable_validation=True)
    errors.install(app)

    @app.post(
        "/v1/shops/<shop_id>/webhooks/orders",
        summary="Receive a signed order event (Standard Webhooks)",
        tags=["webhooks"],
    )
    def order_webhook(shop_id: Annotated[str, Path(max_length=64)]) -> Response[str]:
        event = app.current_event
        raw = event.decoded_body.encode() if event.decoded_body is not None else b""
        shop = service().shop(shop_id)
        if shop is None:
            return errors.error_response(401, "unauthenticated", "unknown shop or bad signature")
        try:
            delivery_id = standard.verify(shop.webhook_secret, event.headers, raw, service().clock())
        except standard.SignatureError as exc:
            return errors.error_response(401, "bad_signature", str(exc))
        try:
            payload = json.loads(raw)
        except ValueError:
            return errors.error_response(400, "invalid", "body is not JSON", field="body")
        kind = EVENT_TYPES.get(str(payload.get("type"))) if isinstance(payload, dict) else None
        if kind is None:
            return errors.error_response(400, "invalid", f"type must be one of {sorted(EVENT_TYPES)}", field="type")
        try:
            order_event = kind.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = errors.field_name(first["loc"])
            return errors.error_response(400, "invalid", f"{field}: {first['msg']}", field=field)
        queues().enqueue_order_event(
            {"shop_id": shop_id, "delivery_id": delivery_id, "event": order_event.model_dump(mode="json")}
        )
        return json_response(202, {"accepted": True, "delivery_id": delivery_id})

    return app
