"""/v1/shops/{shop_id}/integrations/{platform}: connecting a shop platform whose webhooks we then accept."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path

from loyalty import runtime
from loyalty.api.common import ShopId, json_response, new_router
from loyalty.domain.errors import NotFound
from loyalty.domain.integrations import IntegrationSettings, Platform

router = new_router()
PlatformName = Annotated[Platform, Path(description="shopify, woocommerce, stripe or youzan")]


@router.put(
    "/v1/shops/<shop_id>/integrations/<platform>",
    summary="Connect a store platform (shopify, woocommerce, stripe, youzan); the secret is never returned",
    tags=["integrations"],
)
def put_integration(
    shop_id: ShopId, platform: PlatformName, body: Annotated[IntegrationSettings, Body()]
) -> Response[str]:
    return json_response(200, runtime.services().platforms.set_integration(shop_id, platform, body).view())


@router.get("/v1/shops/<shop_id>/integrations/<platform>", summary="A platform integration", tags=["integrations"])
def get_integration(shop_id: ShopId, platform: PlatformName) -> Response[str]:
    found = runtime.services().platforms.integration(shop_id, platform)
    if found is None:
        raise NotFound(f"no {platform} integration", field="platform")
    return json_response(200, found.view())
