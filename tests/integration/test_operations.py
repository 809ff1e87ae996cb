"""Operations an operator runs by hand: the migration of members enrolled before this release, through
MigrateMembersFunction under its own IAM policy."""

import json
from itertools import chain, repeat
from pathlib import Path

import boto3

from infra.local import lambdas
from infra.local.resources import Stack
from loyalty.domain.members import Profile, referral_code
from loyalty.domain.program import Program
from loyalty.runtime import Services
from loyalty.service.members import Migration
from loyalty.store import members as member_store
from loyalty.store.keys import BIRTHDAY_SK, CONTACT_SK, PROFILE_SK, contact_pk, member_pk

EVENTS = Path(__file__).resolve().parents[2] / "events"


def enrolled_before_this_release(stack: Stack, shop_id: str, member_id: str) -> None:
    """What a member enrolled by an earlier release looks like: no MembersIndex keys, no referral code claimed,
    no birthday filed."""
    client, table = boto3.client("dynamodb"), stack.tables["LoyaltyTable"]
    pk = member_pk(shop_id, member_id)
    client.update_item(
        TableName=table,
        Key={"PK": {"S": pk}, "SK": {"S": PROFILE_SK}},
        UpdateExpression="REMOVE MembersPK, MembersSK",
    )
    client.delete_item(TableName=table, Key={"PK": {"S": pk}, "SK": {"S": BIRTHDAY_SK}})
    code = contact_pk(shop_id, member_store.REFERRAL_CODE, referral_code(shop_id, member_id))
    client.delete_item(TableName=table, Key={"PK": {"S": code}, "SK": {"S": CONTACT_SK}})


def listed(service: Services, shop_id: str) -> list[str]:
    return sorted(member for page in member_store.members_pages(service.db, shop_id) for member, _ in page)


def test_old_members_are_brought_up_to_date_once(service: Services, stack: Stack) -> None:
    shop_id = service.shops.create_shop("Old")["shop_id"]
    service.shops.set_program(shop_id, Program(timezone="Asia/Shanghai"))
    service.members.enrol(shop_id, Profile(member_id="m1", birthday="1990-05-04"))
    service.members.enrol(shop_id, Profile(member_id="m2"))
    service.members.enrol(shop_id, Profile(member_id="m3"))
    for member_id in ("m1", "m2"):
        enrolled_before_this_release(stack, shop_id, member_id)
    assert listed(service, shop_id) == ["m3"]

    function = lambdas.functions()["MigrateMembersFunction"]
    sample = json.loads((EVENTS / "operations_migrate_members.json").read_text())
    report = lambdas.invoke(function, sample)
    assert report == {"migrated": 2, "skipped": 0, "complete": True, "resume": None}
    assert listed(service, shop_id) == ["m1", "m2", "m3"]
    assert service.db.get(member_pk(shop_id, "m1"), BIRTHDAY_SK) is not None  # filed for the birthday run
    assert service.db.get(member_pk(shop_id, "m2"), BIRTHDAY_SK) is None  # no birthday given
    code = referral_code(shop_id, "m1")
    assert member_store.find_member_id(service.db, shop_id, member_store.REFERRAL_CODE, code) == "m1"
    _, referred = service.members.enrol(shop_id, Profile(member_id="m4", referred_by=code))
    assert referred.profile.member_id == "m4"

    assert lambdas.invoke(function, sample)["migrated"] == 0  # repeating it changes nothing


def test_a_migration_short_of_time_says_where_to_resume(service: Services, stack: Stack) -> None:
    shop_id = service.shops.create_shop("Old")["shop_id"]
    for n in range(6):
        service.members.enrol(shop_id, Profile(member_id=f"m{n}"))
        enrolled_before_this_release(stack, shop_id, f"m{n}")
    stops = chain([False, False], repeat(True))  # time runs out after two pages
    first = service.members.bring_up_to_date(Migration(segments=3), lambda: next(stops))
    assert first["complete"] is False and first["resume"] is not None
    rest = lambdas.invoke(lambdas.functions()["MigrateMembersFunction"], first["resume"])
    assert rest["complete"] is True
    assert first["migrated"] + rest["migrated"] == 6
    assert listed(service, shop_id) == [f"m{n}" for n in range(6)]
