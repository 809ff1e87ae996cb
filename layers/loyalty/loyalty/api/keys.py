"""/v1/shops/{shop_id}/keys: the shop's staff API keys, managed by an owner key (api/access.py: no other role)."""

from datetime import timedelta
from typing import Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from pydantic import BaseModel, ConfigDict, Field

from loyalty import runtime
from loyalty.api import access
from loyalty.api.common import ShopId, json_response, new_router
from loyalty.domain.access import Role

router = new_router()
KeyId = Annotated[str, Path(pattern=r"^key_[0-9a-f]{12}$", description="a key's id")]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=100)]
    role: Role
    # Points a support key may adjust per local day (absolute sum); default 1000 for support, none for others.
    adjustment_cap: Annotated[int, Field(ge=0, le=1_000_000_000, strict=True)] | None = None


class Rotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # How long the previous secret keeps opening, so the key's users can switch (default a day, at most 30 days).
    overlap_seconds: Annotated[int, Field(ge=0, strict=True)] | None = None


@router.post("/v1/shops/<shop_id>/keys", summary="Create a named staff key (its secret shown once)", tags=["keys"])
def create_key(shop_id: ShopId, body: Annotated[NewKey, Body()]) -> Response[str]:
    return json_response(201, runtime.services().access.create(shop_id, body.name, body.role, body.adjustment_cap))


@router.get("/v1/shops/<shop_id>/keys", summary="The shop's keys (never their secrets)", tags=["keys"])
def list_keys(shop_id: ShopId) -> Response[str]:
    return json_response(200, {"items": runtime.services().access.list(shop_id)})


@router.post(
    "/v1/shops/<shop_id>/keys/<key_id>/rotations",
    summary="A new secret for a key; the previous one opens for an overlap",
    tags=["keys"],
)
def rotate_key(shop_id: ShopId, key_id: KeyId, body: Annotated[Rotation, Body()]) -> Response[str]:
    overlap = None if body.overlap_seconds is None else timedelta(seconds=body.overlap_seconds)
    return json_response(201, runtime.services().access.rotate(shop_id, key_id, overlap))


@router.delete("/v1/shops/<shop_id>/keys/<key_id>", summary="Revoke a key at once", tags=["keys"])
def revoke_key(shop_id: ShopId, key_id: KeyId) -> Response[str]:
    return json_response(200, runtime.services().access.revoke(shop_id, key_id, by=access.caller()))
