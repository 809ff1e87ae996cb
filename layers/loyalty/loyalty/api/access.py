"""What each staff role may call: one table, route by route. An owner key may call every shop route; any other
role only the routes listed for it here. A route missing from the table is the owner's alone, and
tests/integration/test_access.py fails for a shop route not in it, so each new route is a decision.

- marketing: coupons, grants, the program (campaigns live in it), the mall, lotteries;
- cashier: at the till, on a member's behalf: find and enrol, quote, redeem, claim, check in, top up, gift cards,
  exchanges and draws;
- support: reads members, ledgers and what members hold; adjusts points (with a reason, within its daily cap);
- analyst: reads, never writes.
"""

from contextvars import ContextVar

from loyalty.domain.access import Caller, Denied, Role

S = "/v1/shops/{shop_id}"
M = S + "/members/{member_id}"
ANALYST: set[Role] = {"analyst"}
READERS: set[Role] = {"marketing", "support", "analyst"}  # the shop's configuration, to everyone who works on it
MEMBER_READERS: set[Role] = {"cashier", "support", "analyst"}

ALLOWED: dict[tuple[str, str], set[Role]] = {
    ("GET", S + "/program"): READERS | {"cashier"},
    ("PUT", S + "/program"): {"marketing"},
    ("POST", S + "/members"): {"cashier"},
    ("POST", S + "/members:batch"): set(),  # an import: the owner's
    ("GET", S + "/members"): MEMBER_READERS,
    ("GET", M): MEMBER_READERS,
    ("PATCH", M): {"support"},
    ("DELETE", M): set(),  # an erasure: the owner's
    ("GET", M + "/ledger"): {"support", "analyst"},
    ("POST", M + "/adjustments"): {"support"},
    ("POST", M + "/redemptions"): {"cashier"},
    ("GET", M + "/wallet"): MEMBER_READERS,
    ("GET", M + "/wallet/ledger"): {"support", "analyst"},
    ("POST", M + "/wallet/top-ups"): {"cashier"},
    ("GET", M + "/savings"): MEMBER_READERS,
    ("GET", S + "/cards/batches"): ANALYST,
    ("GET", S + "/cards/batches/{batch_id}"): ANALYST,
    ("POST", M + "/cards/redemptions"): {"cashier"},
    ("POST", M + "/cards/transfers"): {"cashier"},
    ("POST", M + "/check-ins"): {"cashier"},
    ("POST", M + "/activities"): {"cashier"},
    ("GET", M + "/check-ins"): MEMBER_READERS,
    ("POST", S + "/coupon-templates"): {"marketing"},
    ("GET", S + "/coupon-templates/{template_id}"): READERS | {"cashier"},
    ("POST", M + "/coupons"): {"cashier", "marketing"},
    ("GET", M + "/coupons"): MEMBER_READERS | {"marketing"},
    ("POST", S + "/coupon-templates/{template_id}/grants"): {"marketing"},
    ("GET", S + "/coupon-grants/{grant_id}"): {"marketing", "analyst"},
    ("POST", S + "/checkout/quote"): {"cashier"},
    ("POST", S + "/mall/items"): {"marketing"},
    ("GET", S + "/mall/items"): READERS | {"cashier"},
    ("GET", S + "/mall/items/{item_id}"): READERS | {"cashier"},
    ("POST", M + "/exchanges"): {"cashier"},
    ("GET", M + "/exchanges"): MEMBER_READERS | {"marketing"},
    ("GET", S + "/mall/exchanges/{exchange_id}"): MEMBER_READERS | {"marketing"},
    ("PUT", S + "/mall/exchanges/{exchange_id}"): {"marketing"},
    ("POST", S + "/lotteries"): {"marketing"},
    ("GET", S + "/lotteries/{lottery_id}"): READERS | {"cashier"},
    ("GET", S + "/lotteries/{lottery_id}/report"): {"marketing", "analyst"},
    ("GET", S + "/lotteries/{lottery_id}/audit"): {"marketing", "analyst", "support"},
    ("POST", M + "/draws"): {"cashier"},
    ("GET", M + "/draws"): MEMBER_READERS | {"marketing"},
    ("GET", S + "/audit"): {"support"},
    ("GET", S + "/reports/summary"): {"marketing", "analyst"},
    ("GET", S + "/reports/daily"): {"marketing", "analyst"},
    ("GET", S + "/reports/reconciliation"): ANALYST,
    ("GET", S + "/segments/{segment}/members"): {"marketing", "analyst"},
    ("GET", S + "/dashboard"): {"marketing", "analyst"},
    ("POST", S + "/dashboard/links"): {"marketing", "analyst"},
    ("POST", S + "/campaigns/win-back"): {"marketing"},
    ("GET", S + "/campaigns/win-back/{campaign_id}"): {"marketing", "analyst"},
    # The owner's alone: credentials, platform secrets, issuing stored value.
    ("POST", S + "/keys"): set(),
    ("GET", S + "/keys"): set(),
    ("POST", S + "/keys/{key_id}/rotations"): set(),
    ("DELETE", S + "/keys/{key_id}"): set(),
    ("PUT", S + "/integrations/{platform}"): set(),
    ("GET", S + "/integrations/{platform}"): set(),
    ("POST", S + "/cards/batches"): set(),
    ("POST", M + "/tokens"): set(),  # the shop's backend, after its own login of the member
    ("GET", M + "/export"): set(),  # all of a member's personal data (the member's own: GET /v1/me/export)
}


def allowed(role: Role, method: str, route: str) -> bool:
    return role == "owner" or role in ALLOWED.get((method.upper(), route), set())


def require(caller: Caller, method: str, route: str) -> None:
    """Denied('forbidden') unless the caller's key may call the route."""
    if caller.role is None or not allowed(caller.role, method, route):
        raise Denied("forbidden", f"a {caller.role} key may not call {method.upper()} {route}")


# The verified caller of the request being answered (set by the resolver's authentication, read by routes that
# act in the caller's name: revoking a key, adjusting points, the /v1/me routes).
_current: ContextVar[Caller | None] = ContextVar("caller", default=None)


def set_caller(caller: Caller | None) -> None:
    _current.set(caller)


def caller() -> Caller:
    current = _current.get()
    if current is None:
        raise Denied("unauthenticated")
    return current
