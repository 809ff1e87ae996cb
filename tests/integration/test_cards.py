"""Gift cards: a batch of unguessable codes kept only as digests, each redeemed once into a wallet (or given to
another member once first), attempts limited, and what each batch still owes."""

from typing import Any

import boto3
import pytest

from infra.local.resources import Stack
from loyalty.domain.cards import ATTEMPTS_PER_HOUR, CODE_BITS, normalise
from loyalty.runtime import Services
from tests.conftest import Api
from tests.helpers import check_wallet


@pytest.fixture
def sid(api: Api, shop: dict[str, str], stack: Stack) -> str:
    shop_id = shop["shop_id"]
    status, body = api.call(
        "PUT", f"/v1/shops/{shop_id}/program", key=shop["api_key"], body={"wallet": {"max_balance": "1000.00"}}
    )
    assert status == 200, body
    for member in ("m1", "m2", "m3"):
        api.call("POST", f"/v1/shops/{shop_id}/members", key=shop["api_key"], body={"member_id": member})
    return shop_id


def issue(api: Api, shop: dict[str, str], batch_id: str = "b1", count: int = 3, **extra: Any) -> tuple[int, Any]:
    body = {"batch_id": batch_id, "value": "50.00", "count": count, "expires_at": "2030-01-01T00:00:00Z", **extra}
    return api.call("POST", f"/v1/shops/{shop['shop_id']}/cards/batches", key=shop["api_key"], body=body)


def redeem(api: Api, shop: dict[str, str], code: str, key: str, member: str = "m1") -> tuple[int, Any]:
    return api.call(
        "POST",
        f"/v1/shops/{shop['shop_id']}/members/{member}/cards/redemptions",
        key=shop["api_key"],
        body={"code": code},
        headers={"Idempotency-Key": key},
    )


def transfer(api: Api, shop: dict[str, str], code: str, key: str, to: str, member: str = "m1") -> tuple[int, Any]:
    return api.call(
        "POST",
        f"/v1/shops/{shop['shop_id']}/members/{member}/cards/transfers",
        key=shop["api_key"],
        body={"code": code, "to_member_id": to},
        headers={"Idempotency-Key": key},
    )


def test_a_batch_answers_its_codes_once_more_on_the_same_request_and_stores_only_digests(
    api: Api, stack: Stack, shop: dict[str, str], sid: str
) -> None:
    status, batch = issue(api, shop, count=120)  # more than one transaction's worth of cards
    assert status == 201, batch
    codes = batch["codes"]
    assert len(set(codes)) == 120
    assert all(len(normalise(code)) * 5 == CODE_BITS for code in codes)  # 100 bits each
    assert issue(api, shop, count=120) == (201, batch)
    status, body = issue(api, shop, count=5)
    assert (status, body["error"]["field"]) == (409, "batch_id")
    table = boto3.client("dynamodb").scan(TableName=stack.tables["LoyaltyTable"])["Items"]
    text = str(table)
    assert not any(normalise(code) in text or code in text for code in codes)
    assert sum(1 for item in table if item["SK"]["S"] == "CARD") == 120


def test_a_card_is_redeemed_once_into_the_wallet_and_the_report_shows_the_liability(
    api: Api, service: Services, shop: dict[str, str], sid: str
) -> None:
    codes = issue(api, shop)[1]["codes"]
    status, first = redeem(api, shop, codes[0].lower().replace("-", ""), "k1")  # as a member may type it
    assert status == 201, first
    assert (first["principal"], first["bonus"]) == ("50.00", "0.00")
    assert redeem(api, shop, codes[0], "k1") == (201, first)
    status, body = redeem(api, shop, codes[0], "k2")  # redeemed already: the same answer as a wrong code
    assert (status, body["error"]["field"], body["error"]["reason"]) == (422, "code", "card")
    wrong = redeem(api, shop, "AAAA-BBBB-CCCC-DDDD-EEEE", "k3")
    assert wrong[0] == 422 and wrong[1]["error"]["message"] == body["error"]["message"]
    assert check_wallet(service, sid, "m1") == (5000, 0)
    status, report = api.call("GET", f"/v1/shops/{sid}/cards/batches/b1", key=shop["api_key"])
    assert status == 200
    assert (report["issued_value"], report["redeemed"], report["redeemed_value"], report["outstanding_value"]) == (
        "150.00",
        1,
        "50.00",
        "100.00",
    )
    status, listing = api.call("GET", f"/v1/shops/{sid}/cards/batches", key=shop["api_key"])
    assert [b["batch_id"] for b in listing["items"]] == ["b1"]


