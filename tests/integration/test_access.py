# ruff: noqa: E501  (the route table below reads best one route to a line)
"""Staff keys and roles through the API function: every role against every shop route (allowed ones succeed,
the others are refused 403 and change nothing), and keys created, listed, rotated with an overlap and revoked."""

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from infra.local.resources import Stack
from loyalty.api.access import ALLOWED
from loyalty.api.resolver import build
from loyalty.domain.access import ROLES
from loyalty.runtime import Services
from loyalty.store import points as point_store
from tests.conftest import Api
from tests.helpers import check_invariants, drain, paid, send

S = "/v1/shops/{shop_id}"
_serial = itertools.count()


def test_every_shop_route_is_classified() -> None:
    routes = {
        (route.method, route.openapi_path)
        for route in build()._static_routes + build()._dynamic_routes
        if route.openapi_path.startswith(S)
    }
    assert routes - set(ALLOWED) == set(), "classify these in api/access.py"
    assert set(ALLOWED) - routes == set(), "no such routes"


@dataclass
class World:
    """A shop with what each route needs: members with points, a coupon template, a mall item and an exchange,
    a lottery, a gift card batch, a grant; and a key of every role."""

    api: Api
    id: str
    owner: str
    keys: dict[str, str]
    template: str
    item: str
    exchange: str
    lottery: str
    grant: str
    codes: list[str]
    fresh: list[str] = field(default_factory=list)

    def call(self, key: str, method: str, path: str, body: Any = None, **headers: str) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/shops/{self.id}{path}", key=key, body=body, headers=headers or None)

    def spare_key(self) -> str:
        """A new analyst key's id, to rotate or revoke."""
        return str(self.as_owner("POST", "/keys", {"name": "spare", "role": "analyst"})["key_id"])

    def as_owner(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        status, answer = self.call(self.owner, method, path, body, **headers)
        assert status in (200, 201, 202), (method, path, status, answer)
        return answer


@pytest.fixture
def world(api: Api, shop: dict[str, str], stack: Stack) -> World:
    w = World(api, shop["shop_id"], shop["api_key"], {}, "", "", "", "", "", [])
    program = {
        "check_in": {"points": 5},
        "behaviours": {"review": {"points": 20}},
        "wallet": {"top_up_plans": [{"pay": "100.00", "bonus": "10.00"}]},
    }
    w.as_owner("PUT", "/program", program)
    for member in ("m1", "m2"):
        w.as_owner("POST", "/members", {"member_id": member})
        send(stack, w.id, paid(f"o-{member}", member_id=member, total="1000.00"))
    w.fresh = [f"c{n}" for n in range(len(ROLES))]  # one check-in a day each
    for member in w.fresh:
        w.as_owner("POST", "/members", {"member_id": member})
    assert drain(stack) == [{"batchItemFailures": []}]
    w.as_owner("PUT", "/integrations/shopify", {"secret": "s" * 32})
    template = {"name": "5 off", "kind": "amount_off", "amount": "5.00", "stock": 1000, "valid_days_after_claim": 30}
    template["per_member_limit"] = 1000
    w.template = w.as_owner("POST", "/coupon-templates", template)["template_id"]
    item = {"kind": "goods", "name": "Towel", "points": 10, "stock": 1000, "ships": True}
    w.item = w.as_owner("POST", "/mall/items", item)["item_id"]
    exchange = {"item_id": w.item}
    w.exchange = w.as_owner("POST", "/members/m1/exchanges", exchange, **{"Idempotency-Key": "x0"})["exchange_id"]
    prizes = [{"prize_id": "thanks", "kind": "nothing", "weight": 1}]
    lottery = {"name": "Spin", "cost_points": 1, "daily_limit": 100, "prizes": prizes, "consolation": "thanks"}
    w.lottery = w.as_owner("POST", "/lotteries", lottery)["lottery_id"]
    grant = w.as_owner(
        "POST", f"/coupon-templates/{w.template}/grants", {"member_ids": ["m2"]}, **{"Idempotency-Key": "g0"}
    )
    w.grant = grant["grant_id"]
    batch = {"batch_id": "b1", "value": "50.00", "count": 20, "expires_at": "2030-01-01T00:00:00Z"}
    w.codes = list(w.as_owner("POST", "/cards/batches", batch)["codes"])
    for role in ROLES:
        w.keys[role] = w.as_owner("POST", "/keys", {"name": f"{role} at the till", "role": role})["api_key"]
    return w


def requests(w: World) -> dict[tuple[str, str], Callable[[], tuple[str, Any, dict[str, str]]]]:
    """For each route: a request that succeeds for a caller allowed to make it (each call a new one)."""

    def n() -> str:
        return str(next(_serial))

    def key() -> dict[str, str]:
        return {"Idempotency-Key": "k" + n()}

    def body(path: str, payload: Any = None, headers: dict[str, str] | None = None) -> Callable[[], Any]:
        return lambda: (path, payload, headers or {})

    m = "/members/m1"
    return {
        ("GET", S + "/program"): body("/program"),
        ("PUT", S + "/program"): body("/program", {"check_in": {"points": 5}, "behaviours": {"review": {"points": 20}}}),
        ("POST", S + "/members"): lambda: ("/members", {"member_id": "new" + n()}, {}),
        ("GET", S + "/members"): body("/members?email=nobody@example.com"),
        ("GET", S + "/members/{member_id}"): body(m),
        ("GET", S + "/members/{member_id}/ledger"): body(m + "/ledger"),
        ("POST", S + "/members/{member_id}/adjustments"): lambda: (m + "/adjustments", {"points": 1, "reason": "goodwill"}, key()),
        ("POST", S + "/members/{member_id}/redemptions"): lambda: (m + "/redemptions", {"points": 1, "reason": "tea"}, key()),
        ("GET", S + "/members/{member_id}/wallet"): body(m + "/wallet"),
        ("GET", S + "/members/{member_id}/wallet/ledger"): body(m + "/wallet/ledger"),
        ("POST", S + "/members/{member_id}/wallet/top-ups"): lambda: (m + "/wallet/top-ups", {"amount": "1.00", "reference": "t" + n()}, key()),
        ("GET", S + "/members/{member_id}/savings"): body(m + "/savings"),
        ("POST", S + "/cards/batches"): lambda: ("/cards/batches", {"batch_id": "b" + n(), "value": "1.00", "count": 1, "expires_at": "2030-01-01T00:00:00Z"}, {}),
        ("GET", S + "/cards/batches"): body("/cards/batches"),
        ("GET", S + "/cards/batches/{batch_id}"): body("/cards/batches/b1"),
        ("POST", S + "/members/{member_id}/cards/redemptions"): lambda: (m + "/cards/redemptions", {"code": w.codes.pop()}, key()),
        ("POST", S + "/members/{member_id}/cards/transfers"): lambda: (m + "/cards/transfers", {"code": w.codes.pop(), "to_member_id": "m2"}, key()),
        ("POST", S + "/members/{member_id}/check-ins"): lambda: (f"/members/{w.fresh.pop()}/check-ins", None, {}),
        ("GET", S + "/members/{member_id}/check-ins"): body(m + "/check-ins"),
        ("POST", S + "/members/{member_id}/activities"): lambda: (m + "/activities", {"behaviour": "review", "reference": "r" + n()}, {}),
        ("POST", S + "/coupon-templates"): body("/coupon-templates", {"name": "1 off", "kind": "amount_off", "amount": "1.00", "stock": 5, "valid_days_after_claim": 3}),
        ("GET", S + "/coupon-templates/{template_id}"): body(f"/coupon-templates/{w.template}"),
        ("POST", S + "/members/{member_id}/coupons"): lambda: (m + "/coupons", {"template_id": w.template}, key()),
        ("GET", S + "/members/{member_id}/coupons"): body(m + "/coupons"),
        ("POST", S + "/coupon-templates/{template_id}/grants"): lambda: (f"/coupon-templates/{w.template}/grants", {"member_ids": ["m2"]}, key()),
        ("GET", S + "/coupon-grants/{grant_id}"): body(f"/coupon-grants/{w.grant}"),
        ("POST", S + "/checkout/quote"): body("/checkout/quote", {"member_id": "m1", "lines": [{"sku": "t", "amount": "10.00"}]}),
        ("POST", S + "/mall/items"): body("/mall/items", {"kind": "goods", "name": "Mug", "points": 5, "stock": 3, "ships": True}),
        ("GET", S + "/mall/items"): body("/mall/items"),
        ("GET", S + "/mall/items/{item_id}"): body(f"/mall/items/{w.item}"),
        ("POST", S + "/members/{member_id}/exchanges"): lambda: (m + "/exchanges", {"item_id": w.item}, key()),
        ("GET", S + "/members/{member_id}/exchanges"): body(m + "/exchanges"),
        ("GET", S + "/mall/exchanges/{exchange_id}"): body(f"/mall/exchanges/{w.exchange}"),
        ("PUT", S + "/mall/exchanges/{exchange_id}"): body(f"/mall/exchanges/{w.exchange}", {"status": "pending"}),
        ("POST", S + "/lotteries"): body("/lotteries", {"name": "Spin", "cost_points": 1, "daily_limit": 5, "prizes": [{"prize_id": "t", "kind": "nothing", "weight": 1}], "consolation": "t"}),
        ("GET", S + "/lotteries/{lottery_id}"): body(f"/lotteries/{w.lottery}"),
        ("GET", S + "/lotteries/{lottery_id}/report"): body(f"/lotteries/{w.lottery}/report"),
        ("GET", S + "/lotteries/{lottery_id}/audit"): body(f"/lotteries/{w.lottery}/audit?day=2026-01-01"),
        ("POST", S + "/members/{member_id}/draws"): lambda: (m + "/draws", {"lottery_id": w.lottery}, key()),
        ("GET", S + "/members/{member_id}/draws"): body(m + "/draws"),
        ("PUT", S + "/integrations/{platform}"): body("/integrations/shopify", {"secret": "t" * 32}),
        ("GET", S + "/integrations/{platform}"): body("/integrations/shopify"),
        ("POST", S + "/keys"): lambda: ("/keys", {"name": "k" + n(), "role": "analyst"}, {}),
        ("GET", S + "/keys"): body("/keys"),
        ("POST", S + "/keys/{key_id}/rotations"): lambda: (f"/keys/{w.spare_key()}/rotations", {}, {}),
        ("DELETE", S + "/keys/{key_id}"): lambda: (f"/keys/{w.spare_key()}", None, {}),
    }  # fmt: skip


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
    status, refused = world.call(world.owner, "POST", "/members/m2/adjustments",
                                 {"points": -(available + 1), "reason": "too much"}, **{"Idempotency-Key": "a5"})  # fmt: skip
    assert status == 409 and refused["error"]["code"] == "insufficient_points"
