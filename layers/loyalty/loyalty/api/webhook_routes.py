"""POST /v1/shops/{shop_id}/webhooks/orders: verify, validate, enqueue, answer 202. Nothing else."""

import json
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Path
from pydantic import TypeAdapter, ValidationError

from loyalty.api import errors
from loyalty.api.routes import json_response
from loyalty.domain.orders import OrderEvent
from loyalty.service.loyalty import Loyalty
from loyalty.store.queue import Queues
from loyalty.webhooks import standard

_events: TypeAdapter[Any] = TypeAdapter(OrderEvent)


def build(service: Loyalty, queues: Queues) -> APIGatewayRestResolver:
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
        shop = service.shop(shop_id)
        if shop is None:
            return errors.error_response(401, "unauthenticated", "unknown shop or bad signature")
        try:
            delivery_id = standard.verify(shop.webhook_secret, event.headers, raw, service.clock())
        except standard.SignatureError as exc:
            return errors.error_response(401, "bad_signature", str(exc))
        try:
            payload = json.loads(raw)
            order_event = _events.validate_python(payload)
        except ValueError as exc:  # JSON errors and pydantic's ValidationError are both ValueErrors
            return _invalid(exc)
        queues.enqueue_order_event(
            {"shop_id": shop_id, "delivery_id": delivery_id, "event": order_event.model_dump(mode="json")}
        )
        return json_response(202, {"accepted": True, "delivery_id": delivery_id})

    return app


def _invalid(exc: ValueError) -> Response[str]:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        field = errors.field_name(first["loc"])
        return errors.error_response(400, "invalid", f"{field}: {first['msg']}", field=field)
    return errors.error_response(400, "invalid", "body is not JSON", field="body")
