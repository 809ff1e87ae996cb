"""Member tokens through the API function: the shop's backend asks for one, the member's mini-program uses it on
/v1/me, and it opens that member of that shop only, until it expires or its signing key is retired."""

import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import jwt
import pytest

from infra.local.resources import Stack
from loyalty import runtime
from loyalty.runtime import Services
from loyalty.store.keys import AUDIT_SHARDS, audit_pk
from tests.conftest import OPERATOR_KEY, Api
from tests.helpers import drain, paid, send


class Shop:
    def __init__(self, api: Api, shop: dict[str, str], stack: Stack) -> None:
        self.api, self.id, self.key = api, shop["shop_id"], shop["api_key"]
        program = {"check_in": {"points": 5}, "wallet": {"top_up_plans": [{"pay": "100.00", "bonus": "10.00"}]}}
        assert self.call("PUT", "/program", program)[0] == 200
        for member in ("m1", "m2"):
            assert self.call("POST", "/members", {"member_id": member})[0] == 201
            send(stack, self.id, paid(f"o-{member}", member_id=member, total="100.00"))
        assert drain(stack) == [{"batchItemFailures": []}]

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/shops/{self.id}{path}", key=self.key, body=body, headers=headers)

    def token(self, member: str = "m1", **body: Any) -> str:
        status, answer = self.call("POST", f"/members/{member}/tokens", body)
        assert status == 201, answer
        return str(answer["token"])

    def me(self, token: str, method: str = "GET", path: str = "", body: Any = None, **headers: str) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/me{path}", key=token, body=body, headers=headers or None)


@pytest.fixture
def tea(api: Api, shop: dict[str, str], stack: Stack) -> Shop:
    return Shop(api, shop, stack)


def test_a_member_reads_and_acts_on_their_own_account(tea: Shop) -> None:
    status, answer = tea.call("POST", "/members/m1/tokens", {})
    assert status == 201
    expires = datetime.fromisoformat(answer["expires_at"])
    assert timedelta(minutes=14) < expires - datetime.now(UTC) <= timedelta(minutes=15)  # short-lived by default
    token = answer["token"]
    status, account = tea.me(token)
    assert status == 200 and account["member_id"] == "m1"
    assert account == tea.call("GET", "/members/m1")[1]  # the member view, as the shop sees it
    assert tea.me(token, "GET", "/ledger")[1]["items"][0]["reason"] == "order.paid"
    status, checked = tea.me(token, "POST", "/check-ins")
    assert status == 201 and checked["points"] == 5
    assert tea.me(token, "GET", "/wallet")[0] == 200
    assert tea.me(token, "GET", "/savings")[0] == 200
    assert tea.me(token, "GET", "/coupons")[1] == {"items": []}
    assert tea.me(token, "GET", "/exchanges")[0] == 200
    assert tea.me(token, "GET", "/draws")[0] == 200
    assert tea.me(token, "GET", "/mall/items")[0] == 200
    assert tea.call("GET", "/members/m2")[1]["points"]["available"] == 100  # m2 untouched
    assert tea.call("POST", "/members/nobody/tokens", {})[0] == 404


def test_a_token_opens_its_own_member_of_its_own_shop_only(tea: Shop, api: Api) -> None:
    token = tea.token("m1")
    # Never a shop route: those take staff keys, whatever the path names.
    assert api.call("GET", f"/v1/shops/{tea.id}/members/m1", key=token)[0] == 401
    assert api.call("GET", f"/v1/shops/{tea.id}/members/m2", key=token)[0] == 401
    other = api.call("POST", "/v1/shops", key=OPERATOR_KEY, body={"name": "Other"})[1]
    assert api.call("GET", f"/v1/shops/{other['shop_id']}/members/m1", key=token)[0] == 401
    # Claims changed without the key: refused.
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    for changed in ({"sub": "m2"}, {"aud": other["shop_id"]}, {"exp": claims["exp"] + 3600}):
        forged = base64.urlsafe_b64encode(json.dumps(claims | changed).encode()).decode().rstrip("=")
        assert tea.me(f"{head}.{forged}.{signature}")[0] == 401
    # Signed with a key that is not ours, or not signed at all.
    assert tea.me(jwt.encode(claims, "k" * 64, algorithm="HS256", headers={"kid": "k1"}))[0] == 401
    assert tea.me(jwt.encode(claims, "", algorithm="none", headers={"kid": "k1"}))[0] == 401
    assert tea.me("not-a-token")[0] == 401
    assert tea.me(tea.key)[0] == 401  # a staff key is not a member token


