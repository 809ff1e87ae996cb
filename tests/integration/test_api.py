"""The HTTP contract, through the API function with API Gateway events, on moto."""

from typing import Any

import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from tests.conftest import OPERATOR_KEY, Api


def base(shop: dict[str, str]) -> str:
    return f"/v1/shops/{shop['shop_id']}"


def test_only_the_operator_creates_shops(api: Api) -> None:
    assert api.call("POST", "/v1/shops", body={"name": "x"})[0] == 401
    assert api.call("POST", "/v1/shops", key="wrong", body={"name": "x"})[0] == 401
    status, body = api.call("POST", "/v1/shops", key=OPERATOR_KEY, body={"name": "Tea House"})
    assert status == 201
    assert body["shop_id"].startswith("shp_") and body["api_key"].startswith(body["shop_id"] + ".")
    assert body["webhook_secret"].startswith("whsec_")


def test_program_round_trip_keeps_decimals_exact(api: Api, shop: dict[str, str]) -> None:
    program = {
        "currency": "cny",
        "points_per_unit": 1.5,
        "category_multipliers": {"tobacco": 0, "featured": 2.25},
        "pending_days": 7,
        "clawback": "allow_negative",
    }
    status, body = api.call("PUT", f"{base(shop)}/program", key=shop["api_key"], body=program)
    assert status == 200, body
    assert body["currency"] == "CNY" and body["points_per_unit"] == "1.5"
    assert body["category_multipliers"] == {"tobacco": "0", "featured": "2.25"}
    assert api.call("GET", f"{base(shop)}/program", key=shop["api_key"])[1] == body


@pytest.mark.parametrize(
    ("program", "field"),
    [
        ({"points_per_unit": -1}, "points_per_unit"),
        ({"currency": "yuan"}, "currency"),
        ({"pending_days": 400}, "pending_days"),
        ({"clawback": "sometimes"}, "clawback"),
        ({"category_multipliers": {"x": "lots"}}, "category_multipliers.x"),
        ({"category_multipliers": {"x": 1.00001}}, "category_multipliers.x"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"bonus": 1}, "bonus"),
    ],
)
def test_bad_program_is_refused_naming_the_field(
    api: Api, shop: dict[str, str], program: dict[str, Any], field: str
) -> None:
    status, body = api.call("PUT", f"{base(shop)}/program", key=shop["api_key"], body=program)
    assert status == 400
    assert body["error"]["field"] == field


def test_malformed_json_is_a_400(api: Api, shop: dict[str, str]) -> None:
    status, body = api.call("PUT", f"{base(shop)}/program", key=shop["api_key"], raw=b"{not json")
    assert (status, body["error"]["field"]) == (400, "body")
    status, body = api.call("PUT", f"{base(shop)}/program", key=shop["api_key"], raw=b"[1]")
    assert (status, body["error"]["field"]) == (400, "body")


def test_unknown_routes_answer_in_the_error_shape(api: Api, shop: dict[str, str]) -> None:
    status, body = api.call("GET", "/v1/nothing", key=shop["api_key"])
    assert (status, body["error"]["code"]) == (404, "not_found")


def test_enrol_replay_and_conflicts(api: Api, shop: dict[str, str]) -> None:
    member = {"member_id": "m1", "phone": "+86 138-0013-8000", "email": "Ann@Example.com", "birthday": "1990-02-28"}
    status, body = api.call("POST", f"{base(shop)}/members", key=shop["api_key"], body=member)
    assert status == 201
    assert body["phone"] == "+8613800138000" and body["email"] == "ann@example.com"
    assert body["points"] == {"available": 0, "pending": 0, "expiring": []}
    assert api.call("POST", f"{base(shop)}/members", key=shop["api_key"], body=member)[0] == 200
    status, body = api.call("POST", f"{base(shop)}/members", key=shop["api_key"], body={**member, "birthday": None})
    assert (status, body["error"]["field"]) == (409, "member_id")
    status, body = api.call(
        "POST", f"{base(shop)}/members", key=shop["api_key"], body={"member_id": "m2", "email": "ANN@example.com"}
    )
    assert (status, body["error"]["field"]) == (409, "email")
    status, body = api.call(
        "POST", f"{base(shop)}/members", key=shop["api_key"], body={"member_id": "m3", "email": "not-an-address"}
    )
    assert (status, body["error"]["field"]) == (400, "email")


