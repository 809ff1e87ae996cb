"""Coupon templates, claims, bulk grants, a member's coupons, and the checkout quote."""

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ConfigDict

from loyalty import runtime
from loyalty.api.common import IdempotencyKey, MemberId, ShopId, identifier, json_response, new_router
from loyalty.domain.coupons import TemplateRequest
from loyalty.domain.orders import Identifier
from loyalty.service.coupons import GrantRequest, QuoteRequest

router = new_router()
TemplateId = Annotated[str, Path(pattern=r"^tpl_[0-9a-f]{16}$")]
GrantId = Annotated[str, Path(pattern=r"^grt_[0-9a-f]{16}$")]


class Claim(BaseModel):
    model_config = ConfigDict(extra="forbid")
    template_id: Identifier


@router.post("/v1/shops/<shop_id>/coupon-templates", summary="Create a coupon template", tags=["coupons"])
def create_template(shop_id: ShopId, body: Annotated[TemplateRequest, Body()]) -> Response[str]:
    template = runtime.services().coupons.create_template(shop_id, body)
    return json_response(201, {"template_id": template.template_id})


@router.get(
    "/v1/shops/<shop_id>/coupon-templates/<template_id>",
    summary="A coupon template, with how many were issued",
    tags=["coupons"],
)
def get_template(shop_id: ShopId, template_id: TemplateId) -> Response[str]:
    return json_response(200, runtime.services().coupons.template_view(shop_id, template_id))


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/coupons",
    summary="Claim (or grant) one coupon for a member; idempotent on Idempotency-Key; 409 out of stock or "
    "over the member's limit",
    tags=["coupons"],
)
def claim(
    shop_id: ShopId, member_id: MemberId, body: Annotated[Claim, Body()], idempotency_key: IdempotencyKey
) -> Response[str]:
    key = identifier(idempotency_key, "Idempotency-Key")
    return json_response(201, runtime.services().coupons.claim(shop_id, member_id, body.template_id, key=key))


@router.get(
    "/v1/shops/<shop_id>/members/<member_id>/coupons",
    summary="A member's coupons, by status (available first)",
    tags=["coupons"],
)
def member_coupons(
    shop_id: ShopId,
    member_id: MemberId,
    status: Annotated[Literal["available", "used", "expired"] | None, Query()] = None,
) -> Response[str]:
    return json_response(200, {"items": runtime.services().coupons.coupons(shop_id, member_id, status)})


@router.post(
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
    key = identifier(idempotency_key, "Idempotency-Key")
    created, report = runtime.services().coupons.start_grant(
        shop_id, template_id, body.member_ids, key=key, queues=runtime.queues()
    )
    return json_response(202 if created else 200, report)


@router.get(
    "/v1/shops/<shop_id>/coupon-grants/<grant_id>",
    summary="What a bulk grant granted, and why any member was refused",
    tags=["coupons"],
)
def grant_report(shop_id: ShopId, grant_id: GrantId) -> Response[str]:
    return json_response(200, runtime.services().coupons.grant_report(shop_id, grant_id))


@router.post(
    "/v1/shops/<shop_id>/checkout/quote",
    summary="Price a cart with coupons and points: the breakdown, or 422 naming what does not apply",
    tags=["checkout"],
)
def checkout_quote(shop_id: ShopId, body: Annotated[QuoteRequest, Body()]) -> Response[str]:
    return json_response(200, runtime.services().coupons.quote(shop_id, body))
