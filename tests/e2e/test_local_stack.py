"""`make run`'s contract, over HTTP: the local stack started as its own process, as a newcomer would start it."""

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.local import process
from loyalty.webhooks import standard

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_KEY = "op_e2e"


def start_stack(extra_env: dict[str, str], log: Path) -> tuple[process.Running, str]:
    running = process.start(OPERATOR_KEY, log, extra_env)
    assert f"operator key   {OPERATOR_KEY}" in log.read_text()
    return running, running.url


def stop(running: process.Running) -> None:
    running.stop()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    running, url = start_stack({}, tmp_path_factory.mktemp("stack") / "stack.log")
    yield url
    stop(running)


def call(
    base: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> tuple[int, Any]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def eventually(check: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def webhook(base: str, shop: dict[str, str], event: dict[str, Any], msg_id: str) -> int:
    body = json.dumps(event).encode()
    stamp = int(time.time())
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": standard.sign(shop["webhook_secret"], msg_id, stamp, body),
    }
    return call(base, "POST", f"/v1/shops/{shop['shop_id']}/webhooks/orders", raw=body, headers=headers)[0]


def test_the_contract_end_to_end(base: str) -> None:
    status, shop = call(base, "POST", "/v1/shops", {"name": "E2E Tea"}, key=OPERATOR_KEY)
    assert status == 201
    sid, key = shop["shop_id"], shop["api_key"]
    program = {
        "currency": "CNY",
        "points_per_unit": 1,
        "category_multipliers": {"tobacco": 0},
        "pending_days": 3,
        "clawback": "stop_at_zero",
    }
    assert call(base, "PUT", f"/v1/shops/{sid}/program", program, key=key)[0] == 200
    assert call(base, "PUT", f"/v1/shops/{sid}/program", {"pending_days": -1}, key=key)[1]["error"]["field"] == (
        "pending_days"
    )
    assert (
        call(base, "POST", f"/v1/shops/{sid}/members", {"member_id": "m1", "email": "e2e@example.com"}, key=key)[0]
        == 201
    )

    paid_at = datetime.now(UTC).replace(microsecond=0)
    order = {
        "type": "order.paid",
        "data": {
            "order_id": "A100",
            "member_id": "m1",
            "currency": "CNY",
            "total": "150.00",
            "paid_at": paid_at.isoformat(),
            "lines": [
                {"sku": "tea", "category": "tea", "quantity": 1, "amount": "120.00"},
                {"sku": "cig", "category": "tobacco", "quantity": 1, "amount": "30.00"},
            ],
        },
    }
    assert webhook(base, shop, order, "msg-1") == 202
    assert webhook(base, shop, order, "msg-1") == 202  # the platform retries: still counted once

    def member() -> dict[str, Any]:
        points = call(base, "GET", f"/v1/shops/{sid}/members/m1", key=key)[1]["points"]
        return {name: points[name] for name in ("available", "pending")}

    assert eventually(lambda: member() == {"available": 0, "pending": 120}), member()
    when = (paid_at + timedelta(days=3, seconds=1)).isoformat()
    status, report = call(base, "POST", "/_local/schedules/activate-pending", {"time": when})
    assert status == 200 and report["applied"] == 1
    assert member() == {"available": 120, "pending": 0}

    refund = {"type": "order.refunded", "data": {"order_id": "A100", "refund_id": "R1", "amount": "75.00"}}
    assert webhook(base, shop, refund, "msg-2") == 202
    assert eventually(lambda: member()["available"] == 60), member()

    status, redeemed = call(
        base,
        "POST",
        f"/v1/shops/{sid}/members/m1/redemptions",
        {"points": 50, "reason": "cup"},
        key=key,
        headers={"Idempotency-Key": "cup-1"},
    )
    assert (status, redeemed["balance"]["available"]) == (201, 10)
    assert (
        call(
            base,
            "POST",
            f"/v1/shops/{sid}/members/m1/redemptions",
            {"points": 50, "reason": "cup"},
            key=key,
            headers={"Idempotency-Key": "cup-2"},
        )[0]
        == 409
    )

    status, ledger = call(base, "GET", f"/v1/shops/{sid}/members/m1/ledger", key=key)
    assert status == 200 and sum(entry["points"] for entry in ledger["items"]) == 10
    # Newest first by when each change took effect; the run simulated 3 days ahead is stamped with its own time.
    assert [e["reason"] for e in ledger["items"]] == ["points.activated", "redemption", "order.refunded", "order.paid"]
    assert ledger["items"][0]["at"].startswith((paid_at + timedelta(days=3, seconds=1)).strftime("%Y-%m-%dT%H:%M:%S"))
    assert (
        call(base, "GET", f"/v1/shops/{sid}/members?email=E2E%40example.com", key=key)[1]["items"][0]["member_id"]
        == "m1"
    )


def test_bad_signature_and_unknown_schedule(base: str) -> None:
    status, shop = call(base, "POST", "/v1/shops", {"name": "E2E 2"}, key=OPERATOR_KEY)
    body = b'{"type": "order.cancelled", "data": {"order_id": "x"}}'
    status, _ = call(
        base,
        "POST",
        f"/v1/shops/{shop['shop_id']}/webhooks/orders",
        raw=body,
        headers={"webhook-id": "m", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,Zm9v"},
    )
    assert status == 401
    assert call(base, "POST", "/_local/schedules/nope", {})[0] == 404
    assert call(base, "POST", "/_local/schedules/activate-pending", {"time": "yesterday"})[0] == 400
    status, spec = call(base, "GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")


def test_an_existing_endpoint_is_used_when_given(moto_server: str, tmp_path: Path) -> None:
    """AWS_ENDPOINT_URL set: the stack uses that moto instead of starting its own, creating missing tables."""
    running, url = start_stack({"AWS_ENDPOINT_URL": moto_server}, tmp_path / "stack.log")
    try:
        status, _ = call(url, "POST", "/v1/shops", {"name": "External"}, key=OPERATOR_KEY)
        assert status == 201
        assert "LoyaltyTable" in boto3.client("dynamodb").list_tables()["TableNames"]
        assert "AWS endpoint " + moto_server in (tmp_path / "stack.log").read_text()
    finally:
        stop(running)


def test_coupons_grants_and_a_shopify_order_end_to_end(base: str) -> None:
    """The coupon-grant queue and the platform webhook route work in the local stack as on AWS."""
    status, shop = call(base, "POST", "/v1/shops", {"name": "E2E Shopify", "currency": "USD"}, key=OPERATOR_KEY)
    sid, key = shop["shop_id"], shop["api_key"]
    assert (
        call(base, "PUT", f"/v1/shops/{sid}/integrations/shopify", {"secret": "e2e-shopify-secret"}, key=key)[0] == 200
    )
    order = {
        "id": 9001,
        "currency": "USD",
        "processed_at": datetime.now(UTC).isoformat(),
        "customer": {"id": 77, "email": "buyer@example.com"},
        "line_items": [{"id": 1, "sku": "TEA-1", "price": "25.00", "quantity": 2, "discount_allocations": []}],
    }
    body = json.dumps(order).encode()
    signature = base64.b64encode(hmac.new(b"e2e-shopify-secret", body, hashlib.sha256).digest()).decode()
    headers = {"X-Shopify-Hmac-Sha256": signature, "X-Shopify-Topic": "orders/paid", "X-Shopify-Webhook-Id": "e2e-1"}
    status, answer = call(base, "POST", f"/v1/shops/{sid}/webhooks/shopify", raw=body, headers=headers)
    assert (status, answer["events"]) == (200, ["order.paid"])

    def points() -> int:
        found = call(base, "GET", f"/v1/shops/{sid}/members/shopify-77", key=key)
        return int(found[1]["points"]["available"]) if found[0] == 200 else -1

    assert eventually(lambda: points() == 50), points()  # enrolled from the order, 2 x 25.00
    template = {"name": "5 off", "kind": "amount_off", "amount": "5.00", "stock": 10, "valid_days_after_claim": 30}
    status, created = call(base, "POST", f"/v1/shops/{sid}/coupon-templates", template, key=key)
    assert status == 201
    grants = f"/v1/shops/{sid}/coupon-templates/{created['template_id']}/grants"
    status, grant = call(
        base, "POST", grants, {"member_ids": ["shopify-77"]}, key=key, headers={"Idempotency-Key": "g"}
    )
    assert status == 202
    report = f"/v1/shops/{sid}/coupon-grants/{grant['grant_id']}"
    assert eventually(lambda: call(base, "GET", report, key=key)[1]["status"] == "done")
    coupons = call(base, "GET", f"/v1/shops/{sid}/members/shopify-77/coupons", key=key)[1]["items"]
    cart = {
        "member_id": "shopify-77",
        "lines": [{"sku": "TEA-1", "amount": "25.00"}],
        "coupon_codes": [coupons[0]["code"]],
    }
    status, quote = call(base, "POST", f"/v1/shops/{sid}/checkout/quote", cart, key=key)
    assert (status, quote["payable"]) == (200, "20.00")


def test_a_wallet_filled_by_a_top_up_and_a_gift_card_pays_an_order(base: str) -> None:
    """Stored value in the local stack: the card secret the template declares is there, and the queue settles a
    payment from the wallet."""
    status, shop = call(base, "POST", "/v1/shops", {"name": "E2E Wallet"}, key=OPERATOR_KEY)
    sid, key = shop["shop_id"], shop["api_key"]
    program = {"wallet": {"top_up_plans": [{"pay": "100.00", "bonus": "10.00"}]}}
    assert call(base, "PUT", f"/v1/shops/{sid}/program", program, key=key)[0] == 200
    assert call(base, "POST", f"/v1/shops/{sid}/members", {"member_id": "m1"}, key=key)[0] == 201
    top_up = {"amount": "100.00", "reference": "pay-1"}
    path = f"/v1/shops/{sid}/members/m1/wallet/top-ups"
    status, added = call(base, "POST", path, top_up, key=key, headers={"Idempotency-Key": "t1"})
    assert (status, added["bonus"]) == (201, "10.00")
    batch = {"batch_id": "b1", "value": "50.00", "count": 2, "expires_at": "2100-01-01T00:00:00Z"}
    status, issued = call(base, "POST", f"/v1/shops/{sid}/cards/batches", batch, key=key)
    assert status == 201, issued
    redeem = {"code": issued["codes"][0]}
    path = f"/v1/shops/{sid}/members/m1/cards/redemptions"
    assert call(base, "POST", path, redeem, key=key, headers={"Idempotency-Key": "c1"})[0] == 201
    event = paid_now("w1", "200.00")
    event["data"]["wallet_used"] = "160.00"
    assert webhook(base, shop, event, "wallet-1") == 202

    def total() -> str:
        return str(call(base, "GET", f"/v1/shops/{sid}/members/m1/wallet", key=key)[1]["total"])

    assert eventually(lambda: total() == "0.00"), total()


def paid_now(order_id: str, total: str, member_id: str = "m1") -> dict[str, Any]:
    """An order.paid of one line, paid now."""
    line = {"sku": "tea", "amount": total}
    data = {"order_id": order_id, "member_id": member_id, "currency": "CNY", "total": total, "lines": [line]}
    return {"type": "order.paid", "data": {**data, "paid_at": datetime.now(UTC).isoformat()}}


def test_the_stack_recovers_when_its_aws_endpoint_restarts(tmp_path: Path) -> None:
    """An external moto that restarts empty: 503 while it is down, then the stack makes its resources again. moto
    runs in a process of its own, as an external one would: stopped, its connections (the pollers' long polls
    among them) end with it."""
    from infra.local import moto_server

    port = process.free_port()
    endpoint = moto_server.start_process(port)
    running, url = start_stack({"AWS_ENDPOINT_URL": endpoint}, tmp_path / "stack.log")
    try:
        assert call(url, "POST", "/v1/shops", {"name": "Before"}, key=OPERATOR_KEY)[0] == 201
        moto_server.stop_process()
        assert call(url, "POST", "/v1/shops", {"name": "Down"}, key=OPERATOR_KEY)[0] == 503
        moto_server.start_process(port)
        status, shop = call(url, "POST", "/v1/shops", {"name": "After"}, key=OPERATOR_KEY)
        assert status == 201, shop
        sid, key = shop["shop_id"], shop["api_key"]
        assert call(url, "POST", f"/v1/shops/{sid}/members", {"member_id": "m1"}, key=key)[0] == 201
        order = paid_now("R1", "10.00")
        assert webhook(url, shop, order, "after-1") == 202  # the queues are back too

        def available() -> int:
            return int(call(url, "GET", f"/v1/shops/{sid}/members/m1", key=key)[1]["points"]["available"])

        assert eventually(lambda: available() == 10), available()
    finally:
        stop(running)
        moto_server.stop_process()


def test_paths_are_percent_decoded_as_api_gateway_decodes_them(base: str) -> None:
    status, shop = call(base, "POST", "/v1/shops", {"name": "Decoding"}, key=OPERATOR_KEY)
    sid, key = shop["shop_id"], shop["api_key"]
    assert call(base, "POST", f"/v1/shops/{sid}/members", {"member_id": "王小明"}, key=key)[0] == 201
    status, member = call(base, "GET", f"/v1/shops/{sid}/members/{urllib.parse.quote('王小明')}", key=key)
    assert (status, member["member_id"]) == (200, "王小明")


def test_points_expire_through_the_fanned_out_run(base: str) -> None:
    """expire-points queues one message per day-shard; the stack's consumer runs the shard workers."""
    status, shop = call(base, "POST", "/v1/shops", {"name": "Expiry", "currency": "CNY"}, key=OPERATOR_KEY)
    sid, key = shop["shop_id"], shop["api_key"]
    program = {"expiry": {"purchase": {"policy": "days", "days": 1}}}
    assert call(base, "PUT", f"/v1/shops/{sid}/program", program, key=key)[0] == 200, program
    assert call(base, "POST", f"/v1/shops/{sid}/members", {"member_id": "m1"}, key=key)[0] == 201
    order = paid_now("X1", "30.00")
    assert webhook(base, shop, order, "exp-1") == 202

    def available() -> int:
        return int(call(base, "GET", f"/v1/shops/{sid}/members/m1", key=key)[1]["points"]["available"])

    assert eventually(lambda: available() == 30), available()
    when = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    status, report = call(base, "POST", "/_local/schedules/expire-points", {"time": when})
    assert status == 200 and report["due"] >= 32  # day-shards dispatched (32 shards by default)
    assert eventually(lambda: available() == 0, timeout=60), available()


def loyalty(*args: str) -> subprocess.CompletedProcess[str]:
    """The `loyalty` command, run as its own process."""
    return subprocess.run([sys.executable, "-m", "loyalty.cli", *args], capture_output=True, text=True, check=False)  # noqa: S603


def test_the_loyalty_command_sends_an_order_and_imports_members(base: str, tmp_path: Path) -> None:
    """The quick start's commands, as a newcomer types them: `loyalty send-order` signs for them, `loyalty import`
    sends batches in parallel over HTTP; then a member token reads the member's own account."""
    status, shop = call(base, "POST", "/v1/shops", {"name": "CLI Tea"}, key=OPERATOR_KEY)
    sid, key = shop["shop_id"], shop["api_key"]
    assert call(base, "POST", f"/v1/shops/{sid}/members", {"member_id": "m1"}, key=key)[0] == 201
    assert loyalty("--help").returncode == 0
    sent = loyalty(
        "send-order", "--url", base, "--shop", sid, "--secret", shop["webhook_secret"], "--member", "m1",
        "--amount", "99.00",
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["status"] == 202
    assert eventually(lambda: call(base, "GET", f"/v1/shops/{sid}/members/m1", key=key)[1]["points"]["available"] == 99)

    rows = ["member_id,手机号,积分"] + [f"c{n},139{n:08d},{n}" for n in range(300)] + ["c1,13900000999,5", "bad,12,1"]
    path = tmp_path / "members.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    imported = loyalty("import", str(path), "--url", base, "--shop", sid, "--key", key, "--workers", "4")
    assert imported.returncode == 0, imported.stderr
    report = json.loads(imported.stdout)
    assert (report["created"], report["rejected"]) == (300, 2), report
    assert "rows/s" in imported.stderr  # the progress bar
    assert call(base, "GET", f"/v1/shops/{sid}/members/c7", key=key)[1]["points"]["available"] == 7

    status, token = call(base, "POST", f"/v1/shops/{sid}/members/c7/tokens", {}, key=key)
    assert status == 201
    status, me = call(base, "GET", "/v1/me", key=token["token"])
    assert status == 200 and me["member_id"] == "c7" and me["phone"] == "+8613900000007"
