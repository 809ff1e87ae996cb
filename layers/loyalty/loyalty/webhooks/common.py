"""What every platform's webhook mapping shares: the result, exact money, buyers, lines. Pure: no AWS, no clock."""

import base64
import contextlib
import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from loyalty.domain.integrations import Integration
from loyalty.domain.members import normalise_email, normalise_phone
from loyalty.domain.money import format_amount, parse_amount


class SignatureError(Exception):
    """The delivery is not provably from the shop's platform: answer 401 and enqueue nothing."""


class MappingError(Exception):
    """The payload lacks or garbles what we need (400 naming the field)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass
class Delivery:
    """One verified delivery, as our order events. `ignored` says why a delivery carries nothing for us."""

    delivery_id: str
    events: list[dict[str, Any]] = field(default_factory=list)
    ignored: str | None = None


def hmac_base64(secret: str, raw: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), raw, hashlib.sha256).digest()).decode()


def same(expected: str, given: str | None) -> bool:
    """Constant-time comparison of two signatures."""
    return given is not None and hmac.compare_digest(expected.encode(), given.strip().encode())


def minor(value: Any, currency: str, where: str) -> int:
    """A platform's decimal string (or JSON number, read as Decimal) in major units -> exact minor units."""
    try:
        text = format(Decimal(str(value)), "f") if isinstance(value, int | float | Decimal) else str(value)
        negative = text.strip().startswith("-")
        amount = parse_amount(text.strip().lstrip("-"), currency)
    except (ValueError, InvalidOperation) as exc:
        raise MappingError(f"{where}: {exc}", where) from exc
    return -amount if negative else amount


def money(amount: int, currency: str) -> str:
    return format_amount(max(amount, 0), currency)


_SKU_NOISE = re.compile(r"[#\s]+")


def sku(value: Any, fallback: str) -> str:
    """A key-safe SKU: platforms allow spaces and '#', and guests' custom lines have none."""
    text = _SKU_NOISE.sub("_", str(value or "").strip())[:128]
    return text or fallback[:128]


def customer(
    integration: Integration, *, customer_id: Any = None, email: Any = None, phone: Any = None
) -> dict[str, Any] | None:
    """The buyer for our order event, or None for a guest the shop cannot credit. Contact details that are not
    valid (or are encrypted, as Youzan's newer pushes are) are dropped, never guessed."""
    found: dict[str, Any] = {"platform": integration.platform}
    if customer_id not in (None, "", 0, "0"):
        found["customer_id"] = sku(customer_id, "")
    for kind, value, check in (("email", email, normalise_email), ("phone", phone, normalise_phone)):
        if isinstance(value, str) and value.strip():
            with contextlib.suppress(ValueError):
                found[kind] = check(value)
    if len(found) == 1:
        return None
    return found | {"match": integration.member_match, "auto_enrol": integration.auto_enrol}


def lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}
