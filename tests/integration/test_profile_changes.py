"""A member's profile after enrolment: contacts, birthday and marketing consent, changed by the shop's staff or
(consent, a first birthday) by the member."""

from datetime import UTC, date, datetime
from typing import Any

import pytest

from infra.local.resources import Stack
from loyalty.runtime import Services
from loyalty.store import members as member_store
from tests.conftest import Api


class Shop:
    def __init__(self, api: Api, shop: dict[str, str]) -> None:
        self.api, self.id, self.key = api, shop["shop_id"], shop["api_key"]
        assert self.call("PUT", "/program", {"birthday": {"points": 20}})[0] == 200
        assert (
            self.call("POST", "/members", {"member_id": "m1", "phone": "13800138000", "email": "a@example.com"})[0]
            == 201
        )
        assert self.call("POST", "/members", {"member_id": "m2", "phone": "13900139000"})[0] == 201

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/shops/{self.id}{path}", key=self.key, body=body)

    def found(self, **contact: str) -> list[str]:
        ((kind, value),) = contact.items()
        status, answer = self.call("GET", f"/members?{kind}={value}")
        assert status == 200
        return [member["member_id"] for member in answer["items"]]


@pytest.fixture
def tea(api: Api, shop: dict[str, str], stack: Stack) -> Shop:
    return Shop(api, shop)


def test_contacts_move_with_the_change_and_another_members_are_refused(tea: Shop) -> None:
    status, member = tea.call("PATCH", "/members/m1", {"phone": "+86 137 0013 7000", "email": None})
    assert status == 200 and member["phone"] == "+8613700137000" and "email" not in member
    assert tea.found(phone="13700137000") == ["m1"]
    assert tea.found(phone="13800138000") == [] and tea.found(email="a@example.com") == []  # freed
    status, answer = tea.call("PATCH", "/members/m1", {"phone": "13900139000"})  # m2's
    assert status == 409 and answer["error"]["field"] == "phone"
    assert tea.call("GET", "/members/m1")[1]["phone"] == "+8613700137000"  # nothing changed
    status, answer = tea.call("PATCH", "/members/m1", {"phone": "12"})
    assert status == 400 and answer["error"]["field"] == "phone"
    assert tea.call("PATCH", "/members/m1", {"name": "Ann"})[0] == 400  # not a field we keep
    assert tea.call("PATCH", "/members/nobody", {"marketing_consent": True})[0] == 404
    assert tea.call("POST", "/members", {"member_id": "m3", "phone": "13800138000"})[0] == 201  # the old one is free


def test_a_changed_birthday_is_filed_anew_and_not_celebrated_twice_in_a_year(tea: Shop, service: Services) -> None:
    today = datetime.now(UTC).date()
    status, member = tea.call("PATCH", "/members/m1", {"birthday": "1990-02-03"})
    assert status == 200 and member["birthday"] == "1990-02-03"
    _, filed = member_store.birthday_state(service.db, tea.id, "m1")
    assert filed is not None and (filed.month, filed.day) == (2, 3) and filed >= today
    # As if this year's birthday had been celebrated: the next one is filed for next year.
    celebrated_next = date(today.year + 1, 2, 3)
    tx = service.db.transaction()
    member_store.add_next_birthday(
        tx,
        tea.id,
        "m1",
        celebrated_next,
        datetime(today.year + 1, 2, 2, 16, tzinfo=UTC),
        now=datetime.now(UTC),
        shards=service.shards,
        replacing=filed,
    )
    service.db.commit(tx)
    assert tea.call("PATCH", "/members/m1", {"birthday": "1990-12-31"})[0] == 200
    _, refiled = member_store.birthday_state(service.db, tea.id, "m1")
    assert refiled == date(today.year + 1, 12, 31)  # not this year's 31 December: this year's was had
    assert tea.call("PATCH", "/members/m1", {"birthday": None})[1].get("birthday") is None
    assert member_store.birthday_state(service.db, tea.id, "m1")[1] is None  # nothing left for the run


def test_a_member_gives_and_withdraws_consent_and_gives_a_birthday_once(tea: Shop) -> None:
    status, answer = tea.call("POST", "/members/m2/tokens", {})
    token = answer["token"]
    assert tea.call("GET", "/members/m2")[1]["marketing_consent"] is False  # opt-in: not asked, not given

    def me(body: Any) -> tuple[int, Any]:
        return tea.api.call("PATCH", "/v1/me", key=token, body=body)

    assert me({"marketing_consent": True}) == (200, tea.call("GET", "/members/m2")[1])
    view = tea.call("GET", "/members/m2")[1]
    assert view["marketing_consent"] is True
    assert (view["consent"]["given"], view["consent"]["by"]) == (True, "member")  # the proof: when, and by whom
    enrolment = {"member_id": "m2", "phone": "13900139000"}
    assert tea.call("POST", "/members", enrolment)[0] == 200  # the shop enrolling on each login: still a replay
    assert tea.call("GET", "/members/m2")[1]["marketing_consent"] is True  # which changes nothing
    assert me({"marketing_consent": False})[1]["marketing_consent"] is False
    status, view = tea.call("PATCH", "/members/m2", {"marketing_consent": True})  # on the phone, at the shop's desk
    assert status == 200 and view["consent"]["by"] == f"key:{tea.key.split('.')[1]}"
    assert tea.call("PATCH", "/members/m2", {"email": "m2@example.com"})[1]["consent"] == view["consent"]  # unmoved
    assert me({"marketing_consent": False})[1]["consent"]["by"] == "member"
    assert me({"birthday": "1995-07-08"})[1]["birthday"] == "1995-07-08"
    status, answer = me({"birthday": "1995-07-09"})  # it earns rewards: changed by the shop, not the member
    assert status == 409 and answer["error"]["field"] == "birthday"
    status, answer = me({"phone": "13100131000"})  # contacts are the shop's to change (it verified them)
    assert status == 400
