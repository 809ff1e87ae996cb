"""What every route module shares: path parameters, identifiers from headers, the JSON answer."""

import json
from functools import cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.openapi.params import Header, Path
from aws_lambda_powertools.event_handler.router import APIGatewayRouter
from pydantic import TypeAdapter, ValidationError

from loyalty.domain.errors import InvalidInput
from loyalty.domain.orders import Identifier

ShopId = Annotated[str, Path(pattern=r"^shp_[0-9a-f]{16}$", description="the shop's id")]
MemberId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^#\s]+$")]
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)]


def json_response(status: int, body: Any) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@cache
def _identifiers() -> TypeAdapter[str]:
    # Built once, on first use: building a TypeAdapter costs more than a DynamoDB call (bench/overhead.py).
    return TypeAdapter(Identifier)


def identifier(value: str, field: str) -> str:
    """A header value that will be part of a key: 1-128 characters, no spaces or '#'."""
    try:
        return _identifiers().validate_python(value)
    except ValidationError as exc:
        raise InvalidInput("must be 1-128 characters without spaces or '#'", field=field) from exc


def new_router() -> APIGatewayRouter:
    """A resource's router (Powertools' constructor is untyped)."""
    return APIGatewayRouter()  # type: ignore[no-untyped-call]