def test_a_bonus_batch_fills_the_bonus_and_the_wallet_maximum_holds(
    api: Api, service: Services, shop: dict[str, str], sid: str
) -> None:
    codes = issue(api, shop, batch_id="gift", credit_to="bonus")[1]["codes"]
    status, body = redeem(api, shop, codes[0], "k1")
    assert (status, body["principal"], body["bonus"]) == (201, "0.00", "50.00")
    top_up = {"amount": "910.00", "reference": "pay-1"}
    path = f"/v1/shops/{sid}/members/m1/wallet/top-ups"
    assert api.call("POST", path, key=shop["api_key"], body=top_up, headers={"Idempotency-Key": "t"})[0] == 201
    status, body = redeem(api, shop, codes[1], "k2")  # 960 + 50 > 1000
    assert (status, body["error"]["code"]) == (409, "over_max_balance")
    assert check_wallet(service, sid, "m1") == (91000, 5000)
    assert redeem(api, shop, codes[1], "k3", member="m2")[0] == 201  # the card is still good


def test_attempts_are_limited_per_member_per_hour_right_or_wrong(api: Api, shop: dict[str, str], sid: str) -> None:
    codes = issue(api, shop)[1]["codes"]
    for attempt in range(ATTEMPTS_PER_HOUR):
        assert redeem(api, shop, f"WRONG-{attempt}", f"k{attempt}")[0] == 422
    status, body = redeem(api, shop, codes[0], "k-right")
    assert (status, body["error"]["code"]) == (429, "rate_limited")
    assert redeem(api, shop, codes[0], "k-other", member="m2")[0] == 201  # another member is not limited


def test_a_card_is_given_to_another_member_once_and_only_they_may_redeem_it(
    api: Api, service: Services, shop: dict[str, str], sid: str
) -> None:
    codes = issue(api, shop)[1]["codes"]
    status, given = transfer(api, shop, codes[0], "t1", to="m2")
    assert status == 201, given
    assert (given["from_member_id"], given["to_member_id"]) == ("m1", "m2")
    assert transfer(api, shop, codes[0], "t1", to="m2") == (201, given)
    assert transfer(api, shop, codes[0], "t2", to="m3", member="m2")[0] == 422  # once only
    assert redeem(api, shop, codes[0], "k1", member="m1")[0] == 422  # no longer theirs
    assert redeem(api, shop, codes[0], "k2", member="m2")[0] == 201
    assert transfer(api, shop, codes[1], "t3", to="m1")[0] == 400  # to oneself
    assert transfer(api, shop, codes[1], "t4", to="nobody")[1]["error"]["field"] == "to_member_id"
    assert check_wallet(service, sid, "m2") == (5000, 0)


def test_an_expired_card_cannot_be_redeemed_and_owes_nothing(
    api: Api, service: Services, shop: dict[str, str], sid: str
) -> None:
    from datetime import UTC, datetime

    codes = issue(api, shop)[1]["codes"]
    service.clock = lambda: datetime(2030, 1, 2, tzinfo=UTC)
    service.cards.clock = service.clock
    assert redeem(api, shop, codes[0], "k1")[0] == 422
    status, report = api.call("GET", f"/v1/shops/{sid}/cards/batches/b1", key=shop["api_key"])
    assert status == 200
    assert (report["expired"], report["outstanding_value"]) == (True, "0.00")
