"""Members: who they are (normalised contact details) and what the API shows of them."""

import base64
import hashlib
import hmac
import re
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from loyalty.domain.ledger import Balance
from loyalty.domain.orders import Identifier
from loyalty.domain.tiers import MemberTier

_PHONE_NOISE = re.compile(r"[\s().-]")
_PHONE = re.compile(r"^\+?[0-9]{5,20}$")
# Deliberately loose: one @, something on each side, a dot in the domain. Shops own the address.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL.match(email):
        raise ValueError("must be an e-mail address")
    return email


def normalise_phone(value: str) -> str:
    """A first look, without a region: '+86 138-0013-8000' -> '+8613800138000'. Raises ValueError for anything
    that cannot be a phone number. `e164` makes it the one form contacts are kept in."""
    phone = _PHONE_NOISE.sub("", value.strip())
    if not _PHONE.match(phone):
        raise ValueError("must be a phone number of 5 to 20 digits, optionally starting with +")
    return phone


def e164(value: str, region: str) -> str:
    """The number in E.164 ('+8613800138000'), read as dialled in `region` (ISO 3166 code, the program's) unless
    it starts with +, so '138 0013 8000', '+86 138 0013 8000' and '0138-0013-8000' are one member's phone. Raises
    ValueError for a number that is not valid where it says it is (Google's libphonenumber metadata)."""
    import phonenumbers

    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("must be a phone number") from exc
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"not a valid phone number (read in region {region} unless it starts with +)")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# A phone as first read (normalise_phone; contacts are kept in E.164, see e164) and an e-mail address as kept.
Phone = Annotated[str, Field(max_length=32), AfterValidator(normalise_phone)]
Email = Annotated[str, Field(max_length=254), AfterValidator(normalise_email)]


class Profile(BaseModel):
    """What a shop tells us about a member at enrolment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    member_id: Identifier
    phone: Phone | None = None
    email: Email | None = None
    birthday: date | None = None
    referred_by: Annotated[str, Field(pattern=r"^[A-Z2-7]{8}$")] | None = Field(
        default=None, description="the referral code of the member who invited them"
    )
    marketing_consent: bool = Field(
        default=False,
        description="they agreed to marketing (reminders, offers): opt-in, as PIPL and GDPR ask; "
        "transactional events are published whatever it says",
    )

    def in_region(self, region: str) -> "Profile":
        """The profile with its phone in E.164, as contacts are kept (ValueError for a phone not valid there)."""
        return self if self.phone is None else self.model_copy(update={"phone": e164(self.phone, region)})

    def contacts(self) -> dict[str, str]:
        """The unique contact details, by kind."""
        return {kind: value for kind, value in (("email", self.email), ("phone", self.phone)) if value}


class ProfileChange(BaseModel):
    """What a shop (or, for their consent, the member) changes of a profile: only the fields given; a contact or
    birthday given as null is removed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phone: Phone | None = None
    email: Email | None = None
    birthday: date | None = None
    marketing_consent: bool | None = None

    def applied_to(self, profile: Profile) -> Profile:
        changes = {name: getattr(self, name) for name in self.model_fields_set}
        if changes.get("marketing_consent") is None:
            changes.pop("marketing_consent", None)  # consent is given or withdrawn, never unknown
        return profile.model_copy(update=changes)


def referral_code(shop_id: str, member_id: str) -> str:
    """A member's referral code: 8 characters of base32 (no 0, 1, 8 or 9 to misread), the same every time."""
    digest = hashlib.sha256(f"{shop_id}|{member_id}".encode()).digest()
    return base64.b32encode(digest).decode()[:8]


def pseudonym(key: str, member_id: str) -> str:
    """The member as the audit trail names them: a keyed digest of the id (the key is the shop's, kept in the
    table and never shown), so the trail can be searched by member without holding the id in the clear."""
    return "mbr_" + hmac.new(key.encode(), member_id.encode(), hashlib.sha256).hexdigest()[:24]


class ConsentRecord(BaseModel):
    """When marketing consent was last given or withdrawn, and by whom: "enrolment", "member" (their own token),
    or "key:<key id>" (a staff key)."""

    given: bool
    at: datetime
    by: str


class Member(BaseModel):
    profile: Profile
    balance: Balance
    enrolled_at: datetime
    tier: MemberTier = MemberTier()
    referrer: str | None = None  # the member who referred them (from `referred_by`), whose reward waits
    first_order: str | None = None  # the first order they paid (set once; it decides the referral reward)
    erased_at: datetime | None = None  # erased: `profile.member_id` is their pseudonym, and nothing personal is left
    consent: ConsentRecord | None = None  # the last change of their marketing consent
