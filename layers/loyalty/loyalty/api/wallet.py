"""/v1/shops/{shop_id}/members/{member_id}/wallet, /wallet/ledger, /wallet/top-ups and /savings: stored value."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query
from pydantic import BaseModel, ConfigDict, Field

from loyalty import runtime
from loyalty.api.common import MemberId, ShopId, identifier, json_response, new_router
from loyalty.domain.orders import DecimalString, Identifier

router = new_router()


class TopUp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: DecimalString = Field(description="what the member paid into the wallet, in major units")
    reference: Identifier = Field(description="the payment's id: the top-up happens once per reference")


@router.get(
    "/v1/shops/<shop_id>/members/<member_id>/wallet",
    summary="The member's stored value: principal (paid in), bonus (given) and their total",
    tags=["wallet"],
)
def wallet(shop_id: ShopId, member_id: MemberId) -> Response[str]:
    return json_response(200, runtime.services().wallet.balance(shop_id, member_id))


@router.get(
    "/v1/shops/<shop_id>/members/<member_id>/wallet/ledger",
    summary="Every change to the wallet and why, newest first",
    tags=["wallet"],
)
def wallet_ledger(
    shop_id: ShopId,
    member_id: MemberId,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    next: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response[str]:
    return json_response(200, runtime.services().wallet.ledger(shop_id, member_id, limit=limit, cursor=next))


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/wallet/top-ups",
    summary="Money paid into the wallet, with the program's bonus (idempotent on the Idempotency-Key header)",
    tags=["wallet"],
)
def top_up(
    shop_id: ShopId,
    member_id: MemberId,
    body: Annotated[TopUp, Body()],
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
) -> Response[str]:
    key = identifier(idempotency_key, "Idempotency-Key")
    answer = runtime.services().wallet.top_up(shop_id, member_id, amount=body.amount, reference=body.reference, key=key)
    return json_response(201, answer)


@router.get(
    "/v1/shops/<shop_id>/members/<member_id>/savings",
    summary="What the member has saved: coupons, points as cash, wallet bonus spent, member prices; by month",
    tags=["wallet"],
)
def savings(shop_id: ShopId, member_id: MemberId) -> Response[str]:
    return json_response(200, runtime.services().wallet.savings(shop_id, member_id))
