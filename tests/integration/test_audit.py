"""The audit trail: every write route leaves an entry of who did what in the write's own transaction (none for a
read, a refused write or a replay), and the trail is listed in time order across its partitions, by key and by
member, with members named only by pseudonym."""

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.local.resources import Stack
from loyalty.runtime import Services
from loyalty.store.keys import AUDIT_SHARDS, audit_pk
from tests.conftest import Api
from tests.integration.world import World, make_world, requests


@pytest.fixture
def world(api: Api, shop: dict[str, str], stack: Stack) -> World:
    return make_world(api, shop, stack)


def entries(service: Services, shop_id: str) -> list[dict[str, Any]]:
    today = datetime.now(UTC).date()
    found = [
        item for shard in range(AUDIT_SHARDS) for item in service.db.query_all(audit_pk(shop_id, today, shard), "2")
    ]
    return sorted(found, key=lambda item: item["SK"])


def test_every_write_route_leaves_an_entry_and_no_read_does(world: World, service: Services) -> None:
    owner_id = world.owner.split(".")[1]
    for (method, route), request in sorted(requests(world).items()):
        path, payload, headers = request()
        before = len(entries(service, world.id))
        status, answer = world.call(world.owner, method, path, payload, **headers)
        assert status in (200, 201, 202), (method, route, answer)
        made = entries(service, world.id)[before:]
        if method == "GET" or route.endswith(("/checkout/quote", "/tokens", "/dashboard/links")):
            assert made == [], (method, route)  # a read (a price, a token, a link) writes nothing, leaves nothing
            continue
        assert made, (method, route)
        for entry in made:
            assert entry["route"] == route and entry["method"] == method
            assert entry["actor"] == {"kind": "key", "key_id": owner_id, "name": "owner", "role": "owner"}
            assert entry["changes"]  # what kinds of item the write touched
            assert "m1" not in json.dumps(entry, default=str)  # members by pseudonym only


def test_an_entry_holds_no_body(world: World, service: Services) -> None:
    before = len(entries(service, world.id))
    body = {"member_id": "ann", "phone": "13800138000", "email": "ann@example.com"}
    assert world.call(world.owner, "POST", "/members", body)[0] == 201
    (entry,) = entries(service, world.id)[before:]
    assert entry["target"] == {} and entry.get("member_ref") is None
    text = json.dumps(entry, default=str)
    assert "13800138000" not in text and "ann@" not in text and '"ann"' not in text


def test_a_refused_write_or_a_replay_leaves_no_entry(world: World, service: Services) -> None:
    key = {"Idempotency-Key": "r1"}
    before = len(entries(service, world.id))
    assert world.call(world.owner, "POST", "/members/m1/redemptions", {"points": 10**9, "reason": "x"}, **key)[0] == 409
    assert len(entries(service, world.id)) == before  # its transaction was refused, with its entry
    assert world.call(world.owner, "POST", "/members/m1/redemptions", {"points": 5, "reason": "x"}, **key)[0] == 201
    assert len(entries(service, world.id)) == before + 1
    assert world.call(world.owner, "POST", "/members/m1/redemptions", {"points": 5, "reason": "x"}, **key)[0] == 201
    assert len(entries(service, world.id)) == before + 1  # the replay answered as the first call, writing nothing


def test_the_trail_is_listed_in_time_order_by_key_and_by_member(world: World, service: Services) -> None:
    support = world.as_owner("POST", "/keys", {"name": "Li", "role": "support"})
    for n in range(7):
        member = "m1" if n % 2 else "m2"
        status, _ = world.call(
            support["api_key"], "POST", f"/members/{member}/adjustments", {"points": 1, "reason": f"r{n}"},
            **{"Idempotency-Key": f"adj{n}"},
        )  # fmt: skip
        assert status == 201
    everything = entries(service, world.id)
    listed: list[dict[str, Any]] = []
    cursor = None
    while True:  # pages of 4, merged over the day's partitions
        query = "/audit?limit=4" + (f"&next={cursor}" if cursor else "")
        page = world.as_owner("GET", query)
        listed += page["items"]
        cursor = page["next"]
        if cursor is None:
            break
    assert [entry["request_id"] for entry in listed] == [item["request_id"] for item in everything]
    assert [entry["at"] for entry in listed] == sorted(entry["at"] for entry in listed)
    by_key = world.as_owner("GET", f"/audit?actor={support['key_id']}&limit=100")["items"]
    assert len(by_key) == 7 and {entry["actor"]["name"] for entry in by_key} == {"Li"}
    of_m1 = world.as_owner("GET", f"/audit?actor={support['key_id']}&member=m1&limit=100")["items"]
    assert len(of_m1) == 3 and len({entry["member_ref"] for entry in of_m1}) == 1
    assert world.call(support["api_key"], "GET", "/audit")[0] == 200  # support reads the trail
    assert world.call(world.keys["cashier"], "GET", "/audit")[0] == 403


def test_a_window_and_a_cursor_are_checked(world: World) -> None:
    now = datetime.now(UTC)
    old = (now - timedelta(days=40)).isoformat().replace("+00:00", "Z")
    status, answer = world.call(world.owner, "GET", f"/audit?from={old}")
    assert status == 400 and answer["error"]["field"] == "until"
    status, answer = world.call(world.owner, "GET", "/audit?next=bm90IGEgY3Vyc29y")
    assert status == 400 and answer["error"]["field"] == "next"
