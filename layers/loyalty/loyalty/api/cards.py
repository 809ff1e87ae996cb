"""/v1/shops/{shop_id}/cards/batches and a member's /cards/redemptions and /cards/transfers: gift cards."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from pydantic import BaseModel, ConfigDict, Field

from loyalty import runtime
from loyalty.api.common import IdempotencyKey, MemberId, ShopId, identifier, json_response, new_router
from loyalty.domain.cards import BatchRequest
from loyalty.domain.orders import Identifier

router = new_router()
BatchId = Annotated[str, Path(min_length=1, max_length=128, pattern=r"^[^#\s]+$")]


class Redemption(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=1, max_length=64)]


class Transfer(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: Annotated[str, Field(min_length=1, max_length=64)]
    to_member_id: Identifier


@router.post(
    "/v1/shops/<shop_id>/cards/batches",
    summary="Issue a batch of gift cards; the answer holds every code (the same request answers the same batch)",
    tags=["cards"],
)
def issue(shop_id: ShopId, body: Annotated[BatchRequest, Body()]) -> Response[str]:
    return json_response(201, runtime.services().cards.issue(shop_id, body))


@router.get("/v1/shops/<shop_id>/cards/batches", summary="The shop's gift card batches", tags=["cards"])
def batches(shop_id: ShopId) -> Response[str]:
    return json_response(200, {"items": runtime.services().cards.batches(shop_id)})


@router.get(
    "/v1/shops/<shop_id>/cards/batches/<batch_id>",
    summary="A batch's issued, redeemed and outstanding value (the liability)",
    tags=["cards"],
)
def report(shop_id: ShopId, batch_id: BatchId) -> Response[str]:
    return json_response(200, runtime.services().cards.report(shop_id, batch_id))


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/cards/redemptions",
    summary="Redeem a gift card into the member's wallet (idempotent on Idempotency-Key; attempts are limited)",
    tags=["cards"],
)
def redeem(
    shop_id: ShopId, member_id: MemberId, body: Annotated[Redemption, Body()], idempotency_key: IdempotencyKey
) -> Response[str]:
    key = identifier(idempotency_key, "Idempotency-Key")
    return json_response(201, runtime.services().cards.redeem(shop_id, member_id, code=body.code, key=key))


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/cards/transfers",
    summary="Give an unredeemed gift card to another member, once (idempotent on Idempotency-Key)",
    tags=["cards"],
)
def transfer(
    shop_id: ShopId, member_id: MemberId, body: Annotated[Transfer, Body()], idempotency_key: IdempotencyKey
) -> Response[str]:
    key = identifier(idempotency_key, "Idempotency-Key")
    answer = runtime.services().cards.transfer(
        shop_id, member_id, code=body.code, to_member_id=body.to_member_id, key=key
    )
    return json_response(201, answer)