def test_lookup_by_email_and_phone(api: Api, shop: dict[str, str]) -> None:
    api.call(
        "POST",
        f"{base(shop)}/members",
        key=shop["api_key"],
        body={"member_id": "m1", "phone": "13800138000", "email": "a@b.cn"},
    )
    for query in ("email=A%40B.cn", "phone=138%200013%208000"):
        status, body = api.call("GET", f"{base(shop)}/members?{query}", key=shop["api_key"])
        assert status == 200 and [m["member_id"] for m in body["items"]] == ["m1"]
    assert api.call("GET", f"{base(shop)}/members?email=z%40b.cn", key=shop["api_key"])[1] == {"items": []}
    assert api.call("GET", f"{base(shop)}/members", key=shop["api_key"])[0] == 400


def test_a_shops_key_never_opens_another_shop(api: Api, shop: dict[str, str]) -> None:
    other = api.call("POST", "/v1/shops", key=OPERATOR_KEY, body={"name": "Other"})[1]
    api.call("POST", f"{base(other)}/members", key=other["api_key"], body={"member_id": "m1", "email": "o@x.cn"})
    for method, path in [
        ("GET", f"{base(other)}/members/m1"),
        ("GET", f"{base(other)}/members?email=o%40x.cn"),
        ("GET", f"{base(other)}/members/m1/ledger"),
        ("GET", f"{base(other)}/program"),
    ]:
        status, body = api.call(method, path, key=shop["api_key"])
        assert status == 403 and "member_id" not in str(body)
    # and its own shop does not show the other shop's member
    assert api.call("GET", f"{base(shop)}/members/m1", key=shop["api_key"])[0] == 404
    assert api.call("GET", f"{base(shop)}/members/m1", key=shop["api_key"] + "x")[0] == 401
    assert api.call("GET", f"{base(shop)}/members/m1")[0] == 401


def test_ledger_cursor_cannot_be_pointed_at_another_partition(api: Api, shop: dict[str, str]) -> None:
    import base64
    import json

    api.call("POST", f"{base(shop)}/members", key=shop["api_key"], body={"member_id": "m1"})
    forged = base64.urlsafe_b64encode(json.dumps({"PK": "SHOP#shp_x#MEMBER#m1", "SK": "LEDGER#"}).encode()).decode()
    status, body = api.call("GET", f"{base(shop)}/members/m1/ledger?next={forged}", key=shop["api_key"])
    assert (status, body["error"]["field"]) == (400, "next")
    assert api.call("GET", f"{base(shop)}/members/m1/ledger?next=%%%", key=shop["api_key"])[0] == 400


def test_openapi_document_lists_the_contract(api: Api) -> None:
    status, spec = api.call("GET", "/openapi.json")
    assert status == 200
    paths = spec["paths"]
    assert "/v1/shops/{shop_id}/members/{member_id}/redemptions" in paths
    assert "/v1/shops/{shop_id}/program" in paths
    assert "bearer" in spec["components"]["securitySchemes"]


def test_swagger_ui_serves_the_same_contract(stack: Stack) -> None:
    response = lambdas.invoke(lambdas.functions()["ApiFunction"], lambdas.api_event("GET", "/swagger"))
    assert response["statusCode"] == 200
    assert response["multiValueHeaders"]["Content-Type"] == ["text/html"]
    assert "SwaggerUIBundle" in response["body"] and "/v1/shops/{shop_id}/program" in response["body"]
