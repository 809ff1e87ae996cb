"""Members: enrolment, look-up by contact, and the member a shop platform's buyer is."""

import hashlib
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import BaseModel, ConfigDict, Field

from loyalty.domain.access import Caller
from loyalty.domain.engagement import day_starts, local_day, next_birthday
from loyalty.domain.errors import Conflict, InvalidInput, NotFound, Retryable
from loyalty.domain.members import ConsentRecord, Member, Profile, ProfileChange, e164
from loyalty.domain.orders import Customer
from loyalty.domain.program import Program
from loyalty.service.shops import Shops
from loyalty.store import members as member_store
from loyalty.store.dynamo import Dynamo
from loyalty.store.keys import member_of

logger = Logger(child=True)


class Migration(BaseModel):
    """Where a migration of members enrolled before this release stands: a parallel Scan's segments, taken one
    after the other. Invoke MigrateMembersFunction with `{"segments": n}`, then again with its `resume` until it
    answers `complete`."""

    model_config = ConfigDict(extra="forbid")
    segments: int = Field(default=4, ge=1, le=1000)
    segment: int = Field(default=0, ge=0)
    start: dict[str, Any] | None = None  # the last key scanned in `segment`


class Members:
    def __init__(self, db: Dynamo, shops: Shops, *, clock: Callable[[], datetime], shards: int) -> None:
        self.db = db
        self.shops = shops
        self.clock = clock
        self.shards = shards

    def enrol(self, shop_id: str, profile: Profile) -> tuple[bool, Member]:
        """A member with a birthday is filed for the birthday run from the start (its next birthday in the
        program's time zone), whatever the program rewards today: a birthday rule added later finds them."""
        now = self.clock()
        birthday = None
        if profile.phone is not None or profile.birthday is not None:  # the program says how to read them
            profile, birthday = self.as_kept(self.shops.program(shop_id), profile, now)
        referrer = self._referrer(shop_id, profile) if profile.referred_by else None
        return member_store.enrol(
            self.db, shop_id, profile, now, birthday=birthday, referrer=referrer, shards=self.shards
        )

    @staticmethod
    def as_kept(program: Program, profile: Profile, now: datetime) -> tuple[Profile, tuple[date, datetime] | None]:
        """The profile as it is kept (its phone in E.164, read in the program's region; InvalidInput naming `phone`
        otherwise), and its next birthday in the program's time zone with the instant it begins (the birthday run's),
        if it has one."""
        try:
            profile = profile.in_region(program.phone_region)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="phone") from exc
        if profile.birthday is None:
            return profile, None
        day = next_birthday(profile.birthday, local_day(now, program.timezone))
        return profile, (day, day_starts(day, program.timezone))

    def change_profile(self, shop_id: str, member_id: str, change: ProfileChange, *, by: Caller) -> Member:
        """Change contacts, birthday or marketing consent, for the caller `by` (a member changes only their own,
        through /v1/me). A member may give or withdraw their consent and set a birthday they have not given yet
        (a birthday once given is changed by the shop's staff: it earns rewards). A birthday already celebrated
        this year is not celebrated again under a new date before next year. A change of consent is recorded
        with when and by whom (the proof of consent PIPL and GDPR ask a shop to keep)."""
        by_member = by.kind == "member"
        for _ in range(3):
            member = self.member(shop_id, member_id)
            if member.erased_at is not None:  # a pseudonym holds no one's details, and never will again
                raise Conflict("this member was erased", field="member_id", code="erased")
            if by_member and "birthday" in change.model_fields_set and member.profile.birthday is not None:
                raise Conflict("a birthday once given is changed by the shop", field="birthday")
            program = self.shops.program(shop_id)
            after, _ = self.as_kept(program, change.applied_to(member.profile), self.clock())
            birthday = None
            if after.birthday is not None and after.birthday != member.profile.birthday:  # to be filed anew
                _, filed = member_store.birthday_state(self.db, shop_id, member_id)
                today = local_day(self.clock(), program.timezone)
                # A birthday filed for next year means this year's was celebrated: start from that year.
                start = max(today, date(filed.year, 1, 1)) if filed is not None else today
                day = next_birthday(after.birthday, start)
                birthday = (day, day_starts(day, program.timezone))
            now, consent = self.clock(), member.consent
            if after.marketing_consent != member.profile.marketing_consent:
                by_whom = "member" if by_member else f"key:{by.key_id or by.kind}"
                consent = ConsentRecord(given=after.marketing_consent, at=now, by=by_whom)
            try:
                member_store.change_profile(
                    self.db,
                    shop_id,
                    member.profile,
                    after,
                    birthday=birthday,
                    consent=consent if consent is not member.consent else None,
                    now=now,
                    shards=self.shards,
                )
            except Retryable:
                continue  # changed meanwhile: read it again
            return member.model_copy(update={"profile": after, "consent": consent})  # as written, not read back
        raise Retryable(f"member {member_id} kept changing; try again")

    def _referrer(self, shop_id: str, profile: Profile) -> str:
        """The member a `referred_by` code names; never the new member themselves (the same phone or e-mail)."""
        assert profile.referred_by is not None
        referrer_id = member_store.find_member_id(self.db, shop_id, member_store.REFERRAL_CODE, profile.referred_by)
        referrer = member_store.get_member(self.db, shop_id, referrer_id) if referrer_id else None
        if referrer is None:
            raise InvalidInput("no member of this shop has this referral code", field="referred_by")
        theirs, mine = referrer.profile.contacts(), profile.contacts()
        if referrer_id == profile.member_id or any(theirs.get(kind) == value for kind, value in mine.items()):
            raise InvalidInput("a member cannot refer themselves", field="referred_by")
        return referrer.profile.member_id

    def bring_up_to_date(self, work: Migration, should_stop: Callable[[], bool]) -> dict[str, Any]:
        """Give every member enrolled before the MembersIndex, referral codes and birthdays what enrolment gives
        them today (store/members.bring_up_to_date), found by a Scan: a one-off an operator runs after deploying
        this release, never a schedule. Safe to repeat; `resume` says where to go on when it stopped for time."""
        now = self.clock()
        migrated = skipped = 0
        segment, start = work.segment, work.start
        while segment < work.segments:
            if should_stop():
                resume = Migration(segments=work.segments, segment=segment, start=start)
                return {"migrated": migrated, "skipped": skipped, "complete": False, "resume": resume.model_dump()}
            profiles, start = member_store.unlisted_members(
                self.db, segment=segment, segments=work.segments, start=start
            )
            for item in profiles:
                shop_id, member_id = member_of(item["PK"])
                birthday = None
                if item.get("birthday"):
                    timezone = self.shops.program(shop_id).timezone
                    day = next_birthday(date.fromisoformat(item["birthday"]), local_day(now, timezone))
                    birthday = (day, day_starts(day, timezone))
                done = member_store.bring_up_to_date(
                    self.db, shop_id, member_id, birthday=birthday, now=now, shards=self.shards
                )
                migrated, skipped = migrated + done, skipped + (not done)
            if start is None:
                segment += 1
        return {"migrated": migrated, "skipped": skipped, "complete": True, "resume": None}

    def member(self, shop_id: str, member_id: str) -> Member:
        member = member_store.get_member(self.db, shop_id, member_id)
        if member is None:
            raise NotFound(f"member {member_id} not found", field="member_id")
        return member

    def find(self, shop_id: str, kind: str, normalised: str) -> list[Member]:
        member_id = member_store.find_member_id(self.db, shop_id, kind, normalised)
        found = member_store.get_member(self.db, shop_id, member_id) if member_id else None
        return [found] if found else []

    def _phone(self, shop_id: str, phone: str | None) -> str | None:
        """A platform's phone as contacts are kept; None if it is not valid in the program's region."""
        try:
            return e164(phone, self.shops.program(shop_id).phone_region) if phone else None
        except ValueError:
            return None

    def for_customer(self, shop_id: str, customer: Customer) -> str:
        """The member a platform's buyer is, by the shop's match rules in order; enrolled if none matches and the
        shop allows it. Raises Retryable when none matches (the shop may enrol them yet)."""
        own_id = _member_id(customer)
        phone = self._phone(shop_id, customer.phone)
        for kind in customer.match:
            is_member = kind == "customer_id" and customer.customer_id and own_id
            if is_member and own_id and member_store.get_member(self.db, shop_id, own_id, consistent=False):
                return own_id
            value = {"email": customer.email, "phone": phone}.get(kind)
            if value:
                found = member_store.find_member_id(self.db, shop_id, kind, value)
                if found:
                    return found
        if not customer.auto_enrol:
            raise Retryable(f"no member matches this {customer.platform} customer, and the shop does not auto-enrol")
        if own_id is None:
            raise InvalidInput("the order names no customer, e-mail or phone", field="data.customer")
        # Contact details another member holds are left off: they identify that member, not this buyer.
        for contacts in ({"email": customer.email, "phone": phone}, {"email": customer.email}, {}):
            try:
                self.enrol(shop_id, Profile(member_id=own_id, **{k: v for k, v in contacts.items() if v}))
            except Conflict as exc:
                if exc.field == "member_id":  # enrolled meanwhile, with these or other details: it is them
                    return own_id
                continue
            logger.info(
                "member enrolled from a platform order", extra={"shop_id": shop_id, "platform": customer.platform}
            )
            return own_id
        raise NotFound("could not enrol this customer", field="data.customer")


def _member_id(customer: Customer) -> str | None:
    """Our member id for a platform buyer: the platform and its customer id, or (for guests who left an e-mail or
    phone) a digest of that, so the id carries no personal data."""
    if customer.customer_id:
        return f"{customer.platform}-{customer.customer_id}"[:128]
    contact = customer.email or customer.phone
    if contact:
        return f"{customer.platform}-guest-{hashlib.sha256(contact.encode()).hexdigest()[:24]}"
    return None
