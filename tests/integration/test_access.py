"""Staff keys and roles through the API function: every role against every shop route (allowed ones succeed,
the others are refused 403 and change nothing), and keys created, listed, rotated with an overlap and revoked."""

import pytest

from infra.local.resources import Stack
from loyalty.api.access import ALLOWED
from loyalty.api.resolver import build
from loyalty.domain.access import ROLES
from loyalty.runtime import Services
from loyalty.store import points as point_store
from tests.conftest import Api
from tests.helpers import check_invariants
from tests.integration.world import S, World, make_world, requests


def test_every_shop_route_is_classified() -> None:
    routes = {
        (route.method, route.openapi_path)
        for route in build()._static_routes + build()._dynamic_routes
        if route.openapi_path.startswith(S)
    }
    assert routes - set(ALLOWED) == set(), "classify these in api/access.py"
    assert set(ALLOWED) - routes == set(), "no such routes"


@pytest.fixture
def world(api: Api, shop: dict[str, str], stack: Stack) -> World:
    return make_world(api, shop, stack)


def test_each_role_may_call_its_routes_and_no_other(world: World, service: Services) -> None:
    made = requests(world)
    assert set(made) == set(ALLOWED)
    seen: dict[str, list[str]] = {role: [] for role in ROLES}
    for (method, route), request in sorted(made.items()):
        for role in ROLES:
            path, payload, headers = request()
            status, answer = world.call(world.keys[role], method, path, payload, **headers)
            allowed = role == "owner" or role in ALLOWED[(method, route)]
            if allowed:
                assert status in (200, 201, 202), (role, method, route, status, answer)
                seen[role].append(f"{method} {route}")
            else:
                assert status == 403, (role, method, route, status, answer)
                assert answer["error"]["code"] == "forbidden"
    assert len(seen["owner"]) == len(ALLOWED)
    assert all(seen[role] for role in ROLES)  # every role has some use
    check_invariants(service, world.id, "m1")


def test_a_refused_call_changes_nothing_and_a_bad_body_is_refused_before_it_is_read(world: World) -> None:
    before = world.as_owner("GET", "/members/m1")["points"]
    status, answer = world.call(world.keys["analyst"], "POST", "/members/m1/redemptions", {"points": 5, "reason": "x"})
    assert status == 403 and "analyst" in answer["error"]["message"]
    # A body that would fail validation is refused for the role first: the schema is not shown to it.
    status, answer = world.call(world.keys["analyst"], "POST", "/members/m1/redemptions", {"nonsense": True})
    assert status == 403
    assert world.as_owner("GET", "/members/m1")["points"] == before


def test_keys_are_listed_without_secrets_rotated_with_an_overlap_and_revoked(world: World, service: Services) -> None:
    listed = world.as_owner("GET", "/keys")["items"]
    assert {key["role"] for key in listed} == set(ROLES)
    assert all("api_key" not in key and "secret_sha256" not in key for key in listed)
    assert all(secret.split(".", 2)[2] not in str(listed) for secret in world.keys.values())
    cashier = world.keys["cashier"]
    key_id = cashier.split(".")[1]
    rotated = world.as_owner("POST", f"/keys/{key_id}/rotations", {"overlap_seconds": 3600})
    assert rotated["api_key"] != cashier and rotated["previous_valid_until"]
    assert world.call(cashier, "GET", "/members/m1")[0] == 200  # the old secret, inside its overlap
    assert world.call(rotated["api_key"], "GET", "/members/m1")[0] == 200
    world.as_owner("POST", f"/keys/{key_id}/rotations", {"overlap_seconds": 0})
    assert world.call(cashier, "GET", "/members/m1")[0] == 401  # replaced twice: the first secret is gone
    assert world.call(rotated["api_key"], "GET", "/members/m1")[0] == 401  # overlap 0: at once
    revoked = world.as_owner("DELETE", f"/keys/{key_id}")
    assert revoked["revoked_at"]
    assert world.call(world.owner, "DELETE", f"/keys/{key_id}")[0] == 404
    # The last active owner key cannot be revoked (the shop would be locked out); another owner can revoke it.
    owner_id = world.owner.split(".")[1]
    world.as_owner("DELETE", f"/keys/{world.keys['owner'].split('.')[1]}")
    status, answer = world.call(world.owner, "DELETE", f"/keys/{owner_id}")
    assert status == 409, answer
    second = world.as_owner("POST", "/keys", {"name": "deputy", "role": "owner"})["api_key"]
    assert world.call(second, "DELETE", f"/keys/{owner_id}")[0] == 200
    assert world.call(world.owner, "GET", "/keys")[0] == 401


def test_a_key_opens_its_own_shop_only(world: World, api: Api) -> None:
    other = api.call("POST", "/v1/shops", key="op_test_key", body={"name": "Other"})[1]
    assert api.call("GET", f"/v1/shops/{other['shop_id']}/members/m1", key=world.keys["owner"])[0] == 403
    forged = f"{other['shop_id']}.{world.keys['owner'].split('.', 1)[1]}"  # our key id and secret, their shop
    assert api.call("GET", f"/v1/shops/{other['shop_id']}/members/m1", key=forged)[0] == 401


def test_support_adjusts_with_a_reason_within_its_daily_cap(world: World, service: Services) -> None:
    support = world.as_owner("POST", "/keys", {"name": "Li at support", "role": "support", "adjustment_cap": 100})
    key = support["api_key"]
    status, answer = world.call(key, "POST", "/members/m1/adjustments", {"points": 60, "reason": "missed order"},
                                **{"Idempotency-Key": "a1"})  # fmt: skip
    assert status == 201, answer
    assert answer["by"] == {"key_id": support["key_id"], "name": "Li at support"}
    again = world.call(key, "POST", "/members/m1/adjustments", {"points": 60, "reason": "missed order"},
                       **{"Idempotency-Key": "a1"})  # fmt: skip
    assert again == (200, answer) or again == (201, answer)
    status, refused = world.call(key, "POST", "/members/m1/adjustments", {"points": -50, "reason": "double"},
                                 **{"Idempotency-Key": "a2"})  # fmt: skip
    assert status == 409 and refused["error"]["code"] == "cap_reached"
    status, _ = world.call(key, "POST", "/members/m1/adjustments", {"points": -40, "reason": "double"},
                           **{"Idempotency-Key": "a3"})  # fmt: skip
    assert status == 201
    status, refused = world.call(key, "POST", "/members/m1/adjustments", {"points": 5}, **{"Idempotency-Key": "a4"})
    assert status == 400 and refused["error"]["field"] == "reason"
    entries = [e for e in point_store.ledger_all(service.db, world.id, "m1") if e.reason == "points.adjusted"]
    assert [(e.points, e.detail["note"], e.detail["key_id"]) for e in entries] == [
        (60, "missed order", support["key_id"]),
        (-40, "double", support["key_id"]),
    ]
    # An adjustment never overdraws.
    available = check_invariants(service, world.id, "m2")["available"]
    too_much = {"points": -(available + 1), "reason": "too much"}
    status, refused = world.call(world.owner, "POST", "/members/m2/adjustments", too_much, **{"Idempotency-Key": "a5"})
    assert status == 409 and refused["error"]["code"] == "insufficient_points"
