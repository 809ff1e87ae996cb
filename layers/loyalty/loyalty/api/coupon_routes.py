"""Coupon templates, claims, bulk grants, a member's coupons, and the checkout quote."""

from collections.abc import Callable
from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from pydantic import BaseModel, ConfigDict

from loyalty.api.common import MemberId, ShopId, identifier, json_response
from loyalty.domain.coupons import TemplateRequest
from loyalty.domain.orders import Identifier
from loyalty.service.coupons import GrantRequest, QuoteRequest
from loyalty.service.loyalty import Loyalty
from loyalty.store.queue import Queues

TemplateId = Annotated[str, Path(pattern=r"^tpl_[0-9a-f]{16}$")]
GrantId = Annotated[str, Path(pattern=r"^grt_[0-9a-f]{16}$")]
IdempotencyKey = Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)]


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template_id: Identifier


def add(
    app: APIGatewayRestResolver,
    service: Callable[[], Loyalty],
    queues: Callable[[], Queues],
    shop_caller: Callable[[str], None],
) -> None:
    @app.post("/v1/shops/<shop_id>/coupon-templates", summary="Create a coupon template", tags=["coupons"])
    def create_template(shop_id: ShopId, body: Annotated[TemplateRequest, Body()]) -> Response[str]:
        shop_caller(shop_id)
        template = service().create_template(shop_id, body)
        return json_response(201, {"template_id": template.template_id})

    @app.get(
        "/v1/shops/<shop_id>/coupon-templates/<template_id>",
        summary="A coupon template, with how many were issued",
        tags=["coupons"],
    )
    def get_template(shop_id: ShopId, template_id: TemplateId) -> Response[str]:
        shop_caller(shop_id)
        return json_response(200, service().template_view(shop_id, template_id))

    @app.post(
        "/v1/shops/<shop_id>/members/<member_id>/coupons",
        summary="Claim (or grant) one coupon for a member; idempotent on Idempotency-Key; 409 out of stock or "
        "over the member's limit",
        tags=["coupons"],
    )
    def claim(
        shop_id: ShopId, member_id: MemberId, body: Annotated[Claim, Body()], idempotency_key: IdempotencyKey
    ) -> Response[str]:
        shop_caller(shop_id)
        key = identifier(idempotency_key, "Idempotency-Key")
        return json_response(201, service().claim(shop_id, member_id, body.template_id, key=key))

    @app.get(
        "/v1/shops/<shop_id>/members/<member_id>/coupons",
        summary="A member's coupons, by status (available first)",
        tags=["coupons"],
    )
    def member_coupons(
        shop_id: ShopId,
        member_id: MemberId,
        status: Annotated[Literal["available", "used", "expired"] | None, Query()] = None,
    ) -> Response[str]:
        shop_caller(shop_id)
        return json_response(200, {"items": service().coupons(shop_id, member_id, status)})

    @app.post(
        "/v1/shops/<shop_id>/coupon-templates/<template_id>/grants",
        summary="Grant a template to many members, asynchronously (202); idempotent on Idempotency-Key",
        tags=["coupons"],
    )
    def grant(
        shop_id: ShopId,
        template_id: TemplateId,
        body: Annotated[GrantRequest, Body()],
        idempotency_key: IdempotencyKey,
    ) -> Response[str]:
        shop_caller(shop_id)
        key = identifier(idempotency_key, "Idempotency-Key")
        created, report = service().start_grant(shop_id, template_id, body.member_ids, key=key, queues=queues())
        return json_response(202 if created else 200, report)

    @app.get(
        "/v1/shops/<shop_id>/coupon-grants/<grant_id>",
        summary="What a bulk grant granted, and why any member was refused",
        tags=["coupons"],
    )
    def grant_report(shop_id: ShopId, grant_id: GrantId) -> Response[str]:
        shop_caller(shop_id)
        return json_response(200, service().grant_report(shop_id, grant_id))

    @app.post(
        "/v1/shops/<shop_id>/checkout/quote",
        summary="Price a cart with coupons and points: the breakdown, or 422 naming what does not apply",
        tags=["checkout"],
    )
    def checkout_quote(shop_id: ShopId, body: Annotated[QuoteRequest, Body()]) -> Response[str]:
        shop_caller(shop_id)
        return json_response(200, service().quote(shop_id, body))
