"""The points lottery through the API function, under its own IAM policy: the table and its odds, paid draws
within limits, prizes of every kind, the consolation when a prize runs out, and draws anyone can verify."""

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.domain.lottery import Lottery, Outcome, chain, day_digest, pick, proof
from loyalty.runtime import Services
from loyalty.store import points as point_store
from loyalty.store.keys import member_pk, remind_sk
from tests.conftest import Api
from tests.helpers import capture_events, captured, check_invariants, drain, paid, send


class Shop:
    def __init__(self, api: Api, shop: dict[str, str], stack: Stack) -> None:
        self.api, self.id, self.key = api, shop["shop_id"], shop["api_key"]
        assert self.call("POST", "/members", {"member_id": "m1"})[0] == 201
        send(stack, self.id, paid("o1", total="1000.00"))
        assert drain(stack) == [{"batchItemFailures": []}]

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/shops/{self.id}{path}", key=self.key, body=body, headers=headers)

    def lottery(self, prizes: list[dict[str, Any]], consolation: str = "thanks", **fields: Any) -> str:
        body = {"name": "Spin", "cost_points": 10, "daily_limit": 100, "prizes": prizes, "consolation": consolation}
        status, answer = self.call("POST", "/lotteries", body | fields)
        assert status == 201, answer
        return str(answer["lottery_id"])

    def draw(self, lottery_id: str, key: str) -> tuple[int, Any]:
        return self.call("POST", "/members/m1/draws", {"lottery_id": lottery_id}, headers={"Idempotency-Key": key})


@pytest.fixture
def lucky(api: Api, shop: dict[str, str], stack: Stack) -> Shop:
    return Shop(api, shop, stack)


THANKS = {"prize_id": "thanks", "kind": "nothing", "weight": 0}


def test_a_draw_pays_points_gives_the_prize_once_and_can_be_verified(lucky: Shop, service: Services) -> None:
    assert lucky.call("PUT", "/program", {"expiry": {"behaviour": {"policy": "days", "days": 90}}})[0] == 200
    lottery_id = lucky.lottery([{"prize_id": "p50", "kind": "points", "points": 50, "weight": 1}, THANKS])
    status, first = lucky.draw(lottery_id, "k1")
    assert status == 201, first
    assert (first["prize_id"], first["kind"], first["points"], first["cost_points"]) == ("p50", "points", 50, 10)
    assert lucky.draw(lottery_id, "k1") == (200, first)  # a replay answers the same prize
    assert check_invariants(service, lucky.id, "m1")["available"] == 1000 - 10 + 50
    reasons = [(e.reason, e.points) for e in point_store.ledger_all(service.db, lucky.id, "m1")][-2:]
    assert reasons == [("lottery.draw", -10), ("lottery.prize", 50)]
    prize_lot = next(lot for lot in point_store.lots(service.db, lucky.id, "m1") if lot.reference == first["draw_id"])
    reminders = {item["SK"] for item in service.db.query_all(member_pk(lucky.id, "m1"), "REMIND#")}
    assert prize_lot.expires_at is not None and remind_sk(prize_lot.expires_at) in reminders  # reminded like any lot
    # Anyone with the published table and the draw's value can recompute its prize and its proof.
    lottery = service.lotteries.lottery(lucky.id, lottery_id)
    outcome = pick(lottery, first["value"], {})
    assert outcome.prize == first["prize_id"] and outcome.roll == first["roll"]
    assert proof(lottery, first["draw_id"], "m1", first["value"], outcome) == first["proof"]
    mine = lucky.call("GET", "/members/m1/draws")[1]["items"]
    assert [d["draw_id"] for d in mine] == [first["draw_id"]]
    report = lucky.call("GET", f"/lotteries/{lottery_id}/report")[1]
    assert report == {"lottery_id": lottery_id, "draws": 1, "points": 10, "won": {"p50": 1}}
    day = datetime.now(UTC).date().isoformat()
    audit = lucky.call("GET", f"/lotteries/{lottery_id}/audit?day={day}")[1]
    assert audit["draws"] == 1 and len(audit["digest"]) == 64


