"""One error shape for every 4xx: {"error": {"code", "message", "field"?, "fields"?}}. Never a 500 for a
client mistake."""

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from loyalty.domain.access import Denied
from loyalty.domain.cards import RateLimited
from loyalty.domain.coupons import NotApplicable
from loyalty.domain.errors import Conflict, DomainError, InvalidInput, NotFound, Retryable, TooLarge

_STATUS: list[tuple[type[DomainError], int]] = [
    (NotApplicable, 422),
    (RateLimited, 429),
    (TooLarge, 413),
    (InvalidInput, 400),
    (NotFound, 404),
    (Conflict, 409),
    (Retryable, 503),
]


def error_response(status: int, code: str, message: str, **extra: Any) -> Response[str]:
    body = {"error": {"code": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}}
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


def field_name(location: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'lines', 0, 'amount') -> 'lines[0].amount'; query and header names keep their place."""
    parts = list(location)
    if parts and parts[0] == "body":
        parts = parts[1:]
    name = ""
    for part in parts:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name or "body"


def install(app: ApiGatewayResolver, authenticate: Callable[[], None] | None = None) -> None:
    """Map validation, credential and domain errors to their 4xx answers. `authenticate` checks the caller's
    credentials for the route asked for (raising PermissionError): a request that fails validation is answered
    401/403 rather than 400 unless its caller may use the route, so strangers do not learn the schema."""

    def stranger() -> Response[str] | None:
        if authenticate is None:
            return None
        try:
            authenticate()
        except PermissionError as exc:
            return denied(exc)
        except DomainError as exc:  # e.g. the shop's store is unreachable
            return domain(exc)
        return None

    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response[str]:
        refused = stranger()
        if refused is not None:
            return refused
        fields = [
            {
                # A body that is not JSON at all is reported against the body, not a character position.
                "field": "body" if err.get("type") == "json_invalid" else field_name(err.get("loc", ())),
                "message": err.get("msg", "invalid"),
            }
            for err in exc.errors()
        ]
        first = fields[0] if fields else {"field": "body", "message": "invalid"}
        return error_response(
            400, "invalid", f"{first['field']}: {first['message']}", field=first["field"], fields=fields
        )

    @app.exception_handler(RecursionError)
    def _too_deep(exc: RecursionError) -> Response[str]:
        # json.loads and validation recurse per level of nesting: a body nested thousands deep is refused.
        return stranger() or error_response(400, "invalid", "body: nested too deeply", field="body")

    @app.not_found
    def _no_route(exc: Exception) -> Response[str]:
        return error_response(404, "not_found", "no such route")

    def denied(exc: PermissionError) -> Response[str]:
        if isinstance(exc, Denied) and exc.code == "forbidden":
            return error_response(403, "forbidden", exc.message)
        return error_response(401, "unauthenticated", "missing or invalid credentials")

    def domain(exc: DomainError) -> Response[str]:
        status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
        reason = exc.reason if isinstance(exc, NotApplicable) else None
        response = error_response(status, exc.code, exc.message, field=exc.field, reason=reason)
        if status == 503:
            response.headers["Retry-After"] = "5"
        return response

    app.exception_handler(PermissionError)(denied)
    app.exception_handler(DomainError)(domain)
