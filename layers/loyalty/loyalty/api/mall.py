"""/v1/shops/{shop_id}/mall: the points mall's catalogue, members' exchanges, and the shop's fulfilment."""

from typing import Annotated, Literal

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loyalty import runtime
from loyalty.api.common import MemberId, ShopId, identifier, json_response, new_router
from loyalty.domain.mall import MAX_QUANTITY, ItemRequest
from loyalty.domain.orders import Identifier

router = new_router()
ItemId = Annotated[str, Path(pattern=r"^itm_[0-9a-f]{16}$")]
ExchangeId = Annotated[str, Path(pattern=r"^exc_[0-9a-f]{20}$")]
Cursor = Annotated[str | None, Query(max_length=2048)]


class ExchangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: Identifier
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY, strict=True)] = 1


class Fulfilment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["awaiting_payment", "pending", "shipped", "delivered", "cancelled"]


@router.post("/v1/shops/<shop_id>/mall/items", summary="List an item in the points mall", tags=["mall"])
def create_item(shop_id: ShopId, body: Annotated[ItemRequest, Body()]) -> Response[str]:
    return json_response(201, runtime.services().mall.create_item(shop_id, body))


@router.get(
    "/v1/shops/<shop_id>/mall/items",
    summary="The catalogue; with member_id, only what that member may exchange now",
    tags=["mall"],
)
def list_items(
    shop_id: ShopId,
    member_id: Annotated[str | None, Query(min_length=1, max_length=128, pattern=r"^[^#\s]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    next: Cursor = None,
) -> Response[str]:
    page = runtime.services().mall.items(shop_id, member_id=member_id, limit=limit, cursor=next)
    return json_response(200, page)


@router.get(
    "/v1/shops/<shop_id>/mall/items/<item_id>",
    summary="An item, its stock left and its report (exchanged, cancelled, points taken)",
    tags=["mall"],
)
def get_item(shop_id: ShopId, item_id: ItemId) -> Response[str]:
    return json_response(200, runtime.services().mall.item_view(shop_id, item_id))


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/exchanges",
    summary="Exchange points for a mall item (idempotent on Idempotency-Key); 409 insufficient_points, "
    "out_of_stock, limit_reached or not_eligible",
    tags=["mall"],
)
def exchange(
    shop_id: ShopId,
    member_id: MemberId,
    body: Annotated[ExchangeRequest, Body()],
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
) -> Response[str]:
    key = identifier(idempotency_key, "Idempotency-Key")
    created, answer = runtime.services().mall.exchange(shop_id, member_id, body.item_id, body.quantity, key=key)
    return json_response(201 if created else 200, answer)


@router.get(
    "/v1/shops/<shop_id>/members/<member_id>/exchanges", summary="A member's exchanges, newest first", tags=["mall"]
)
def member_exchanges(
    shop_id: ShopId,
    member_id: MemberId,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    next: Cursor = None,
) -> Response[str]:
    return json_response(200, runtime.services().mall.exchanges(shop_id, member_id, limit=limit, cursor=next))


@router.get("/v1/shops/<shop_id>/mall/exchanges/<exchange_id>", summary="An exchange", tags=["mall"])
def get_exchange(shop_id: ShopId, exchange_id: ExchangeId) -> Response[str]:
    return json_response(200, runtime.services().mall.exchange_view(shop_id, exchange_id))


@router.put(
    "/v1/shops/<shop_id>/mall/exchanges/<exchange_id>",
    summary="Move a goods exchange on: (awaiting_payment → paid: pending) → shipped → delivered, or cancelled "
    "(points and stock back)",
    tags=["mall"],
)
def move_exchange(shop_id: ShopId, exchange_id: ExchangeId, body: Annotated[Fulfilment, Body()]) -> Response[str]:
    return json_response(200, runtime.services().mall.move(shop_id, exchange_id, body.status))
