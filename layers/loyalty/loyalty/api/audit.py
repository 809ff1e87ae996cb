"""/v1/shops/{shop_id}/audit: every write any key or member token made, oldest first (owner and support keys)."""

from datetime import datetime
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from loyalty import runtime
from loyalty.api.common import ShopId, json_response, new_router

router = new_router()


@router.get("/v1/shops/<shop_id>/audit", summary="The audit trail: who wrote what, and when", tags=["audit"])
def audit(
    shop_id: ShopId,
    since: Annotated[datetime | None, Query(alias="from", description="default: a day before `until`")] = None,
    until: Annotated[datetime | None, Query(description="default: now; at most 31 days after `from`")] = None,
    actor: Annotated[str | None, Query(pattern=r"^key_[0-9a-f]{12}$", description="a key's id")] = None,
    member: Annotated[str | None, Query(min_length=1, max_length=128, pattern=r"^[^#\s]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response[str]:
    entries, cursor = runtime.services().audit.entries(
        shop_id, since=since, until=until, actor=actor, member_id=member, limit=limit, cursor=next
    )
    return json_response(200, {"items": entries, "next": cursor})
