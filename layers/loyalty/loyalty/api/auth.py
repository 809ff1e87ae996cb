"""Bearer credentials: the operator's key (creates shops) and each shop's API key (opens only that shop)."""

import hashlib
import hmac
import os

from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver

from loyalty.domain.access import Denied


def _authorization(app: ApiGatewayResolver) -> str:
    return app.current_event.headers.get("authorization") or app.current_event.headers.get("Authorization") or ""


def bearer(app: ApiGatewayResolver) -> str:
    scheme, _, token = _authorization(app).partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Denied("unauthenticated")
    return token.strip()


def has_bearer(app: ApiGatewayResolver) -> bool:
    """Whether the request carries credentials in its header (then they, not a dashboard link, decide)."""
    return bool(_authorization(app))


def require_operator(app: ApiGatewayResolver) -> None:
    expected = os.environ.get("OPERATOR_KEY_SHA256", "")
    supplied = hashlib.sha256(bearer(app).encode()).hexdigest()
    if not expected or not hmac.compare_digest(expected, supplied):
        raise Denied("unauthenticated")
