"""Right of access: everything we hold on a member, for the shop's owner and for the member themselves."""

import json

import pytest

from infra.local.resources import Stack
from loyalty.api import members as members_api
from tests.conftest import Api
from tests.helpers import drain, paid, send


def test_an_export_holds_everything_on_the_member_and_nothing_of_ours_or_of_others(
    api: Api, shop: dict[str, str], stack: Stack
) -> None:
    sid, key = shop["shop_id"], shop["api_key"]

    def call(method: str, path: str, body: object = None, token: str | None = None) -> tuple[int, object]:
        return api.call(method, f"/v1/shops/{sid}{path}", key=token or key, body=body)

    assert call("PUT", "/program", {"check_in": {"points": 5}})[0] == 200
    assert call("POST", "/members", {"member_id": "m1", "phone": "13800138000", "email": "ann@example.com"})[0] == 201
    assert call("POST", "/members", {"member_id": "m2"})[0] == 201
    send(stack, sid, paid("A1", member_id="m1", total="120.00"))
    send(stack, sid, paid("B1", member_id="m2", total="80.00"))
    assert drain(stack) == [{"batchItemFailures": []}]
    assert call("POST", "/members/m1/check-ins")[0] == 201

    status, export = call("GET", "/members/m1/export")
    assert status == 200
    assert isinstance(export, dict)
    assert export["profile"]["phone"] == "+8613800138000" and export["profile"]["email"] == "ann@example.com"
    assert [order["order_id"] for order in export["orders"]] == ["A1"]  # never m2's
    assert {entry["reason"] for entry in export["ledger"]} == {"order.paid", "check_in"}
    assert sum(lot["remaining"] for lot in export["lot"]) == 125
    assert "checkin" in export
    text = json.dumps(export)
    assert '"PK"' not in text and '"DuePK"' not in text and "MembersPK" not in text  # our keys, not their data

    token = call("POST", "/members/m1/tokens", {})[1]
    assert isinstance(token, dict)
    status, mine = api.call("GET", "/v1/me/export", key=token["token"])
    assert status == 200 and isinstance(mine, dict)
    assert {**mine, "exported_at": None} == {**export, "exported_at": None}
    assert call("GET", "/members/nobody/export")[0] == 404


def test_an_export_too_large_for_a_lambda_response_is_a_413(
    api: Api, shop: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members_api, "EXPORT_MAX_BYTES", 200)  # as a member with years of ledger would reach 6 MB
    sid, key = shop["shop_id"], shop["api_key"]
    assert api.call("POST", f"/v1/shops/{sid}/members", key=key, body={"member_id": "m1"})[0] == 201
    status, answer = api.call("GET", f"/v1/shops/{sid}/members/m1/export", key=key)
    assert status == 413 and answer["error"]["field"] == "member_id"
