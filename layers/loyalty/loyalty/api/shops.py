"""/v1/shops: provisioning a shop (operator key), and its loyalty program."""

from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body
from pydantic import BaseModel, ConfigDict, Field

from loyalty import runtime
from loyalty.api.common import ShopId, json_response, new_router
from loyalty.domain.program import Program

router = new_router()


class CreateShop(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=200)]
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")] | None = None


class ShopCredentials(BaseModel):
    """Shown once: only their digests are kept."""

    shop_id: str
    api_key: str  # the shop's first owner key (named "owner"); it makes the others (POST /keys)
    key_id: str
    webhook_secret: str


@router.post("/v1/shops", summary="Provision a shop (operator key)", tags=["operator"])
def create_shop(body: Annotated[CreateShop, Body()]) -> Response[str]:
    created = ShopCredentials(**runtime.services().shops.create_shop(body.name, body.currency))
    return json_response(201, created.model_dump())


@router.get("/v1/shops/<shop_id>/program", summary="Read the loyalty program", tags=["program"])
def get_program(shop_id: ShopId) -> Response[str]:
    return json_response(200, runtime.services().shops.program(shop_id).model_dump(mode="json"))


@router.put("/v1/shops/<shop_id>/program", summary="Configure the loyalty program", tags=["program"])
def put_program(shop_id: ShopId, body: Annotated[Program, Body()]) -> Response[str]:
    return json_response(200, runtime.services().shops.set_program(shop_id, body).model_dump(mode="json"))
