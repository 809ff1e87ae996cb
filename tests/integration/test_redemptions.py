"""Redemptions: idempotent on Idempotency-Key, never more than the available balance, lots oldest first."""

from typing import Any

import pytest

from infra.local.resources import Stack
from loyalty.runtime import Services
from tests.conftest import Api
from tests.helpers import check_invariants, drain, paid, send


@pytest.fixture
def funded(api: Api, stack: Stack, shop: dict[str, str]) -> str:
    """Member m1 with 300 available points in three lots of 100 (earned on three days)."""
    sid = shop["shop_id"]
    api.call("POST", f"/v1/shops/{sid}/members", key=shop["api_key"], body={"member_id": "m1"})
    for day in (1, 2, 3):
        send(stack, sid, paid(f"o{day}", paid_at=f"2026-11-0{day}T08:00:00Z"))
    drain(stack)
    return sid


def redeem(api: Api, shop: dict[str, str], points: int, key: str | None, reason: str = "tea set") -> tuple[int, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    return api.call(
        "POST",
        f"/v1/shops/{shop['shop_id']}/members/m1/redemptions",
        key=shop["api_key"],
        body={"points": points, "reason": reason},
        headers=headers,
    )


def test_redeem_and_replay(api: Api, service: Services, shop: dict[str, str], funded: str) -> None:
    status, first = redeem(api, shop, 150, "k1")
    assert status == 201 and first["balance"] == {"available": 150, "pending": 0}
    status, again = redeem(api, shop, 150, "k1")
    assert (status, again) == (201, first)
    assert service.members.member(funded, "m1").balance.available == 150
    check_invariants(service, funded, "m1")


def test_same_key_for_another_request_is_refused(api: Api, shop: dict[str, str], funded: str) -> None:
    assert redeem(api, shop, 10, "k1")[0] == 201
    status, body = redeem(api, shop, 20, "k1")
    assert (status, body["error"]["field"]) == (409, "Idempotency-Key")


def test_short_balance_is_409_and_changes_nothing(
    api: Api, service: Services, shop: dict[str, str], funded: str
) -> None:
    status, body = redeem(api, shop, 301, "k1")
    assert (status, body["error"]["code"]) == (409, "insufficient_points")
    assert service.members.member(funded, "m1").balance.available == 300
    assert redeem(api, shop, 300, "k2")[0] == 201
    assert redeem(api, shop, 1, "k3")[0] == 409
    check_invariants(service, funded, "m1")


def test_redemption_spans_lots_oldest_first(api: Api, service: Services, shop: dict[str, str], funded: str) -> None:
    assert redeem(api, shop, 150, "k1")[0] == 201
    status, body = api.call("GET", f"/v1/shops/{funded}/members/m1/ledger?limit=1", key=shop["api_key"])
    assert status == 200
    draws = body["items"][0]["detail"]["draws"]
    assert [(d["lot_id"].split("#")[-1], d["take"]) for d in draws] == [("o1", 100), ("o2", 50)]
    check_invariants(service, funded, "m1")


def test_missing_key_or_unknown_member(api: Api, shop: dict[str, str], funded: str) -> None:
    status, body = redeem(api, shop, 1, None)
    assert status == 400 and "idempotency-key" in body["error"]["field"].lower()
    status, body = api.call(
        "POST",
        f"/v1/shops/{funded}/members/nobody/redemptions",
        key=shop["api_key"],
        body={"points": 1, "reason": "x"},
        headers={"Idempotency-Key": "k9"},
    )
    assert status == 404


def test_ledger_pages_through_every_entry(api: Api, shop: dict[str, str], funded: str) -> None:
    for n in range(4):
        assert redeem(api, shop, 1, f"k{n}")[0] == 201
    seen, cursor = [], None
    while True:
        query = "limit=3" + (f"&next={cursor}" if cursor else "")
        status, body = api.call("GET", f"/v1/shops/{funded}/members/m1/ledger?{query}", key=shop["api_key"])
        assert status == 200
        seen += body["items"]
        cursor = body["next"]
        if not cursor:
            break
    assert len(seen) == 7 and sum(e["points"] for e in seen) == 296
    assert [e["at"] for e in seen] == sorted((e["at"] for e in seen), reverse=True)
