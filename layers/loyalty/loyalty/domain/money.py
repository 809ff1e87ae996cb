"""Money as integers in minor units, parsed exactly from decimal strings. Never float.

Amounts arrive in major units as decimal strings ("199.00"); each currency has its own number of
minor digits (ISO 4217): CNY and USD 2, JPY and KRW 0, KWD and BHD 3.
"""

import re
from decimal import Decimal

# ISO 4217 currencies whose minor unit is not 2 digits. Everything else has 2.
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(
        [
            "BIF",
            "CLP",
            "DJF",
            "GNF",
            "ISK",
            "JPY",
            "KMF",
            "KRW",
            "PYG",
            "RWF",
            "UGX",
            "UYI",
            "VND",
            "VUV",
            "XAF",
            "XOF",
            "XPF",
        ],
        0,
    ),
    **dict.fromkeys(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"], 3),
}

_DECIMAL = re.compile(r"^(?P<int>[0-9]{1,15})(?:\.(?P<frac>[0-9]{1,6}))?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def currency_exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def normalise_currency(value: str) -> str:
    code = value.strip().upper()
    if not _CURRENCY.match(code):
        raise ValueError("must be a three-letter ISO 4217 currency code")
    return code


def parse_amount(text: str, currency: str) -> int:
    """'199.00' CNY -> 19900. Refuses negatives, exponents, and digits the currency does not have."""
    match = _DECIMAL.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError("must be a non-negative decimal string such as '199.00'")
    exponent = currency_exponent(currency)
    frac = match["frac"] or ""
    if len(frac.rstrip("0")) > exponent:
        raise ValueError(f"{currency} has {exponent} decimal places; got {text!r}")
    frac = (frac + "0" * exponent)[:exponent]
    scale: int = 10**exponent
    return int(match["int"]) * scale + (int(frac) if frac else 0)


def format_amount(minor: int, currency: str) -> str:
    exponent = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    whole, frac = divmod(abs(minor), 10**exponent)
    return f"{sign}{whole}.{frac:0{exponent}d}" if exponent else f"{sign}{whole}"


def as_major(minor: int, currency: str) -> Decimal:
    """Exact Decimal of a minor-unit amount, for rules that multiply by rates."""
    return Decimal(minor).scaleb(-currency_exponent(currency))
