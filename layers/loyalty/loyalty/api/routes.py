"""Operator, merchant and member routes. Each parses, calls the service, shapes the answer."""

import json
import re
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loyalty.api import coupon_routes, errors
from loyalty.api.auth import bearer, require_operator
from loyalty.api.common import MemberId, ShopId, identifier, json_response
from loyalty.domain.errors import InvalidInput, NotFound
from loyalty.domain.integrations import IntegrationSettings, Platform
from loyalty.domain.ledger import LedgerEntry, iso
from loyalty.domain.members import Member, Profile, normalise_email, normalise_phone
from loyalty.domain.program import Program
from loyalty.service.loyalty import Loyalty
from loyalty.store.queue import Queues

SHOP_PATH = re.compile(r"^/v1/shops/(?P<shop_id>[^/]+)(/|$)")
PlatformName = Annotated[Platform, Path(description="shopify, woocommerce, stripe or youzan")]


class CreateShop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] | None = None


class Redemption(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: Annotated[int, Field(ge=1, le=1_000_000_000, strict=True)]
    reason: Annotated[str, Field(min_length=1, max_length=200)]


def member_view(member: Member, expiring: list[tuple[int, datetime]], base_tier: str | None) -> dict[str, Any]:
    profile = member.profile.model_dump(mode="json", exclude_none=True)
    balance = member.balance
    review_at = member.tier.review_at
    return {
        **profile,
        "enrolled_at": iso(member.enrolled_at),
        "tier": member.tier.tier or base_tier,
        "tier_review_at": iso(review_at) if review_at else None,
        "points": {
            "available": balance.available,
            "pending": balance.pending,
            "expiring": [{"points": points, "expires_at": iso(when)} for points, when in expiring],
        },
    }


def entry_view(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "points": entry.points,
        "pending": entry.pending,
        "reason": entry.reason,
        "reference": entry.reference,
        "at": iso(entry.at),
        "detail": entry.detail,
    }


def build(service: Callable[[], Loyalty], queues: Callable[[], Queues]) -> APIGatewayRestResolver:
    """`service` gives the container's service on each request (made on first use, so tests can swap it);
    `queues` the queue client (bulk coupon grants are queued)."""
    # JSON numbers are read as Decimal, never float: rates and multipliers stay exact.
    app = APIGatewayRestResolver(
        enable_validation=True, json_body_deserializer=partial(json.loads, parse_float=Decimal)
    )

    def authenticate() -> None:
        """The credentials the requested route needs: the operator's for /v1/shops, else the shop's own key."""
        path = app.current_event.path
        shop = SHOP_PATH.match(path)
        if shop:
            service().authenticate(bearer(app), shop["shop_id"])
        elif path.rstrip("/") == "/v1/shops":
            require_operator(app)

    errors.install(app, authenticate)

    def view(shop_id: str, member: Member, *, new: bool = False) -> dict[str, Any]:
        base = service().program(shop_id).tiers[:1]
        expiring = [] if new else service().expiring(shop_id, member.profile.member_id)  # a new member has no lots
        return member_view(member, expiring, base[0].name if base else None)

    def shop_caller(shop_id: str) -> None:
        service().authenticate(bearer(app), shop_id)

    @app.post("/v1/shops", summary="Provision a shop (operator key)", tags=["operator"])
    def create_shop(body: Annotated[CreateShop, Body()]) -> Response[str]:
        require_operator(app)
        return json_response(201, service().create_shop(body.name, body.currency))

    @app.get("/v1/shops/<shop_id>/program", summary="Read the loyalty program", tags=["program"])
    def get_program(shop_id: ShopId) -> Response[str]:
        shop_caller(shop_id)
        return json_response(200, service().program(shop_id).model_dump(mode="json"))

    @app.put("/v1/shops/<shop_id>/program", summary="Configure the loyalty program", tags=["program"])
    def put_program(shop_id: ShopId, body: Annotated[Program, Body()]) -> Response[str]:
        shop_caller(shop_id)
        return json_response(200, service().set_program(shop_id, body).model_dump(mode="json"))

    @app.post(
        "/v1/shops/<shop_id>/members", summary="Enrol a member (201; 200 on an identical replay)", tags=["members"]
    )
    def enrol(shop_id: ShopId, body: Annotated[Profile, Body()]) -> Response[str]:
        shop_caller(shop_id)
        created, member = service().enrol(shop_id, body)
        return json_response(201 if created else 200, view(shop_id, member, new=created))

    @app.get("/v1/shops/<shop_id>/members", summary="Find members by e-mail or phone", tags=["members"])
    def find(
        shop_id: ShopId,
        email: Annotated[str | None, Query(max_length=254)] = None,
        phone: Annotated[str | None, Query(max_length=32)] = None,
    ) -> Response[str]:
        shop_caller(shop_id)
        if (email is None) == (phone is None):
            raise InvalidInput("give exactly one of email or phone", field="email")
        try:
            kind, value = (
                ("email", normalise_email(email)) if email is not None else ("phone", normalise_phone(phone or ""))
            )
        except ValueError as exc:
            raise InvalidInput(str(exc), field="email" if email is not None else "phone") from exc
        return json_response(200, {"items": [view(shop_id, m) for m in service().find_members(shop_id, kind, value)]})

    @app.get("/v1/shops/<shop_id>/members/<member_id>", summary="A member and their points", tags=["members"])
    def get_member(shop_id: ShopId, member_id: MemberId) -> Response[str]:
        shop_caller(shop_id)
        return json_response(200, view(shop_id, service().member(shop_id, member_id)))

    @app.get(
        "/v1/shops/<shop_id>/members/<member_id>/ledger",
        summary="Why the balance is what it is: every change, newest first",
        tags=["members"],
    )
    def ledger(
        shop_id: ShopId,
        member_id: MemberId,
        limit: Annotated[int, Query(ge=1, le=100)] = 25,
        next: Annotated[str | None, Query(max_length=2048)] = None,
    ) -> Response[str]:
        shop_caller(shop_id)
        entries, cursor = service().ledger(shop_id, member_id, limit=limit, cursor=next)
        return json_response(200, {"items": [entry_view(e) for e in entries], "next": cursor})

    @app.post(
        "/v1/shops/<shop_id>/members/<member_id>/redemptions",
        summary="Spend available points (idempotent on the Idempotency-Key header)",
        tags=["members"],
    )
    def redeem(
        shop_id: ShopId,
        member_id: MemberId,
        body: Annotated[Redemption, Body()],
        idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
    ) -> Response[str]:
        shop_caller(shop_id)
        key = identifier(idempotency_key, "Idempotency-Key")
        return json_response(201, service().redeem(shop_id, member_id, key=key, points=body.points, reason=body.reason))

    coupon_routes.add(app, service, queues, shop_caller)

    @app.put(
        "/v1/shops/<shop_id>/integrations/<platform>",
        summary="Connect a store platform (shopify, woocommerce, stripe, youzan); the secret is never returned",
        tags=["integrations"],
    )
    def put_integration(
        shop_id: ShopId, platform: PlatformName, body: Annotated[IntegrationSettings, Body()]
    ) -> Response[str]:
        shop_caller(shop_id)
        return json_response(200, service().set_integration(shop_id, platform, body).view())

    @app.get("/v1/shops/<shop_id>/integrations/<platform>", summary="A platform integration", tags=["integrations"])
    def get_integration(shop_id: ShopId, platform: PlatformName) -> Response[str]:
        shop_caller(shop_id)
        found = service().integration(shop_id, platform)
        if found is None:
            raise NotFound(f"no {platform} integration", field="platform")
        return json_response(200, found.view())

    @app.get("/openapi.json", include_in_schema=False)
    def openapi() -> Response[str]:
        return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_json(app))

    app.enable_swagger(
        path="/swagger", title="loyalty", security_schemes={"bearer": HTTPBearer()}, security=[{"bearer": []}]
    )
    return app


def openapi_json(app: APIGatewayRestResolver) -> str:
    return app.get_openapi_json_schema(
        title="loyalty",
        version="0.1.0",
        description="Members, points and their ledger for online shops. Errors: "
        '{"error": {"code", "message", "field"}} with a 4xx status.',
        security_schemes={"bearer": HTTPBearer()},
        security=[{"bearer": []}],
    )
