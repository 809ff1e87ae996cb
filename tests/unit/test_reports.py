"""The figures a change moves (domain/reports.py), on the days it moves them."""

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from loyalty.domain.reports import Change, deltas

UTC_ZONE = ZoneInfo("UTC")


def profile(tier: str, since: str) -> dict[str, object]:
    return {"type": "member", "enrolled_at": "2026-01-05T10:00:00Z", "tier": tier, "tier_since": since}


def test_a_member_moving_tier_moves_one_member_between_tiers_on_the_day_of_the_move() -> None:
    change = Change(
        pk="SHOP#s#MEMBER#m",
        seq="1".zfill(40),
        old=profile("gold", "2026-02-01T00:00:00Z"),
        new=profile("silver", "2026-06-10T08:00:00Z"),
        at=datetime(2026, 6, 10, 8, tzinfo=UTC),
    )
    assert deltas(change, UTC_ZONE) == {(date(2026, 6, 10), "tier:gold"): -1, (date(2026, 6, 10), "tier:silver"): 1}


def test_a_level_the_new_image_drops_moves_on_the_day_of_the_change() -> None:
    wallet = {"type": "wallet", "principal": 500, "bonus": 0, "updated_at": "2026-03-01T00:00:00Z"}
    emptied = wallet | {"principal": 0, "bonus": 20, "updated_at": "2026-03-09T00:00:00Z"}
    change = Change(
        pk="SHOP#s#MEMBER#m", seq="2".zfill(40), old=wallet, new=emptied, at=datetime(2026, 3, 9, tzinfo=UTC)
    )
    assert deltas(change, UTC_ZONE) == {
        (date(2026, 3, 9), "wallet_principal"): -500,
        (date(2026, 3, 9), "wallet_bonus"): 20,
    }


def test_an_item_moved_by_an_erasure_moves_nothing() -> None:
    entry = {"type": "ledger", "points": 80, "reason": "order.paid", "at": "2026-04-01T10:00:00Z"}
    removed = Change(pk="SHOP#s#MEMBER#m", seq="3".zfill(40), old=entry, new=None, at=datetime(2026, 9, 1, tzinfo=UTC))
    added = Change(
        pk="SHOP#s#MEMBER#mbr_x", seq="4".zfill(40), old=None, new=entry, at=datetime(2026, 9, 1, tzinfo=UTC)
    )
    total: dict[tuple[date, str], int] = {}
    for change in (removed, added):
        for key, amount in deltas(change, UTC_ZONE).items():
            total[key] = total.get(key, 0) + amount
    assert not any(total.values())