def test_a_token_expires(tea: Shop, service: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tea.token("m1", ttl_seconds=60)
    assert tea.me(token)[0] == 200
    later = datetime.now(UTC) + timedelta(seconds=61)
    monkeypatch.setattr(service.tokens, "clock", lambda: later)
    assert tea.me(token)[0] == 401
    assert tea.call("POST", "/members/m1/tokens", {"ttl_seconds": 10**6})[0] == 400


def test_signing_keys_rotate_by_key_id(tea: Shop, stack: Stack) -> None:
    secrets = boto3.client("secretsmanager")
    arn = stack.secrets["MemberTokenSecret"]
    first = json.loads(secrets.get_secret_value(SecretId=arn)["SecretString"])
    old = tea.token("m1")
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps(first | {"current": "k2", "k2": "n" * 64}))
    runtime.reset()  # a new container reads the keys afresh
    new = tea.token("m1")
    assert jwt.get_unverified_header(new)["kid"] == "k2" and jwt.get_unverified_header(old)["kid"] == "k1"
    assert tea.me(old)[0] == 200 and tea.me(new)[0] == 200  # both keys still open
    secrets.put_secret_value(SecretId=arn, SecretString=json.dumps({"current": "k2", "k2": "n" * 64}))
    runtime.reset()
    assert tea.me(old)[0] == 401  # its key is retired
    assert tea.me(new)[0] == 200


def test_a_members_writes_are_audited_under_their_pseudonym(tea: Shop, service: Services) -> None:
    token = tea.token("m1")
    assert tea.me(token, "POST", "/check-ins")[0] == 201
    today = datetime.now(UTC).date()
    entries = [item for n in range(AUDIT_SHARDS) for item in service.db.query_all(audit_pk(tea.id, today, n), "2")]
    (entry,) = [item for item in entries if item["route"] == "/v1/me/check-ins"]
    assert entry["actor"] == {"kind": "member", "member_ref": service.shops.pseudonym(tea.id, "m1")}
    assert "m1" not in json.dumps(entry, default=str)


def test_one_members_idempotency_key_never_answers_another(tea: Shop) -> None:
    m1, m2 = tea.token("m1"), tea.token("m2")
    status, _ = tea.me(m1, "POST", "/cards/redemptions", {"code": "NOPE-NOPE"}, **{"Idempotency-Key": "same"})
    assert status == 422
    status, coupon = tea.call("POST", "/coupon-templates", {"name": "1 off", "kind": "amount_off", "amount": "1.00",
                                                            "stock": 5, "valid_days_after_claim": 3})  # fmt: skip
    assert status == 201
    body = {"template_id": coupon["template_id"]}
    status, first = tea.me(m1, "POST", "/coupons", body, **{"Idempotency-Key": "c1"})
    assert status == 201
    # Keys are each member's own (their records live in the member's partition): m2's "c1" is m2's own claim.
    status, answer = tea.me(m2, "POST", "/coupons", body, **{"Idempotency-Key": "c1"})
    assert status == 201 and answer["member_id"] == "m2" and answer["code"] != first["code"]
    assert tea.me(m1, "POST", "/coupons", body, **{"Idempotency-Key": "c1"}) == (
        201,
        first,
    )  # m1's replay, as first answered
