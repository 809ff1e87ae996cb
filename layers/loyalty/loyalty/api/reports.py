"""/v1/shops/{shop_id}/reports, /segments and /campaigns: the shop's figures, kept from the table's stream
(service/reports.py), its members by segment and its win-back campaigns (service/segments.py).

Figures lag the writes by the stream's delay (seconds on AWS; the local stack polls every half second).
"""

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Path, Query

from loyalty import runtime
from loyalty.api.common import ShopId, json_response, new_router
from loyalty.service.segments import CampaignRequest

router = new_router()
RECONCILE_MARGIN_MS = 3_000  # stop reading members this long before the function's timeout, to answer in time


@router.get("/v1/shops/<shop_id>/reports/summary", summary="The shop's figures to date", tags=["reports"])
def summary(shop_id: ShopId) -> Response[str]:
    return json_response(200, runtime.services().reports.summary(shop_id))


@router.get("/v1/shops/<shop_id>/reports/daily", summary="The shop's figures, one row per local day", tags=["reports"])
def daily(
    shop_id: ShopId,
    first: Annotated[date, Query(alias="from", description="the first local day (program time zone)")],
    last: Annotated[date, Query(alias="until", description="the last local day; at most 366 days after `from`")],
) -> Response[str]:
    return json_response(200, runtime.services().reports.daily(shop_id, first, last))


@router.get(
    "/v1/shops/<shop_id>/reports/reconciliation",
    summary="The figures against the members' own balances (reads every member)",
    tags=["reports"],
)
def reconciliation(shop_id: ShopId) -> Response[str]:
    context = router.lambda_context
    report = runtime.services().reports.reconcile(
        shop_id, lambda: context.get_remaining_time_in_millis() < RECONCILE_MARGIN_MS
    )
    return json_response(200, report)


@router.get(
    "/v1/shops/<shop_id>/segments/<segment>/members",
    summary="A segment's members (champion, new, active, at_risk, dormant), with their RFM scores",
    tags=["reports"],
)
def segment_members(
    shop_id: ShopId,
    segment: Annotated[str, Path(pattern=r"^[a-z_]{1,20}$")],
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next: Annotated[str | None, Query(max_length=4096)] = None,
) -> Response[str]:
    return json_response(200, runtime.services().segments.members(shop_id, segment, limit=limit, cursor=next))


@router.post(
    "/v1/shops/<shop_id>/campaigns/win-back",
    summary="A win-back campaign: a coupon for each member as they enter at_risk or dormant, once each",
    tags=["reports"],
)
def create_win_back(shop_id: ShopId, body: CampaignRequest) -> Response[str]:
    return json_response(201, runtime.services().segments.create_campaign(shop_id, body))


@router.get(
    "/v1/shops/<shop_id>/campaigns/win-back/<campaign_id>",
    summary="A win-back campaign's results: members reached, coupons used, orders and GMV within 30 days",
    tags=["reports"],
)
def win_back_report(shop_id: ShopId, campaign_id: Annotated[str, Path(pattern=r"^cmp_[0-9a-f]{16}$")]) -> Response[str]:
    return json_response(200, runtime.services().segments.campaign_report(shop_id, campaign_id))
