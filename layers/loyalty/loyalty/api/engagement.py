"""/v1/shops/{shop_id}/members/{member_id}/check-ins and /activities: points for showing up and for behaviours."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from pydantic import BaseModel, ConfigDict

from loyalty import runtime
from loyalty.api.common import MemberId, ShopId, json_response, new_router
from loyalty.domain.engagement import BehaviourName
from loyalty.domain.orders import Identifier

router = new_router()


class Activity(BaseModel):
    model_config = ConfigDict(extra="forbid")
    behaviour: BehaviourName
    reference: Identifier  # what the behaviour was about (the order reviewed, the page shared); earns once


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/check-ins",
    summary="Today's check-in (program time zone): points and the streak; 409 already_checked_in",
    tags=["engagement"],
)
def check_in(shop_id: ShopId, member_id: MemberId) -> Response[str]:
    return json_response(201, runtime.services().engagement.check_in(shop_id, member_id))


@router.get(
    "/v1/shops/<shop_id>/members/<member_id>/check-ins",
    summary="A month's check-ins (default: this month)",
    tags=["engagement"],
)
def check_ins(
    shop_id: ShopId,
    member_id: MemberId,
    month: Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = None,
) -> Response[str]:
    return json_response(200, runtime.services().engagement.check_ins(shop_id, member_id, month))


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/activities",
    summary="Points for a behaviour (201; 200 with the first answer when the activity was seen before); capped "
    "grants answer capped: true",
    tags=["engagement"],
)
def activity(shop_id: ShopId, member_id: MemberId, body: Annotated[Activity, Body()]) -> Response[str]:
    new, answer = runtime.services().engagement.activity(shop_id, member_id, body.behaviour, body.reference)
    return json_response(201 if new else 200, answer)
