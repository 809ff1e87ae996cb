"""Members: who they are (normalised contact details) and what the API shows of them."""

import base64
import hashlib
import hmac
import re
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class Profile(BaseModel):
    """What a shop tells us about a member at enrolment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    member_id: Identifier
    phone: Annotated[str, Field(max_length=32)] | None = None
    email: Annotated[str, Field(max_length=254)] | None = None
    birthday: date | None = None
    referred_by: Annotated[str, Field(pattern=r"^[A-Z2-7]{8}$")] | None = Field(
        default=None, description="the referral code of the member who invited them"
    )

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return normalise_phone(value) if value is not None else None

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return normalise_email(value) if value is not None else None

    def in_region(self, region: str) -> "Profile":
        """The profile with its phone in E.164, as contacts are kept (ValueError for a phone not valid there)."""
        return self if self.phone is None else self.model_copy(update={"phone": e164(self.phone, region)})

    def contacts(self) -> dict[str, str]:
        """The unique contact details, by kind."""
        return {kind: value for kind, value in (("email", self.email), ("phone", self.phone)) if value}


def referral_code(shop_id: str, member_id: str) -> str:
    """A member's referral code: 8 characters of base32 (no 0, 1, 8 or 9 to misread), the same every time."""
    digest = hashlib.sha256(f"{shop_id}|{member_id}".encode()).digest()
    return base64.b32encode(digest).decode()[:8]


def pseudonym(key: str, member_id: str) -> str:
    """The member as the audit trail names them: a keyed digest of the id (the key is the shop's, kept in the
    table and never shown), so the trail can be searched by member without holding the id in the clear."""
    return "mbr_" + hmac.new(key.encode(), member_id.encode(), hashlib.sha256).hexdigest()[:24]


class Member(BaseModel):
    profile: Profile
    balance: Balance
    enrolled_at: datetime
    tier: MemberTier = MemberTier()
    referrer: str | None = None  # the member who referred them (from `referred_by`), whose reward waits
    first_order: str | None = None  # the first order they paid (set once; it decides the referral reward)
