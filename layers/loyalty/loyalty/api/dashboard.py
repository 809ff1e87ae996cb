"""/v1/shops/{shop_id}/dashboard: the shop's figures as charts (Chart.js, vendored in api/static, served from
/v1/assets), and short-lived login links to it for a browser, which cannot send a Bearer header.

The page is made in one request: the summary, the last `days` days and every win-back campaign's report are read
(`make bench`: the reads per page view) and embedded as JSON; the page draws them and makes no call of its own.
"""

import html
import json
from datetime import timedelta
from functools import cache
from pathlib import Path
from string import Template
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Query

from loyalty import runtime
from loyalty.api import access
from loyalty.api.common import ShopId, json_response, new_router
from loyalty.domain.engagement import local_day
from loyalty.domain.money import currency_exponent

router = new_router()
STATIC = Path(__file__).parent / "static"
# Relative to the page (/<stage>/v1/shops/<shop>/dashboard on AWS, where the API's stage leads the path): an
# absolute /v1/... would miss the stage and be refused by API Gateway.
CHART_JS = "../../assets/chart.umd.min.js"


@cache
def _page() -> Template:
    return Template((STATIC / "dashboard.html").read_text())


@cache
def _chart_js() -> str:
    return (STATIC / "chart.umd.min.js").read_text()


@router.get("/v1/shops/<shop_id>/dashboard", summary="The shop's dashboard (an HTML page)", tags=["reports"])
def dashboard(
    shop_id: ShopId,
    days: Annotated[int, Query(ge=1, le=366, description="how many days the charts show, up to today")] = 30,
    token: Annotated[str | None, Query(max_length=2048, description="a login link's token, instead of a key")] = None,
) -> Response[str]:
    services = runtime.services()
    program = services.shops.program(shop_id)
    today = local_day(services.clock(), program.timezone)
    summary, daily = services.reports.overview(shop_id, today - timedelta(days=days - 1), today)
    data = {
        "summary": summary,
        "daily": daily,
        "campaigns": services.segments.campaign_reports(shop_id),
        "exponent": currency_exponent(program.currency),
    }
    shop = services.shops.shop(shop_id)
    # `<` escaped: nothing in the data (a campaign's message) can close the script element it sits in.
    embedded = json.dumps(data).replace("<", "\\u003c")
    title = html.escape(f"{shop.name if shop else shop_id} - loyalty dashboard")
    body = _page().substitute(title=title, data=embedded, chart_js=CHART_JS)
    return Response(
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=body,
        headers={"Cache-Control": "no-store", "Content-Security-Policy": "default-src 'self' 'unsafe-inline'"},
    )


@router.post(
    "/v1/shops/<shop_id>/dashboard/links",
    summary="A login link to the dashboard, valid 15 minutes, for a browser",
    tags=["reports"],
)
def dashboard_link(shop_id: ShopId) -> Response[str]:
    caller = access.caller()
    issued = runtime.services().dashboard_links.issue(shop_id, caller.key_id or "owner")
    url = f"/v1/shops/{shop_id}/dashboard?token={issued['token']}"
    return json_response(201, {"url": url, "expires_at": issued["expires_at"]})


@router.get("/v1/assets/chart.umd.min.js", include_in_schema=False)
def chart_js() -> Response[str]:
    """Chart.js 4 (MIT, api/static/chart.js.LICENSE.md), as the dashboard loads it; the same for everyone."""
    return Response(
        status_code=200,
        content_type="text/javascript; charset=utf-8",
        body=_chart_js(),
        headers={"Cache-Control": "public, max-age=86400"},
    )
