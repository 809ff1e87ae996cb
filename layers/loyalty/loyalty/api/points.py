"""/v1/shops/{shop_id}/members/{member_id}/ledger and /redemptions: why a balance is what it is, and spending it."""

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Query
from pydantic import BaseModel, ConfigDict, Field

from loyalty import runtime
from loyalty.api import access
from loyalty.api.common import MemberId, ShopId, identifier, json_response, new_router
from loyalty.domain.errors import InvalidInput
from loyalty.domain.ledger import LedgerEntry, iso

router = new_router()


class Redemption(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: Annotated[int, Field(ge=1, le=1_000_000_000, strict=True)]
    reason: Annotated[str, Field(min_length=1, max_length=200)]


class Adjustment(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000, strict=True)]
    reason: Annotated[str, Field(min_length=1, max_length=200)]


def entry_view(entry: LedgerEntry) -> dict[str, Any]:
    return {
        "points": entry.points,
        "pending": entry.pending,
        "reason": entry.reason,
        "reference": entry.reference,
        "at": iso(entry.at),
        "detail": entry.detail,
    }


@router.get(
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
    entries, cursor = runtime.services().points.ledger(shop_id, member_id, limit=limit, cursor=next)
    return json_response(200, {"items": [entry_view(e) for e in entries], "next": cursor})


@router.post(
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
    key = identifier(idempotency_key, "Idempotency-Key")
    answer = runtime.services().points.redeem(shop_id, member_id, key=key, points=body.points, reason=body.reason)
    return json_response(201, answer)


@router.post(
    "/v1/shops/<shop_id>/members/<member_id>/adjustments",
    summary="Correct a member's points by hand, signed by the key, with a reason (idempotent on Idempotency-Key)",
    tags=["members"],
)
def adjust(
    shop_id: ShopId,
    member_id: MemberId,
    body: Annotated[Adjustment, Body()],
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", min_length=1, max_length=128)],
) -> Response[str]:
    if body.points == 0:
        raise InvalidInput("an adjustment changes the balance: not 0", field="points")
    key = identifier(idempotency_key, "Idempotency-Key")
    points = runtime.services().points
    answer = points.adjust(shop_id, member_id, key=key, points=body.points, reason=body.reason, by=access.caller())
    return json_response(201, answer)
