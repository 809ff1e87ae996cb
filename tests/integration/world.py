# ruff: noqa: E501  (the route table below reads best one route to a line)
"""A shop with something behind every route, a key of every role, and for each shop route a request that
succeeds for a caller allowed to make it: what the role x route and audit tests call."""

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from infra.local.resources import Stack
from loyalty.domain.access import ROLES
from tests.conftest import Api
from tests.helpers import drain, paid, send

S = "/v1/shops/{shop_id}"
_serial = itertools.count()


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

    def new_exchange(self) -> str:
        """A new exchange of m1's, to move along."""
        made = self.as_owner(
            "POST", "/members/m1/exchanges", {"item_id": self.item}, **{"Idempotency-Key": "x" + str(next(_serial))}
        )
        return str(made["exchange_id"])

    def enrolled(self, member_id: str) -> str:
        """A new member, to erase."""
        return str(self.as_owner("POST", "/members", {"member_id": member_id})["member_id"])

    def campaign(self) -> str:
        """A win-back campaign of the shop's template."""
        made = self.as_owner("POST", "/campaigns/win-back", {"segment": "dormant", "template_id": self.template})
        return str(made["campaign_id"])

    def spare_key(self) -> str:
        """A new analyst key's id, to rotate or revoke."""
        return str(self.as_owner("POST", "/keys", {"name": "spare", "role": "analyst"})["key_id"])

    def as_owner(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        status, answer = self.call(self.owner, method, path, body, **headers)
        assert status in (200, 201, 202), (method, path, status, answer)
        return answer


def make_world(api: Api, shop: dict[str, str], stack: Stack) -> World:
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
        ("POST", S + "/members:batch"): lambda: ("/members:batch", {"members": [{"member_id": "imp" + n(), "points": 5}]}, {}),
        ("GET", S + "/members"): body("/members?email=nobody@example.com"),
        ("GET", S + "/members/{member_id}"): body(m),
        ("PATCH", S + "/members/{member_id}"): body(m, {"marketing_consent": True}),
        ("DELETE", S + "/members/{member_id}"): lambda: (f"/members/{w.enrolled('gone' + n())}", None, {}),
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
        ("PUT", S + "/mall/exchanges/{exchange_id}"): lambda: (f"/mall/exchanges/{w.new_exchange()}", {"status": "shipped"}, {}),
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
        ("GET", S + "/audit"): body("/audit"),
        ("GET", S + "/reports/summary"): body("/reports/summary"),
        ("GET", S + "/reports/daily"): body("/reports/daily?from=2026-01-01&until=2026-01-31"),
        ("GET", S + "/reports/reconciliation"): body("/reports/reconciliation"),
        ("GET", S + "/segments/{segment}/members"): body("/segments/dormant/members"),
        ("GET", S + "/dashboard"): body("/dashboard"),
        ("POST", S + "/dashboard/links"): body("/dashboard/links"),
        ("POST", S + "/campaigns/win-back"): lambda: ("/campaigns/win-back", {"segment": "dormant", "template_id": w.template}, {}),
        ("GET", S + "/campaigns/win-back/{campaign_id}"): lambda: (f"/campaigns/win-back/{w.campaign()}", None, {}),
        ("POST", S + "/members/{member_id}/tokens"): body(m + "/tokens", {}),
        ("GET", S + "/members/{member_id}/export"): body(m + "/export"),
    }  # fmt: skip
