"""Stored value: top-ups with their bonus, paying with the wallet, refunds of both, savings, and the ledger that
explains every balance (principal and bonus apart)."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.runtime import Services
from loyalty.store import wallet as wallet_store
from tests.conftest import Api
from tests.helpers import (
    cancelled,
    capture_events,
    captured,
    check_invariants,
    check_wallet,
    dead_letters,
    drain,
    paid,
    refunded,
    run_expiry,
    send,
)

WALLET = {
    "top_up_plans": [{"pay": "100.00", "bonus": "10.00"}, {"pay": "500.00", "bonus": "80.00"}],
    "draw": "principal_first",
    "min_top_up": "10.00",
    "max_balance": "5000.00",
}


@pytest.fixture
def sid(api: Api, shop: dict[str, str], stack: Stack) -> str:
    shop_id = shop["shop_id"]
    status, body = api.call("PUT", f"/v1/shops/{shop_id}/program", key=shop["api_key"], body={"wallet": WALLET})
    assert status == 200, body
    for member in ("m1", "m2"):
        api.call("POST", f"/v1/shops/{shop_id}/members", key=shop["api_key"], body={"member_id": member})
    return shop_id


def top_up(api: Api, shop: dict[str, str], amount: str, reference: str, key: str, member: str = "m1") -> Any:
    return api.call(
        "POST",
        f"/v1/shops/{shop['shop_id']}/members/{member}/wallet/top-ups",
        key=shop["api_key"],
        body={"amount": amount, "reference": reference},
        headers={"Idempotency-Key": key},
    )


def wallet(api: Api, shop: dict[str, str], member: str = "m1") -> Any:
    status, body = api.call("GET", f"/v1/shops/{shop['shop_id']}/members/{member}/wallet", key=shop["api_key"])
    assert status == 200, body
    return {k: body[k] for k in ("principal", "bonus", "total")}


def pay_with_wallet(order_id: str, total: str, used: str, **extra: Any) -> dict[str, Any]:
    event = paid(order_id, total=total, paid_at="2026-11-20T10:00:00Z")
    event["data"]["wallet_used"] = used
    event["data"].update(extra)
    return event


def test_a_top_up_earns_the_largest_plan_reached_and_a_replay_answers_the_same(
    api: Api, service: Services, shop: dict[str, str], sid: str
) -> None:
    status, first = top_up(api, shop, "300.00", "pay-1", "k1")
    assert (status, first) == (201, {"reference": "pay-1", "principal": "300.00", "bonus": "10.00"})
    assert top_up(api, shop, "300.00", "pay-1", "k1") == (201, first)
    status, body = top_up(api, shop, "200.00", "pay-1", "k1")
    assert (status, body["error"]["field"]) == (409, "Idempotency-Key")
    # The same payment under another key is the same top-up: it happens once.
    assert top_up(api, shop, "300.00", "pay-1", "k2") == (201, first)
    assert top_up(api, shop, "600.00", "pay-2", "k3")[1]["bonus"] == "80.00"
    assert top_up(api, shop, "50.00", "pay-3", "k4")[1]["bonus"] == "0.00"
    assert wallet(api, shop) == {"principal": "950.00", "bonus": "90.00", "total": "1040.00"}
    assert check_wallet(service, sid, "m1") == (95000, 9000)
    status, ledger = api.call("GET", f"/v1/shops/{sid}/members/m1/wallet/ledger", key=shop["api_key"])
    assert status == 200
    assert [(e["reason"], e["reference"], e["principal"], e["bonus"]) for e in ledger["items"]] == [
        ("top_up.paid", "pay-3", "50.00", "0.00"),
        ("top_up.paid", "pay-2", "600.00", "80.00"),
        ("top_up.paid", "pay-1", "300.00", "10.00"),
    ]
    # A top-up earns no points: the money earns them when it is spent.
    assert service.members.member(sid, "m1").balance.available == 0


def test_top_ups_the_program_refuses(api: Api, shop: dict[str, str], sid: str) -> None:
    status, body = top_up(api, shop, "5.00", "small", "k1")
    assert (status, body["error"]["field"]) == (400, "amount")
    status, body = top_up(api, shop, "10.001", "odd", "k2")
    assert (status, body["error"]["field"]) == (400, "amount")
    assert top_up(api, shop, "4900.00", "big", "k3")[0] == 201
    status, body = top_up(api, shop, "100.00", "over", "k4")
    assert (status, body["error"]["code"]) == (409, "over_max_balance")
    # The same payment again (another key, or its platform's webhook) is the top-up already made, not one too many.
    assert top_up(api, shop, "4900.00", "big", "k6") == (
        201,
        {"reference": "big", "principal": "4900.00", "bonus": "80.00"},
    )
    status, body = top_up(api, shop, "10.00", "x", "k5", member="nobody")
    assert status == 404
    assert wallet(api, shop) == {"principal": "4900.00", "bonus": "80.00", "total": "4980.00"}


def test_a_program_without_a_wallet_refuses_top_ups_and_wallet_payments(
    api: Api, service: Services, stack: Stack, shop: dict[str, str]
) -> None:
    sid = shop["shop_id"]
    api.call("POST", f"/v1/shops/{sid}/members", key=shop["api_key"], body={"member_id": "m1"})
    status, body = top_up(api, shop, "100.00", "p", "k")
    assert (status, body["error"]["field"]) == (400, "wallet")
    send(stack, sid, pay_with_wallet("o1", "50.00", "10.00"))
    drain(stack)
    [parked] = dead_letters(stack)
    assert "wallet" in parked["MessageAttributes"]["reason"]["StringValue"]


def test_paying_with_the_wallet_draws_principal_first_and_refunds_give_back_in_proportion(
    api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    top_up(api, shop, "100.00", "pay-1", "k1")  # 100 principal + 10 bonus
    send(stack, sid, pay_with_wallet("o1", "200.00", "105.00"))  # 100 principal + 5 bonus, 95 by card
    drain(stack)
    assert wallet(api, shop) == {"principal": "0.00", "bonus": "5.00", "total": "5.00"}
    assert service.members.member(sid, "m1").balance.available == 200  # the whole order earns points
    send(stack, sid, refunded("o1", "r1", "100.00"))  # half the order: half of each draw comes back
    drain(stack)
    assert wallet(api, shop) == {"principal": "50.00", "bonus": "7.50", "total": "57.50"}
    send(stack, sid, cancelled("o1"))
    drain(stack)
    assert wallet(api, shop) == {"principal": "100.00", "bonus": "10.00", "total": "110.00"}
    check_wallet(service, sid, "m1")
    check_invariants(service, sid, "m1")


def test_a_payment_the_wallet_cannot_cover_is_parked_with_its_reason_and_changes_nothing(
    api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    top_up(api, shop, "20.00", "pay-1", "k1")
    send(stack, sid, pay_with_wallet("o1", "50.00", "20.01"))
    send(stack, sid, pay_with_wallet("o2", "10.00", "10.01"), delivery_id="d2")  # more than its own total
    drain(stack)
    parked = sorted(
        (m["MessageAttributes"]["code"]["StringValue"], m["MessageAttributes"]["reason"]["StringValue"])
        for m in dead_letters(stack)
    )
    # Too little in the wallet is retried (its top-up may be yet to arrive), then parked; more than the order's
    # total never will apply: parked at once.
    assert parked[0][0] == "insufficient_balance" and "the wallet holds 20.00, not 20.01" in parked[0][1]
    assert parked[1][0] == "invalid" and "data.wallet_used" in parked[1][1]
    assert wallet(api, shop) == {"principal": "20.00", "bonus": "0.00", "total": "20.00"}
    assert service.members.member(sid, "m1").balance.available == 0


def test_a_top_up_refund_returns_unspent_principal_forfeits_bonus_in_proportion_and_stops_at_zero(
    api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    top_up(api, shop, "500.00", "pay-1", "k1")  # 500 + 80
    send(stack, sid, refunded("pay-1", "r1", "100.00"))  # a fifth: 100 principal back, 16 bonus forfeited
    drain(stack)
    assert wallet(api, shop) == {"principal": "400.00", "bonus": "64.00", "total": "464.00"}
    send(stack, sid, pay_with_wallet("o1", "450.00", "450.00"))  # 400 principal + 50 bonus
    drain(stack)
    send(stack, sid, refunded("pay-1", "r2", "400.00"))  # the rest: nothing of the principal is left to take
    drain(stack)
    assert wallet(api, shop) == {"principal": "0.00", "bonus": "0.00", "total": "0.00"}
    status, ledger = api.call("GET", f"/v1/shops/{sid}/members/m1/wallet/ledger", key=shop["api_key"])
    assert status == 200
    last = ledger["items"][0]
    assert (last["reason"], last["principal"], last["bonus"]) == ("top_up.refunded", "0.00", "-14.00")
    assert last["detail"]["principal_not_recovered"] == 40000 and last["detail"]["bonus_not_recovered"] == 5000
    check_wallet(service, sid, "m1")


def test_a_platform_top_up_and_the_api_top_up_of_one_payment_happen_once(
    api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    event = paid("pay-9", total="100.00", paid_at="2026-11-20T10:00:00Z")
    event["data"]["top_up"] = True
    send(stack, sid, event)
    send(stack, sid, event, delivery_id="d2")
    drain(stack)
    assert top_up(api, shop, "100.00", "pay-9", "k1") == (
        201,
        {"reference": "pay-9", "principal": "100.00", "bonus": "10.00"},
    )
    assert wallet(api, shop)["total"] == "110.00"
    status, body = top_up(api, shop, "100.00", "pay-9", "k2", member="m2")  # another member's reference
    assert (status, body["error"]["field"]) == (409, "reference")


def test_savings_count_coupons_points_member_price_and_bonus_spent_by_month(
    api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    api.call(
        "PUT",
        f"/v1/shops/{sid}/program",
        key=shop["api_key"],
        body={
            "wallet": {**WALLET, "draw": "bonus_first"},
            "points_offset": {"points_per_unit": 10, "max_share": "0.5"},
        },
    )
    top_up(api, shop, "100.00", "pay-1", "k1")
    send(stack, sid, pay_with_wallet("o1", "30.00", "30.00"))  # 10 bonus + 20 principal
    drain(stack)
    send(stack, sid, pay_with_wallet("o2", "30.00", "30.00", paid_at="2026-12-02T10:00:00Z"), delivery_id="d2")
    send(stack, sid, paid("o3", total="40.00", paid_at="2026-12-03T10:00:00Z"), delivery_id="d3")
    drain(stack)
    event = paid("o4", total="20.00", paid_at="2026-12-04T10:00:00Z")
    event["data"]["points_used"] = 100  # 10.00 of the order paid by points
    send(stack, sid, event, delivery_id="d4")
    drain(stack)
    status, body = api.call("GET", f"/v1/shops/{sid}/members/m1/savings", key=shop["api_key"])
    assert status == 200, body
    assert body["total"] == {
        "coupons": "0.00",
        "points": "10.00",
        "member_price": "0.00",
        "bonus": "10.00",
        "total": "20.00",
    }
    assert [(m["month"], m["bonus"], m["points"]) for m in body["months"]] == [
        ("2026-11", "10.00", "0.00"),
        ("2026-12", "0.00", "10.00"),
    ]
    send(stack, sid, cancelled("o1"), delivery_id="d5")  # a cancelled order saved nothing
    drain(stack)
    body = api.call("GET", f"/v1/shops/{sid}/members/m1/savings", key=shop["api_key"])[1]
    assert body["total"]["bonus"] == "0.00" and body["total"]["total"] == "10.00"
    check_wallet(service, sid, "m1")
    check_invariants(service, sid, "m1")


def test_tiers_measured_on_top_ups(api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str) -> None:
    api.call(
        "PUT",
        f"/v1/shops/{sid}/program",
        key=shop["api_key"],
        body={
            "wallet": WALLET,
            "tier_metric": "top_up",
            "tiers": [{"name": "normal", "threshold": 0}, {"name": "gold", "threshold": 1000}],
        },
    )
    send(stack, sid, paid("o1", total="2000.00", paid_at="2026-11-20T10:00:00Z"))  # spend does not count
    drain(stack)
    assert service.members.member(sid, "m1").tier.tier in (None, "normal")
    top_up(api, shop, "600.00", "pay-1", "k1")
    assert service.members.member(sid, "m1").tier.tier in (None, "normal")
    top_up(api, shop, "400.00", "pay-2", "k2")
    assert service.members.member(sid, "m1").tier.tier == "gold"


def test_the_checkout_quote_takes_wallet_used(api: Api, shop: dict[str, str], sid: str) -> None:
    top_up(api, shop, "100.00", "pay-1", "k1")
    quote = {"member_id": "m1", "lines": [{"sku": "tea", "amount": "150.00"}], "wallet_used": "105.00"}
    status, body = api.call("POST", f"/v1/shops/{sid}/checkout/quote", key=shop["api_key"], body=quote)
    assert status == 200, body
    assert body["wallet"] == {"used": "105.00", "principal": "100.00", "bonus": "5.00"}
    assert body["payable"] == "45.00"
    status, body = api.call(
        "POST", f"/v1/shops/{sid}/checkout/quote", key=shop["api_key"], body={**quote, "wallet_used": "111.00"}
    )
    assert (status, body["error"]["code"], body["error"]["field"]) == (409, "insufficient_balance", "wallet_used")


def top_up_event(order_id: str, total: str, paid_at: str) -> dict[str, Any]:
    event = paid(order_id, total=total, paid_at=paid_at)
    event["data"]["top_up"] = True
    return event


def test_bonus_expires_by_the_programs_bonus_expiry_and_is_drawn_oldest_expiring_first(
    api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    wallet_rules = {**WALLET, "draw": "bonus_first", "bonus_expiry": {"policy": "days", "days": 10}}
    assert api.call("PUT", f"/v1/shops/{sid}/program", key=shop["api_key"], body={"wallet": wallet_rules})[0] == 200
    now = datetime.now(UTC)
    send(stack, sid, top_up_event("t-old", "100.00", (now - timedelta(days=5)).isoformat()))  # bonus 10, 5 days left
    send(stack, sid, top_up_event("t-new", "100.00", (now - timedelta(days=1)).isoformat()), delivery_id="d2")
    drain(stack)
    assert check_wallet(service, sid, "m1") == (20000, 2000)
    send(stack, sid, pay_with_wallet("o1", "15.00", "15.00"))  # bonus first: the older lot's 10, then 5
    drain(stack)
    lots = wallet_store.bonus_lots(service.db, sid, "m1")
    assert [(lot.reference, lot.remaining) for lot in lots] == [("t-new", 500)]
    send(stack, sid, cancelled("o1"))  # back to lots like those it came from: the older expiry kept
    drain(stack)
    lots = wallet_store.bonus_lots(service.db, sid, "m1")
    assert sorted((lot.expires_at, lot.remaining) for lot in lots)[0][1] == 1000
    assert check_wallet(service, sid, "m1") == (20000, 2000)
    report = run_expiry(stack, now + timedelta(days=7))  # the older grant's 10 days are over, not the newer's
    assert report["applied"] == 1
    assert check_wallet(service, sid, "m1") == (20000, 1000)
    status, ledger = api.call("GET", f"/v1/shops/{sid}/members/m1/wallet/ledger", key=shop["api_key"])
    assert status == 200
    assert (ledger["items"][0]["reason"], ledger["items"][0]["bonus"]) == ("bonus.expired", "-10.00")
    assert run_expiry(stack, now + timedelta(days=7))["applied"] == 0  # a repeated run lapses nothing twice
    # The newer grant's lot and the lot its 5 came back to share an expiry: both lapse now.
    assert run_expiry(stack, now + timedelta(days=12))["applied"] == 2
    assert check_wallet(service, sid, "m1") == (20000, 0)


def test_a_top_up_refund_forfeits_bonus_from_its_own_grant_first(
    api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    now = datetime.now(UTC)
    send(stack, sid, top_up_event("t1", "100.00", (now - timedelta(days=2)).isoformat()))
    send(stack, sid, top_up_event("t2", "500.00", (now - timedelta(days=1)).isoformat()), delivery_id="d2")
    drain(stack)
    send(stack, sid, refunded("t2", "r1", "250.00"))  # half: 40 of its 80 bonus, from its own lot
    drain(stack)
    lots = {lot.reference: lot.remaining for lot in wallet_store.bonus_lots(service.db, sid, "m1")}
    assert lots == {"t1": 1000, "t2": 4000}
    assert check_wallet(service, sid, "m1") == (35000, 5000)


def test_members_are_reminded_once_of_bonus_about_to_expire(
    api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    wallet_rules = {**WALLET, "bonus_expiry": {"policy": "days", "days": 40}}
    body = {"wallet": wallet_rules, "expiry_reminder_days": 30}
    assert api.call("PUT", f"/v1/shops/{sid}/program", key=shop["api_key"], body=body)[0] == 200
    consent = {"marketing_consent": True}  # a reminder is marketing: only to a member who agreed to it
    assert api.call("PATCH", f"/v1/shops/{sid}/members/m1", key=shop["api_key"], body=consent)[0] == 200
    url = capture_events(stack)
    now = datetime.now(UTC)
    send(stack, sid, top_up_event("t1", "100.00", now.isoformat()))  # 10 bonus, expiring in 40 days
    send(stack, sid, top_up_event("t2", "500.00", now.isoformat()), delivery_id="d2")  # 80, the same instant
    drain(stack)

    def remind(at: datetime) -> dict[str, Any]:
        event = lambdas.schedule_event(at.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return dict(lambdas.invoke(lambdas.functions()["RemindExpiringFunction"], event))

    assert remind(now + timedelta(days=5))["applied"] == 0  # 35 days ahead: not yet
    assert remind(now + timedelta(days=11))["applied"] == 1  # one reminder for the one expiry instant
    [sent] = captured(url)
    assert sent["detail-type"] == "wallet.bonus_expiring"
    assert (sent["detail"]["member_id"], sent["detail"]["bonus"], sent["detail"]["currency"]) == ("m1", "90.00", "CNY")
    assert remind(now + timedelta(days=12))["applied"] == 0


def test_bonus_given_back_to_two_lots_of_one_expiry_lapses_whole(
    api: Api, service: Services, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    """Two grants a year apart in earning but of one expiry: a cancelled payment gives back to two lots with the
    same expiry and reference; the run must lapse both, one entry each."""
    wallet_rules = {**WALLET, "draw": "bonus_first", "bonus_expiry": {"policy": "end_of_next_year"}}
    assert api.call("PUT", f"/v1/shops/{sid}/program", key=shop["api_key"], body={"wallet": wallet_rules})[0] == 200
    year = datetime.now(UTC).year
    send(stack, sid, top_up_event("t1", "100.00", f"{year}-01-02T10:00:00Z"))
    send(stack, sid, top_up_event("t2", "100.00", f"{year}-01-03T10:00:00Z"), delivery_id="d2")
    drain(stack)
    send(stack, sid, pay_with_wallet("o1", "20.00", "20.00"))  # the whole bonus, from both lots
    drain(stack)
    send(stack, sid, cancelled("o1"))
    drain(stack)
    assert len(wallet_store.bonus_lots(service.db, sid, "m1")) == 2
    report = run_expiry(stack, datetime(year + 2, 1, 2, tzinfo=UTC))
    assert report["applied"] == 2
    assert check_wallet(service, sid, "m1") == (20000, 0)