def test_a_prize_out_of_stock_falls_back_to_the_consolation_and_the_odds_say_so(lucky: Shop) -> None:
    prizes = [{"prize_id": "tea", "kind": "points", "points": 5, "weight": 1, "stock": 2}, THANKS]
    lottery_id = lucky.lottery(prizes)
    odds = {p["prize_id"]: p["chance"] for p in lucky.call("GET", f"/lotteries/{lottery_id}")[1]["prizes"]}
    assert odds == {"tea": "1/1", "thanks": "0/1"}
    won = [lucky.draw(lottery_id, f"k{n}")[1] for n in range(4)]
    assert [d["prize_id"] for d in won] == ["tea", "tea", "thanks", "thanks"]
    assert won[2]["drawn"] == "tea" and won[2]["fell_back"] == "out of stock"
    odds = {p["prize_id"]: p["chance"] for p in lucky.call("GET", f"/lotteries/{lottery_id}")[1]["prizes"]}
    assert odds == {"tea": "0/1", "thanks": "1/1"}


def test_coupon_and_goods_prizes(lucky: Shop, stack: Stack) -> None:
    body = {"name": "5 off", "kind": "amount_off", "amount": "5.00", "stock": 1, "valid_days_after_claim": 30}
    template = lucky.call("POST", "/coupon-templates", body)[1]["template_id"]
    status, item = lucky.call("POST", "/mall/items", {"kind": "goods", "name": "Mug", "points": 1, "stock": 1})
    assert status == 201
    coupon_lottery = lucky.lottery([{"prize_id": "c", "kind": "coupon", "template_id": template, "weight": 1}, THANKS])
    first = lucky.draw(coupon_lottery, "c1")[1]
    assert first["prize_id"] == "c" and "code" in first["coupon"]
    codes = [c["code"] for c in lucky.call("GET", "/members/m1/coupons")[1]["items"]]
    assert codes == [first["coupon"]["code"]]
    second = lucky.draw(coupon_lottery, "c2")[1]  # the template's one coupon is gone: the consolation
    assert (second["prize_id"], second["drawn"]) == ("thanks", "c")
    goods_lottery = lucky.lottery(
        [{"prize_id": "mug", "kind": "goods", "item_id": item["item_id"], "weight": 1}, THANKS]
    )
    won = lucky.draw(goods_lottery, "g1")[1]
    assert (won["kind"], won["item_id"]) == ("goods", item["item_id"])


def test_limits_windows_and_bad_tables_are_refused(lucky: Shop) -> None:
    lottery_id = lucky.lottery([THANKS | {"weight": 1}], daily_limit=2, total_limit=3)
    assert [lucky.draw(lottery_id, k)[0] for k in ("a", "b")] == [201, 201]
    status, refused = lucky.draw(lottery_id, "c")
    assert (status, refused["error"]["code"]) == (409, "limit_reached")
    ended = lucky.lottery([THANKS | {"weight": 1}], until="2020-01-01T00:00:00Z", **{"from": "2019-01-01T00:00:00Z"})
    assert lucky.draw(ended, "d")[1]["error"]["code"] == "not_eligible"
    dear = lucky.lottery([THANKS | {"weight": 1}], cost_points=5000)
    assert lucky.draw(dear, "e")[1]["error"]["code"] == "insufficient_points"
    base = {"name": "x", "cost_points": 1, "daily_limit": 1}
    bad = [
        ({"prizes": [THANKS], "consolation": "thanks"}, "prizes"),  # every weight 0
        ({"prizes": [THANKS | {"weight": 1}], "consolation": "other"}, "consolation"),
        ({"prizes": [THANKS | {"weight": 1, "stock": 3}], "consolation": "thanks"}, "consolation"),
        ({"prizes": [{"prize_id": "p", "kind": "points", "weight": 1}, THANKS], "consolation": "thanks"}, "points"),
    ]
    for fields, named in bad:
        status, answer = lucky.call("POST", "/lotteries", base | fields)
        assert status == 400 and named in answer["error"]["message"], answer


