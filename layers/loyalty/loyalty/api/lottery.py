"""/v1/shops/{shop_id}/lotteries and members' draws: the points lottery, its odds, report and daily audit digest."""

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from loyalty import runtime
from loyalty.api.common import MemberId, ShopId, identifier, json_response, new_router
from loyalty.domain.lottery import LotteryRequest

router = new_router()
LotteryId = Annotated[str, Path(pattern=r"^lot_[0-9a-f]{16}$")]


class DrawRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lottery_id: Annotated[str, Field(pattern=r"^lot_[0-9a-f]{16}$")]


@router.post("/v1/shops/<shop_id>/lotteries", summary="Publish a points lottery and its prize table", tags=["lottery"])
def create_lottery(shop_id: ShopId, body: Annotated[LotteryRequest, Body()]) -> Response[str]:
    return json_response(201, runtime.services().lotteries.create(shop_id, body))


@router.get(
    "/v1/shops/<shop_id>/lotteries/<lottery_id>",
    summary="A lottery and each prize's chance now (as applied: out-of-stock prizes fall back to the consolation)",
    tags=["lottery"],
)
def get_lottery(shop_id: ShopId, lottery_id: LotteryId) -> Response[str]:
    return json_response(200, runtime.services().lotteries.view(shop_id, lottery_id))


@router.get(
    "/v1/shops/<shop_id>/lotteries/<lottery_id>/report",
    summary="Draws, points taken and prizes given",
    tags=["lottery"],
)
def lottery_report(shop_id: ShopId, lottery_id: LotteryId) -> Response[str]:
    return json_response(200, runtime.services().lotteries.report(shop_id, lottery_id))


@router.get(
    "/v1/shops/<shop_id>/lotteries/<lottery_id>/audit",
    summary="A day's draws as one digest to publish (the program's local day)",
    tags=["lottery"],
)
def lottery_audit(shop_id: ShopId, lottery_id: LotteryId, day: Annotated[date, Query()]) -> Response[str]:
    return json_response(200, runtime.services().lotteries.audit(shop_id, lottery_id, day))


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/draws",
    summary="Pay points to draw (idempotent on Idempotency-Key); 409 insufficient_points, limit_reached or "
    "not_eligible",
    tags=["lottery"],
)
def draw(
    shop_id: ShopId,
    member_id: MemberId,
    body: Annotated[DrawRequest, Body()],
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
) -> Response[str]:
    key = identifier(idempotency_key, "Idempotency-Key")
    created, answer = runtime.services().lotteries.draw(shop_id, member_id, body.lottery_id, key=key)
    return json_response(201 if created else 200, answer)


@router.get(
    "/v1/shops/<shop_id>/members/<member_id>/draws",
    summary="A member's draws, newest first, each with what verifies it",
    tags=["lottery"],
)
def member_draws(
    shop_id: ShopId,
    member_id: MemberId,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    next: Annotated[str | None, Query(max_length=2048)] = None,
) -> Response[str]:
    return json_response(200, runtime.services().lotteries.draws(shop_id, member_id, limit=limit, cursor=next))
