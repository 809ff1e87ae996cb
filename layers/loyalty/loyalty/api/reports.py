"""/v1/shops/{shop_id}/reports: the shop's figures, kept from the table's stream (service/reports.py).

Figures lag the writes by the stream's delay (seconds on AWS; the local stack polls every half second).
"""

from datetime import date
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from loyalty import runtime
from loyalty.api.common import ShopId, json_response, new_router

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
