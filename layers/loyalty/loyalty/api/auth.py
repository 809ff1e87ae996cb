"""Bearer credentials: the operator's key (creates shops) and each shop's API key (opens only that shop)."""

import hashlib
import hmac
import os

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

from loyalty.domain.access import Denied


def bearer(app: ApiGatewayResolver) -> str:
    header = app.current_event.headers.get("authorization") or app.current_event.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Denied("unauthenticated")
    return token.strip()


def has_bearer(app: ApiGatewayResolver) -> bool:
    return bool(app.current_event.headers.get("authorization") or app.current_event.headers.get("Authorization"))


def require_operator(app: ApiGatewayResolver) -> None:
    expected = os.environ.get("OPERATOR_KEY_SHA256", "")
    supplied = hashlib.sha256(bearer(app).encode()).hexdigest()
    if not expected or not hmac.compare_digest(expected, supplied):
        raise Denied("unauthenticated")
