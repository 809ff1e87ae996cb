"""Stored-value cards (储值卡, gift cards): a batch of codes, each redeemable once into a member's wallet. Pure.

A card's code is 100 random-looking bits, derived from the deployment's secret, the shop, the batch and the card's
number (HMAC-SHA256), written as 20 Crockford base-32 characters in groups of four. Deriving them lets a batch's
creation be repeated or resumed and answer the same codes, while the table keeps only each code's digest: reading
the table never gives a redeemable code, and guessing one is a 2^-100 chance per try (tries are limited too).
"""

import hashlib
import hmac
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from loyalty.domain.errors import DomainError
from loyalty.domain.ledger import BusinessTime
from loyalty.domain.orders import DecimalString, Identifier

CODE_BITS = 100
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
MAX_CARDS = 1000  # per batch
ATTEMPTS_PER_HOUR = 10  # redemptions and transfers a member may try in an hour, right or wrong


class RateLimited(DomainError):
    """Too many attempts; try again later (429)."""

    code = "rate_limited"


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_id: Identifier = Field(description="the batch's id: creating it again answers the same cards")
    value: DecimalString = Field(description="each card's value, in major units")
    count: Annotated[int, Field(ge=1, le=MAX_CARDS)]
    expires_at: BusinessTime = Field(description="a card not redeemed by then can no longer be")
    credit_to: Literal["principal", "bonus"] = Field(
        default="principal",
        description="which part of the wallet a card fills: principal (a card the member paid for) or bonus (given)",
    )


class Card(BaseModel):
    """One card as stored (under its code's digest)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    batch_id: str
    value: int  # minor units
    credit_to: Literal["principal", "bonus"]
    expires_at: datetime
    status: Literal["issued", "redeemed"] = "issued"
    holder: str | None = None  # after a transfer: the only member who may redeem it
    transferred_from: str | None = None
    version: int = 0

    def redeemable_by(self, member_id: str, at: datetime) -> bool:
        return self.status == "issued" and at < self.expires_at and self.holder in (None, member_id)

    def transferable_by(self, member_id: str, at: datetime) -> bool:
        return self.redeemable_by(member_id, at) and self.transferred_from is None


def card_code(secret: bytes, shop_id: str, batch_id: str, number: int) -> str:
    """The code of card `number` of a batch: XXXX-XXXX-XXXX-XXXX-XXXX."""
    mac = hmac.new(secret, f"{shop_id}\x00{batch_id}\x00{number}".encode(), hashlib.sha256).digest()
    bits = int.from_bytes(mac, "big") >> (256 - CODE_BITS)
    chars = "".join(_ALPHABET[(bits >> (5 * i)) & 31] for i in reversed(range(CODE_BITS // 5)))
    return "-".join(chars[i : i + 4] for i in range(0, len(chars), 4))


def normalise(code: str) -> str:
    """A code as a member may type it: any case, with or without dashes and spaces, O for 0 and I or L for 1."""
    return code.upper().replace("-", "").replace(" ", "").translate(_READ_AS)


def looks_like_a_code(normalised: str) -> bool:
    return len(normalised) == CODE_BITS // 5 and all(char in _ALPHABET for char in normalised)
