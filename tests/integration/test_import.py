"""Importing a shop's existing members: POST /members:batch row by row (opening points, tiers, duplicates against
existing members), and `loyalty import` over a messy CSV that crashes halfway and is resumed.

The CSV has 10,000 rows (some 20 ms a row on moto, in process); `make bench-import` measures the same import
against the local stack over HTTP, with four workers."""

import csv
import random
from pathlib import Path
from typing import Any

import pytest

from infra.local.resources import Stack
from loyalty.cli.importer import import_file
from loyalty.runtime import Services
from loyalty.store import points as point_store
from tests.conftest import Api
from tests.helpers import check_invariants

ROWS = 10_000
CRASH_AT = ROWS // 100 // 2  # batches of 100 rows: the importer dies halfway through the file
TIERS = [{"name": "普通", "threshold": "0"}, {"name": "金卡", "threshold": "1000.00"}]


class Shop:
    def __init__(self, api: Api, shop: dict[str, str]) -> None:
        self.api, self.id, self.key = api, shop["shop_id"], shop["api_key"]
        program = {"tiers": TIERS, "expiry": {"import": {"policy": "days", "days": 365}}}
        status, answer = self.call("PUT", "/program", program)
        assert status == 200, answer

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        return self.api.call(method, f"/v1/shops/{self.id}{path}", key=self.key, body=body)

    def send(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        status, answer = self.call("POST", "/members:batch", {"members": rows})
        assert status == 200, answer
        return list(answer["results"])


@pytest.fixture
def old(api: Api, shop: dict[str, str], stack: Stack) -> Shop:
    return Shop(api, shop)


def test_a_batch_imports_each_row_with_its_points_and_tier_once(old: Shop, service: Services) -> None:
    assert old.call("POST", "/members", {"member_id": "here", "phone": "13800000009"})[0] == 201
    rows: list[dict[str, Any]] = [
        {"member_id": "a1", "phone": "138 0000 0001", "points": 500, "tier": "金卡", "birthday": "1990-05-01"},
        {"member_id": "a2", "email": "A2@Example.com", "points": 0},
        {"member_id": "a3", "phone": "+86 138-0000-0009"},  # the phone of an existing member
        {"member_id": "a4", "phone": "12345"},  # not a phone number
        {"member_id": "a5", "tier": "钻石"},  # no such tier
        {"member_id": "a6", "points": -5},
        {"member_id": "a 7"},
    ]
    results = old.send(rows)
    assert [r["status"] for r in results] == [
        "created", "created", "duplicate", "rejected", "rejected", "rejected", "rejected",
    ]  # fmt: skip
    assert [r["error"]["field"] for r in results[2:7]] == ["phone", "phone", "tier", "points", "member_id"]
    again = old.send(rows[:2])
    assert [r["status"] for r in again] == ["exists", "exists"]  # idempotent per row
    a1 = old.call("GET", "/members/a1")[1]
    assert a1["phone"] == "+8613800000001" and a1["tier"] == "金卡" and a1["tier_review_at"]
    assert a1["points"]["available"] == 500 and a1["points"]["expiring"][0]["points"] == 500
    check_invariants(service, old.id, "a1")
    entries = point_store.ledger_all(service.db, old.id, "a1")
    assert [(e.reason, e.points) for e in entries] == [("points.imported", 500)]
    assert old.call("GET", "/members?phone=13800000001")[1]["items"][0]["member_id"] == "a1"
    assert old.call("POST", "/members:batch", {"members": [{"member_id": f"x{n}"} for n in range(101)]})[0] == 400


def messy_csv(path: Path, rows: int) -> dict[str, int]:
    """A shop's export: duplicate ids and phones, bad phones, Chinese tiers, some lines in GB18030 (as an Excel in
    China writes them), a BOM, spaced phones and odd date forms. Returns how many rows each outcome should have:
    the first row with an id, phone or e-mail wins; a row whose phone is not valid is refused before that."""
    rng = random.Random(7)
    expected = {"created": 0, "duplicate": 0, "invalid": 0}
    seen: set[str] = set()
    with path.open("wb") as out:
        out.write("\ufeffmember_id,手机号,email,生日,积分,会员等级\n".encode())
        for n in range(rows):
            member, phone, email, tier = f"u{n}", f"139{n:08d}", f"u{n}@example.com", rng.choice(["普通", "金卡", ""])
            roll, valid = rng.random(), True
            if roll < 0.05 and n:
                member = f"u{n - 1}"  # the previous row's id again
            elif roll < 0.08 and n >= 3:
                phone = f"139{n - 3:08d}"  # an earlier row's phone
            elif roll < 0.10:
                phone, valid = rng.choice(["12", "phone?", "+1 000"]), False
            points = rng.randrange(0, 5000)
            birthday = rng.choice(["1990-01-02", "1991/2/3", "19920304", ""])
            shown = f" {phone[:3]} {phone[3:7]} {phone[7:]} " if valid and rng.random() < 0.3 else phone
            line = f"{member},{shown},{email},{birthday},{points},{tier}\n"
            out.write(line.encode("gb18030" if rng.random() < 0.2 else "utf-8"))
            keys = {f"id:{member}", f"phone:{phone}", f"email:{email}"}
            if not valid:
                expected["invalid"] += 1
            elif keys & seen:
                expected["duplicate"] += 1
            else:
                expected["created"] += 1
                seen |= keys
    return expected


def test_a_messy_csv_is_imported_resumed_after_a_crash_and_nothing_twice(
    old: Shop, service: Services, tmp_path: Path
) -> None:
    path = tmp_path / "members.csv"
    expected = messy_csv(path, ROWS)
    counts = {"batches": 0, "created": 0, "lost": 0}

    def crashing(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = old.send(rows)
        counts["batches"] += 1
        created = sum(result["status"] == "created" for result in results)
        if counts["batches"] == CRASH_AT:  # applied by the API, but the answer never reaches the importer
            counts["lost"] = created
            raise RuntimeError("the laptop's lid was closed")
        counts["created"] += created
        return results

    with pytest.raises(RuntimeError):
        import_file(path, crashing, region="CN", workers=1, progress=None)
    report = import_file(path, old.send, region="CN", workers=1, progress=None)
    assert report["skipped"] > ROWS // 3  # went on from where it stopped
    assert report["existed"] == counts["lost"] > 0  # the batch in flight, sent again: answered, not imported again
    assert counts["created"] + counts["lost"] + report["created"] == expected["created"]
    rejects = list(csv.DictReader((tmp_path / "members.csv.rejects.csv").open(encoding="utf-8")))
    kinds = {"duplicate": 0, "invalid": 0}
    for reject in rejects:
        kinds[reject["reason"].split(":", 1)[0]] += 1
    assert kinds == {"duplicate": expected["duplicate"], "invalid": expected["invalid"]}
    # Members sampled: each once, with at most one opening entry, and the books agree.
    found = 0
    for member_id in random.Random(1).sample([f"u{n}" for n in range(ROWS)], 60):
        status, _ = old.call("GET", f"/members/{member_id}")
        if status == 404:
            continue  # only ever a duplicate's or an invalid row's id
        found += 1
        entries = point_store.ledger_all(service.db, old.id, member_id)
        assert len([e for e in entries if e.reason == "points.imported"]) <= 1
        check_invariants(service, old.id, member_id, orders=False)  # imported members have no orders
    assert found > 45
    rerun = import_file(path, old.send, region="CN", workers=1, progress=None)
    assert rerun["skipped"] == ROWS and rerun["created"] == 0  # a third run has nothing left to do
