"""Check-ins, behaviours, birthdays, referrals and the tiers' monthly coupons: within caps, once each; all on moto."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty import runtime
from loyalty.domain.coupons import TemplateRequest
from loyalty.domain.errors import Conflict
from loyalty.domain.members import Profile, referral_code
from loyalty.domain.program import Program
from loyalty.runtime import Services
from loyalty.store import points as point_store
from loyalty.store.dynamo import Dynamo
from loyalty.store.keys import MONTHLY_SK, shop_pk
from tests.conftest import Api
from tests.helpers import cancelled, check_invariants, drain, event_model, fresh_shop, paid, refunded, send

SHANGHAI = "Asia/Shanghai"
CHECK_IN = {"points": 5, "streak_bonus": {"3": 10, "7": 30}}
BEHAVIOURS = {
    "review": {"points": 20, "daily_cap": 30},
    "share": {"points": 10, "monthly_cap": 25},
    "profile": {"points": 50, "once": True},
}


def program(**changes: Any) -> Program:
    fields = {"timezone": SHANGHAI, "check_in": CHECK_IN, "behaviours": BEHAVIOURS, "behaviour_monthly_cap": 300}
    return Program.model_validate(fields | changes)


class Clock:
    def __init__(self, at: str) -> None:
        self.now = datetime.fromisoformat(at)

    def __call__(self) -> datetime:
        return self.now

    def set(self, at: str) -> None:
        self.now = datetime.fromisoformat(at)


@pytest.fixture
def shop_id(service: Services, stack: Any) -> str:
    return service.shops.create_shop("Engaged")["shop_id"]


def at(clock: Clock, services: Services) -> Services:
    """The same table, on the given clock."""
    return Services(Dynamo(services.db.table_name), cache_seconds=0, clock=clock)


# ---------------------------------------------------------------- through the API


def test_a_check_in_grants_points_once_a_day_and_lists_the_month(api: Api, shop: dict[str, str]) -> None:
    base, key = f"/v1/shops/{shop['shop_id']}", shop["api_key"]
    api.call("PUT", f"{base}/program", key=key, body=program().model_dump(mode="json"))
    api.call("POST", f"{base}/members", key=key, body={"member_id": "m1"})
    status, first = api.call("POST", f"{base}/members/m1/check-ins", key=key)
    assert status == 201, first
    assert (first["points"], first["streak"], first["bonus"]) == (5, 1, 0)
    status, again = api.call("POST", f"{base}/members/m1/check-ins", key=key)
    assert (status, again["error"]["code"]) == (409, "already_checked_in")
    status, month = api.call("GET", f"{base}/members/m1/check-ins", key=key)
    assert status == 200 and [(d["date"], d["streak"]) for d in month["items"]] == [(first["date"], 1)]
    status, ledger = api.call("GET", f"{base}/members/m1/ledger", key=key)
    (entry,) = ledger["items"]
    assert (entry["reason"], entry["points"], entry["detail"]["base"], entry["detail"]["streak_bonus"]) == (
        "check_in",
        5,
        5,
        0,
    )
    status, member = api.call("GET", f"{base}/members/m1", key=key)
    assert member["points"]["available"] == 5


def test_check_ins_need_a_program_that_offers_them_and_a_member(api: Api, shop: dict[str, str]) -> None:
    base, key = f"/v1/shops/{shop['shop_id']}", shop["api_key"]
    api.call("POST", f"{base}/members", key=key, body={"member_id": "m1"})
    status, body = api.call("POST", f"{base}/members/m1/check-ins", key=key)
    assert (status, body["error"]["code"]) == (409, "not_offered")
    api.call("PUT", f"{base}/program", key=key, body=program().model_dump(mode="json"))
    status, body = api.call("POST", f"{base}/members/nobody/check-ins", key=key)
    assert (status, body["error"]["field"]) == (404, "member_id")
    status, body = api.call("GET", f"{base}/members/m1/check-ins?month=2026-13", key=key)
    assert (status, body["error"]["field"]) == (400, "query.month")


def test_an_activity_earns_once_per_reference_within_its_daily_cap(api: Api, shop: dict[str, str]) -> None:
    base, key = f"/v1/shops/{shop['shop_id']}", shop["api_key"]
    api.call("PUT", f"{base}/program", key=key, body=program().model_dump(mode="json"))
    api.call("POST", f"{base}/members", key=key, body={"member_id": "m1"})

    def activity(behaviour: str, reference: str) -> tuple[int, Any]:
        body = {"behaviour": behaviour, "reference": reference}
        return api.call("POST", f"{base}/members/m1/activities", key=key, body=body)

    status, first = activity("review", "order-1")
    assert (status, first["points"], first["capped"]) == (201, 20, False)
    assert activity("review", "order-1") == (200, first)  # the same review earns once, and answers the same
    status, second = activity("review", "order-2")
    assert (status, second["points"], second["capped"]) == (201, 10, True)  # 30 a day
    assert activity("review", "order-3")[1]["points"] == 0
    status, profile = activity("profile", "completed")
    assert (status, profile["points"]) == (201, 50)
    assert activity("profile", "again") == (200, profile)  # once per member, ever
    status, unknown = activity("dance", "x")
    assert (status, unknown["error"]["field"]) == (404, "behaviour")
    status, _ = api.call("POST", f"{base}/members/m1/activities", key=key, body={"behaviour": "Review!"})
    assert status == 400
    status, ledger = api.call("GET", f"{base}/members/m1/ledger?limit=100", key=key)
    capped = [e for e in ledger["items"] if e["detail"].get("capped_by")]
    assert {e["detail"]["capped_by"] for e in capped} == {"daily_cap"}
    assert sum(e["points"] for e in ledger["items"]) == 80


# ---------------------------------------------------------------- rules over time, on a clock we set


def test_streaks_count_local_days_across_midnight_and_month_ends(service: Services, shop_id: str) -> None:
    service.shops.set_program(shop_id, program())
    service.members.enrol(shop_id, Profile(member_id="m1"))
    clock = Clock("2026-11-29T23:30:00+08:00")
    timed = at(clock, service)
    streaks = []
    # 29 Nov late, 30 Nov just after local midnight (the same UTC day as the first), 1 Dec: three days in a row
    for moment in ("2026-11-29T23:30:00+08:00", "2026-11-30T00:10:00+08:00", "2026-12-01T12:00:00+08:00"):
        clock.set(moment)
        streaks.append(timed.engagement.check_in(shop_id, "m1")["streak"])
    assert streaks == [1, 2, 3]
    clock.set("2026-12-01T23:59:59+08:00")
    with pytest.raises(Conflict) as refused:
        timed.engagement.check_in(shop_id, "m1")
    assert refused.value.code == "already_checked_in"
    clock.set("2026-12-03T09:00:00+08:00")  # 2 December missed: the streak starts again
    again = timed.engagement.check_in(shop_id, "m1")
    assert (again["streak"], again["points"]) == (1, 5)
    november = timed.engagement.check_ins(shop_id, "m1", "2026-11")["items"]
    assert [(d["date"], d["streak"], d["points"]) for d in november] == [("2026-11-29", 1, 5), ("2026-11-30", 2, 5)]
    december = timed.engagement.check_ins(shop_id, "m1", None)["items"]
    assert [(d["date"], d["points"]) for d in december] == [("2026-12-01", 15), ("2026-12-03", 5)]  # day 3: +10
    assert check_invariants(timed, shop_id, "m1")["available"] == 30


def test_behaviour_points_expire_by_their_own_policy_and_are_reminded(service: Services, shop_id: str) -> None:
    service.shops.set_program(
        shop_id,
        program(expiry={"purchase": {"policy": "never"}, "behaviour": {"policy": "days", "days": 90}}),
    )
    service.members.enrol(shop_id, Profile(member_id="m1"))
    clock = Clock("2026-12-03T10:00:00+08:00")
    timed = at(clock, service)
    timed.engagement.check_in(shop_id, "m1")
    timed.engagement.activity(shop_id, "m1", "review", "order-1")
    (lot_a, lot_b) = point_store.lots(service.db, shop_id, "m1")
    assert {lot_a.source, lot_b.source} == {"behaviour"}
    expiry = datetime(2027, 3, 3, 15, 59, 59, tzinfo=UTC)  # 90 days on, to the end of that day in Shanghai
    assert lot_a.expires_at == lot_b.expires_at == expiry
    assert timed.points.expiring(shop_id, "m1") == [(25, expiry)]
    report = timed.runs.expire_points(expiry + timedelta(seconds=1), timed.points)
    assert report.applied == 2
    assert check_invariants(timed, shop_id, "m1")["available"] == 0


# ---------------------------------------------------------------- caps under concurrency and replay


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(["review", "share", "profile"]), st.integers(min_value=0, max_value=5)),
        min_size=1,
        max_size=14,
    ),
    st.integers(min_value=0, max_value=80),
)
def test_caps_are_never_exceeded_whatever_the_order_and_however_often_sent(
    aws: None, activities: list[tuple[str, int]], monthly_cap: int
) -> None:
    with fresh_shop(program(behaviour_monthly_cap=monthly_cap), ["m1"]) as (service, shop_id):
        clock = Clock("2026-12-03T10:00:00+08:00")
        timed = at(clock, service)
        answers: dict[tuple[str, str], Any] = {}
        for behaviour, n in activities + activities[::2]:  # every other one sent twice
            reference = f"r{n}"
            _, answer = timed.engagement.activity(shop_id, "m1", behaviour, reference)
            key = (behaviour, "once" if behaviour == "profile" else reference)
            answers.setdefault(key, answer)
            assert answer == answers[key]  # a repeat answers as the first did
        granted = {(b, r): a["points"] for (b, r), a in answers.items()}
        per = {name: sum(p for (b, _), p in granted.items() if b == name) for name in BEHAVIOURS}
        assert per["review"] <= 30 and per["share"] <= 25 and per["profile"] <= 50
        assert sum(per.values()) <= monthly_cap
        assert check_invariants(timed, shop_id, "m1")["available"] == sum(per.values())


# ---------------------------------------------------------------- member price and campaigns, quoted as earned


def test_the_quote_previews_exactly_what_the_order_then_earns(api: Api, shop: dict[str, str], stack: Stack) -> None:
    base, key = f"/v1/shops/{shop['shop_id']}", shop["api_key"]
    now = datetime.now(UTC)
    running = {"id": "tea-days", "name": "Tea days", "multiplier": 3, "categories": ["tea"]}
    running |= {"from": (now - timedelta(days=1)).isoformat(), "until": (now + timedelta(days=1)).isoformat()}
    tiers = [{"name": "member", "threshold": 0, "multiplier": "1.5", "discount_percent": 10}]
    body = {"tiers": tiers, "campaigns": [running], "category_multipliers": {"ware": "0.5"}}
    assert api.call("PUT", f"{base}/program", key=key, body=body)[0] == 200
    api.call("POST", f"{base}/members", key=key, body={"member_id": "m1"})
    lines = [
        {"sku": "tea-1", "category": "tea", "amount": "100.00"},
        {"sku": "cup", "category": "ware", "amount": "33.33"},
    ]
    status, quote = api.call("POST", f"{base}/checkout/quote", key=key, body={"member_id": "m1", "lines": lines})
    assert status == 200, quote
    # member price: 90.00 and 30.00 (3.333 off, rounded to 3.33); tea x3, ware x0.5, then the tier's 1.5
    assert (quote["member_discount"], quote["payable"]) == ("13.33", "120.00")
    assert quote["points_to_earn"] == int((90 * 3 + 30 * 0.5) * 1.5) == 427
    order = paid("o1", total=quote["payable"], lines=lines, paid_at=now.strftime("%Y-%m-%dT%H:%M:%SZ"))
    send(stack, shop["shop_id"], order)
    drain(stack)
    status, ledger = api.call("GET", f"{base}/members/m1/ledger", key=key)
    (entry,) = ledger["items"]
    assert entry["points"] == quote["points_to_earn"]
    assert entry["detail"]["earning"] == quote["earning"]
    assert entry["detail"]["earning"]["campaigns"] == ["tea-days"]


# ---------------------------------------------------------------- birthdays


def test_a_birthday_is_celebrated_once_a_year_with_points_and_the_tiers_coupons(
    service: Services, shop_id: str
) -> None:
    template = service.coupons.create_template(
        shop_id,
        TemplateRequest.model_validate(
            {
                "name": "Birthday",
                "kind": "amount_off",
                "amount": "10.00",
                "min_spend": "0",
                "stock": 10,
                "per_member_limit": 5,
                "valid_days_after_claim": 30,
            }
        ),
    )
    tiers = [{"name": "member", "threshold": 0, "birthday_coupons": [template.template_id]}]
    service.shops.set_program(shop_id, program(birthday={"points": 88}, tiers=tiers))
    clock = Clock("2026-12-01T10:00:00+08:00")
    timed = at(clock, service)
    timed.members.enrol(shop_id, Profile(member_id="m1", birthday=date(1990, 12, 3)))
    timed.members.enrol(shop_id, Profile(member_id="leap", birthday=date(2000, 2, 29)))
    timed.members.enrol(shop_id, Profile(member_id="none"))
    # 3 December begins at 16:00 UTC on the 2nd in Shanghai: a run just before celebrates nothing, one after does
    assert timed.runs.grant_birthdays(datetime(2026, 12, 2, 15, 59, tzinfo=UTC), timed.engagement).applied == 0
    report = timed.runs.grant_birthdays(datetime(2026, 12, 2, 16, 30, tzinfo=UTC), timed.engagement)
    assert report.applied == 1
    again = timed.runs.grant_birthdays(datetime(2026, 12, 2, 17, 0, tzinfo=UTC), timed.engagement)
    assert again.applied == 0  # a repeated run celebrates nothing twice
    assert check_invariants(timed, shop_id, "m1")["available"] == 88
    assert [c["template_id"] for c in timed.coupons.coupons(shop_id, "m1")] == [template.template_id]
    entries = point_store.ledger_all(service.db, shop_id, "m1")
    assert [(e.reason, e.reference, e.points) for e in entries] == [("birthday", "birthday-2026", 88)]
    # next year's is filed; 29 February is celebrated on 28 February in 2027
    year_later = timed.runs.grant_birthdays(datetime(2027, 12, 3, 1, 0, tzinfo=UTC), timed.engagement)
    assert year_later.applied == 2  # the leap-day member on 28 Feb 2027, m1 on 3 Dec 2027
    assert check_invariants(timed, shop_id, "leap")["available"] == 88
    assert check_invariants(timed, shop_id, "m1")["available"] == 176


# ---------------------------------------------------------------- referrals


def test_a_referral_code_names_its_member_and_a_wrong_one_is_refused(api: Api, shop: dict[str, str]) -> None:
    base, key = f"/v1/shops/{shop['shop_id']}", shop["api_key"]
    status, referrer = api.call("POST", f"{base}/members", key=key, body={"member_id": "m1", "phone": "13800000001"})
    assert status == 201 and len(referrer["referral_code"]) == 8
    body = {"member_id": "m2", "referred_by": referrer["referral_code"]}
    status, referee = api.call("POST", f"{base}/members", key=key, body=body)
    assert (status, referee["referred_by"]) == (201, referrer["referral_code"])
    status, refused = api.call("POST", f"{base}/members", key=key, body={"member_id": "m3", "referred_by": "AAAAAAAA"})
    assert (status, refused["error"]["field"]) == (400, "referred_by")


REFERRAL = {"referrer_points": 100, "referee_points": 50, "monthly_cap": 2}


def referred(services: Services, shop_id: str, referrer: str, referee: str) -> None:
    services.members.enrol(shop_id, Profile(member_id=referee, referred_by=referral_code(shop_id, referrer)))


def pay(services: Services, shop_id: str, order_id: str, member_id: str, at: str, total: str = "10.00") -> None:
    services.orders.apply(shop_id, event_model(paid(order_id, member_id=member_id, total=total, paid_at=at)))


@pytest.mark.parametrize(
    ("after_payment", "rewarded"),
    [
        ([], True),
        ([refunded("o1", "r1", "1.00")], False),  # any refund inside the window voids it
        ([cancelled("o1")], False),
        ([paid("o2", member_id="m2")], True),  # a second order changes nothing
    ],
)
def test_both_are_rewarded_once_the_first_order_is_past_its_window(
    service: Services, shop_id: str, after_payment: list[dict[str, Any]], rewarded: bool
) -> None:
    service.shops.set_program(shop_id, program(referral=REFERRAL, pending_days=7))
    clock = Clock("2026-12-01T10:00:00+08:00")
    timed = at(clock, service)
    timed.members.enrol(shop_id, Profile(member_id="m1"))
    referred(timed, shop_id, "m1", "m2")
    pay(timed, shop_id, "o1", "m2", "2026-12-01T02:00:00Z")
    for event in after_payment:
        timed.orders.apply(shop_id, event_model(event))
    early = timed.runs.activate_pending(datetime(2026, 12, 7, tzinfo=UTC), timed.orders, timed.engagement)
    assert early.rewarded == 0  # the window is still open
    done = timed.runs.activate_pending(datetime(2026, 12, 9, tzinfo=UTC), timed.orders, timed.engagement)
    again = timed.runs.activate_pending(datetime(2026, 12, 9, 1, tzinfo=UTC), timed.orders, timed.engagement)
    assert (done.rewarded, again.rewarded) == (int(rewarded), 0)
    referrer_points = check_invariants(timed, shop_id, "m1")["available"]
    assert referrer_points == (100 if rewarded else 0)
    entries = [e for e in point_store.ledger_all(service.db, shop_id, "m2") if e.reason == "referral"]
    assert [e.points for e in entries] == ([50] if rewarded else [])


def test_a_referrers_rewards_stop_at_the_monthly_cap_but_their_referees_still_earn(
    service: Services, shop_id: str
) -> None:
    service.shops.set_program(shop_id, program(referral=REFERRAL))  # no return window: due at payment
    timed = at(Clock("2026-12-01T10:00:00+08:00"), service)
    timed.members.enrol(shop_id, Profile(member_id="m1"))
    for n in range(3):
        referred(timed, shop_id, "m1", f"r{n}")
        pay(timed, shop_id, f"o{n}", f"r{n}", "2026-12-01T02:00:00Z")
    report = timed.runs.activate_pending(datetime(2026, 12, 2, tzinfo=UTC), timed.orders, timed.engagement)
    assert report.rewarded == 3
    assert check_invariants(timed, shop_id, "m1")["available"] == 200  # two of three: the cap
    for n in range(3):
        assert check_invariants(timed, shop_id, f"r{n}")["available"] == 10 + 50


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from(["refund", "cancel", "other_order"]), st.booleans()),  # (what, inside the window)
        max_size=4,
    )
)
def test_referral_rewards_follow_the_first_order_whatever_happens_to_it(
    aws: None, happenings: list[tuple[str, bool]]
) -> None:
    """Rewarded exactly when nothing took the first order back before its window closed; never twice."""
    with fresh_shop(program(referral=REFERRAL, pending_days=7), ["m1"]) as (service, shop_id):
        timed = at(Clock("2026-12-01T10:00:00+08:00"), service)
        referred(timed, shop_id, "m1", "m2")
        pay(timed, shop_id, "o1", "m2", "2026-12-01T02:00:00Z")
        inside = [what for what, early in happenings if early]
        later = [what for what, early in happenings if not early]

        def happen(whats: list[str], n: int) -> None:
            for k, what in enumerate(whats):
                if what == "refund":
                    timed.orders.apply(shop_id, event_model(refunded("o1", f"r{n}{k}", "1.00")))
                elif what == "cancel":
                    timed.orders.apply(shop_id, event_model(cancelled("o1")))
                else:
                    pay(timed, shop_id, f"o{n}{k}x", "m2", "2026-12-01T03:00:00Z")

        happen(inside, 1)
        window_closed = datetime(2026, 12, 9, tzinfo=UTC)
        first = timed.runs.activate_pending(window_closed, timed.orders, timed.engagement)
        happen(later, 2)
        second = timed.runs.activate_pending(window_closed + timedelta(days=1), timed.orders, timed.engagement)
        expected = not any(what in ("refund", "cancel") for what in inside)
        assert (first.rewarded, second.rewarded) == (int(expected), 0)
        rewards = [e for e in point_store.ledger_all(service.db, shop_id, "m1") if e.reason == "referral"]
        assert [e.points for e in rewards] == ([100] if expected else [])
        check_invariants(timed, shop_id, "m1")
        check_invariants(timed, shop_id, "m2")


# ---------------------------------------------------------------- through the functions, under their own IAM policies


def test_birthdays_and_referrals_run_as_their_functions_would(api: Api, shop: dict[str, str], stack: Stack) -> None:
    """The scheduled functions and the orders consumer make every call of these paths under their own policies in
    template.yaml (the local stack refuses what a policy does not grant)."""
    base, key = f"/v1/shops/{shop['shop_id']}", shop["api_key"]
    template = api.call(
        "POST",
        f"{base}/coupon-templates",
        key=key,
        body={
            "name": "Gift",
            "kind": "amount_off",
            "amount": "5.00",
            "min_spend": "0",
            "stock": 5,
            "per_member_limit": 5,
            "valid_days_after_claim": 30,
        },
    )[1]["template_id"]
    tiers = [{"name": "member", "threshold": 0, "birthday_coupons": [template]}]
    body = {"tiers": tiers, "birthday": {"points": 8}, "referral": {"referrer_points": 100, "referee_points": 50}}
    assert api.call("PUT", f"{base}/program", key=key, body=body)[0] == 200
    now = datetime.now(UTC)
    status, m1 = api.call("POST", f"{base}/members", key=key, body={"member_id": "m1", "birthday": str(now.date())})
    assert status == 201
    body = {"member_id": "m2", "referred_by": m1["referral_code"]}
    assert api.call("POST", f"{base}/members", key=key, body=body)[0] == 201
    send(stack, shop["shop_id"], paid("o1", member_id="m2", paid_at=now.strftime("%Y-%m-%dT%H:%M:%SZ")))
    assert drain(stack) == [{"batchItemFailures": []}]
    run_at = (now + timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    birthdays = lambdas.invoke(lambdas.functions()["GrantBirthdaysFunction"], lambdas.schedule_event(run_at))
    activation = lambdas.invoke(lambdas.functions()["ActivatePendingFunction"], lambdas.schedule_event(run_at))
    assert (birthdays["applied"], activation["rewarded"]) == (1, 1)
    m1_now = api.call("GET", f"{base}/members/m1", key=key)[1]
    assert m1_now["points"]["available"] == 8 + 100
    coupons = api.call("GET", f"{base}/members/m1/coupons", key=key)[1]["items"]
    assert [c["template_id"] for c in coupons] == [template]


# ---------------------------------------------------------------- the tiers' monthly coupons


def coupon_template(api: Api, base: str, key: str, name: str) -> str:
    body = {
        "name": name,
        "kind": "amount_off",
        "amount": "5.00",
        "min_spend": "0",
        "stock": 100,
        "per_member_limit": 24,  # every month's coupon counts against it
        "valid_days_after_claim": 30,
    }
    status, created = api.call("POST", f"{base}/coupon-templates", key=key, body=body)
    assert status == 201, created
    return str(created["template_id"])


def templates_held(api: Api, base: str, key: str, member_id: str) -> list[str]:
    items = api.call("GET", f"{base}/members/{member_id}/coupons", key=key)[1]["items"]
    return sorted(c["template_id"] for c in items)


def run_monthly(stack: Stack, when: str) -> dict[str, Any]:
    """GrantMonthlyCouponsFunction at `when`, then CouponGrantsFunction until the grants queue is empty."""
    report = lambdas.invoke(lambdas.functions()["GrantMonthlyCouponsFunction"], lambdas.schedule_event(when))
    for batch in drain(stack, function_id="CouponGrantsFunction"):
        assert batch == {"batchItemFailures": []}
    return dict(report)


def test_each_tier_gets_its_monthly_coupons_on_the_first_once(api: Api, shop: dict[str, str], stack: Stack) -> None:
    """Through the functions, under their own IAM policies: the run finds the shop on its 1st (Shanghai time),
    lists its members from the MembersIndex, and queues each tier's coupons; the grants function claims them."""
    base, key = f"/v1/shops/{shop['shop_id']}", shop["api_key"]
    welcome, gold_gift = coupon_template(api, base, key, "Welcome back"), coupon_template(api, base, key, "Gold gift")
    tiers = [
        {"name": "normal", "threshold": 0, "monthly_coupons": [welcome]},
        {"name": "gold", "threshold": 1000, "monthly_coupons": [gold_gift, welcome]},
    ]
    assert api.call("PUT", f"{base}/program", key=key, body={"timezone": SHANGHAI, "tiers": tiers})[0] == 200
    for member_id in ("m1", "m2", "m3"):
        assert api.call("POST", f"{base}/members", key=key, body={"member_id": member_id})[0] == 201
    paid_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    send(stack, shop["shop_id"], paid("o1", member_id="m2", total="1500.00", paid_at=paid_at))
    assert drain(stack) == [{"batchItemFailures": []}]
    assert api.call("GET", f"{base}/members/m2", key=key)[1]["tier"] == "gold"

    first = datetime.now(UTC).date().replace(day=1) + timedelta(days=32)  # the next 1st, as set_program filed it
    first = first.replace(day=1)
    begins = datetime(first.year, first.month, first.day, tzinfo=UTC) - timedelta(hours=8)  # midnight in Shanghai
    early = run_monthly(stack, (begins - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert early["applied"] == 0 and templates_held(api, base, key, "m1") == []
    on_time = run_monthly(stack, (begins + timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert on_time["applied"] == 1
    assert templates_held(api, base, key, "m1") == [welcome]
    assert templates_held(api, base, key, "m2") == sorted([gold_gift, welcome])
    assert templates_held(api, base, key, "m3") == [welcome]
    again = run_monthly(stack, (begins + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"))
    assert again["applied"] == 0 and templates_held(api, base, key, "m1") == [welcome]

    following = (first + timedelta(days=32)).replace(day=1)
    next_begins = datetime(following.year, following.month, 1, tzinfo=UTC) - timedelta(hours=8)
    assert run_monthly(stack, (next_begins + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"))["applied"] == 1
    assert templates_held(api, base, key, "m1") == [welcome, welcome]
    assert templates_held(api, base, key, "m2") == sorted([gold_gift, welcome] * 2)


def test_a_month_handled_twice_grants_each_coupon_once(service: Services, shop_id: str, stack: Stack) -> None:
    """A run that stopped after queueing the grants but before filing the next 1st is run again: its grants are
    the same (or, with members listed anew, keyed by member), so nobody gets a month's coupon twice."""
    template = service.coupons.create_template(
        shop_id,
        TemplateRequest.model_validate(
            {"name": "M", "kind": "amount_off", "amount": "5.00", "stock": 100, "valid_days_after_claim": 30}
        ),
    ).template_id
    service.shops.set_program(
        shop_id, Program.model_validate({"tiers": [{"name": "all", "threshold": 0, "monthly_coupons": [template]}]})
    )
    for n in range(5):
        service.members.enrol(shop_id, Profile(member_id=f"m{n}"))
    item = service.db.get(shop_pk(shop_id), MONTHLY_SK)
    assert item is not None
    time = datetime.fromisoformat(item["DueSK"].split("#", 1)[0].replace("Z", "+00:00")) + timedelta(minutes=1)
    queues = runtime.queues()
    first_pass = Services(Dynamo(service.db.table_name), cache_seconds=0)
    assert first_pass.engagement.monthly_coupons(dict(item), time, queues) is True
    service.members.enrol(shop_id, Profile(member_id="late"))  # the second pass lists another page
    refiled = service.db.get(shop_pk(shop_id), MONTHLY_SK)
    assert refiled is not None and refiled["month"] != item["month"]
    service.db.put(refiled | {"month": item["month"]})  # as if the first pass had stopped before re-filing
    assert service.engagement.monthly_coupons(dict(item), time, queues) is True
    for batch in drain(stack, function_id="CouponGrantsFunction"):
        assert batch == {"batchItemFailures": []}
    held = {f"m{n}": len(service.coupons.coupons(shop_id, f"m{n}")) for n in range(5)}
    assert held == {f"m{n}": 1 for n in range(5)}
    assert len(service.coupons.coupons(shop_id, "late")) == 1