def test_the_draw_follows_the_published_weights() -> None:
    """100,000 simulated draws from `secrets` values: each prize's frequency matches its weight (chi-square,
    p > 0.001), and no limited prize is given more often than its stock."""
    lottery = Lottery.model_validate(
        {
            "lottery_id": "lot_sim",
            "name": "sim",
            "cost_points": 1,
            "daily_limit": 1,
            "prizes": [
                {"prize_id": "big", "kind": "points", "points": 100, "weight": 1},
                {"prize_id": "mid", "kind": "points", "points": 10, "weight": 9},
                {"prize_id": "small", "kind": "points", "points": 1, "weight": 40},
                {"prize_id": "none", "kind": "nothing", "weight": 50},
                {"prize_id": "rare", "kind": "points", "points": 5, "weight": 0, "stock": 0},
            ],
            "consolation": "none",
            "created_at": "2026-01-01T00:00:00Z",
        }
    )
    draws = 100_000
    counts: dict[str, int] = {}
    for _ in range(draws):
        outcome: Outcome = pick(lottery, secrets.token_hex(32), {})
        counts[outcome.prize] = counts.get(outcome.prize, 0) + 1
    weights = {p.prize_id: p.weight for p in lottery.prizes if p.weight}
    total = sum(weights.values())
    chi2 = sum((counts.get(k, 0) - draws * w / total) ** 2 / (draws * w / total) for k, w in weights.items())
    assert chi2 < 16.27  # the 0.999 quantile of chi-square with 3 degrees of freedom
    assert "rare" not in counts
    # A prize that cannot be given falls back, in exactly the proportion of its weight.
    fallback = sum(pick(lottery, secrets.token_hex(32), {"big": "out"}).prize == "big" for _ in range(10_000))
    assert fallback == 0


def test_each_finished_day_is_digested_chained_and_published_once(lucky: Shop, stack: Stack) -> None:
    """Through PublishLotteryDigestsFunction, under its own IAM policy."""
    events = capture_events(stack)
    lottery_id = lucky.lottery([THANKS | {"weight": 1}])
    draws = [lucky.draw(lottery_id, f"k{n}")[1] for n in range(2)]
    table = lucky.call("GET", f"/lotteries/{lottery_id}")[1]["table_digest"]
    today = datetime.now(UTC).date()
    function = lambdas.functions()["PublishLotteryDigestsFunction"]

    def run(day: Any, hour: int) -> dict[str, Any]:
        return dict(lambdas.invoke(function, lambdas.schedule_event(f"{day.isoformat()}T{hour:02d}:30:00Z")))

    assert run(today, 23)["applied"] == 0  # the day is not over (the program's time zone is UTC)
    tomorrow = today + timedelta(days=1)
    assert run(tomorrow, 0)["applied"] == 1
    assert run(tomorrow, 1)["applied"] == 0  # once
    audit = lucky.call("GET", f"/lotteries/{lottery_id}/audit?day={today.isoformat()}")[1]
    expected = day_digest([(d["draw_id"], d["proof"]) for d in draws])
    assert audit | {"lottery_id": None} == {
        "lottery_id": None,
        "day": today.isoformat(),
        "draws": 2,
        "digest": expected,
        "previous": table,
        "chain": chain(table, expected),
    }
    assert run(tomorrow + timedelta(days=1), 0)["applied"] == 1  # a day without draws still extends the chain
    following = lucky.call("GET", f"/lotteries/{lottery_id}/audit?day={tomorrow.isoformat()}")[1]
    assert following["previous"] == audit["chain"] and following["draws"] == 0
    published = [e["detail"] for e in captured(events) if e["detail-type"] == "lottery.digest"]
    assert [p["day"] for p in published] == [today.isoformat(), tomorrow.isoformat()]
