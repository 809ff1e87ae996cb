from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loyalty.domain.money import as_major, currency_exponent, format_amount, parse_amount


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("199.00", "CNY", 19900),
        ("199", "CNY", 19900),
        ("0.1", "USD", 10),
        ("0.10", "USD", 10),
        ("1999", "JPY", 1999),
        ("1999.0", "JPY", 1999),
        ("1.234", "KWD", 1234),
        ("0.01", "CNY", 1),
        ("123456789012345.99", "CNY", 12345678901234599),
    ],
)
def test_parse_amount_is_exact(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize("text", ["-1.00", "1e3", "1.001", "", " ", "1,00", "NaN", "0x10", "１２"])
def test_parse_amount_refuses_what_is_not_an_exact_amount(text: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(text, "CNY")


def test_zero_decimal_currency_refuses_fractions() -> None:
    with pytest.raises(ValueError, match="0 decimal places"):
        parse_amount("100.5", "JPY")


@given(st.integers(min_value=0, max_value=10**14), st.sampled_from(["CNY", "JPY", "KWD", "USD"]))
def test_format_and_parse_round_trip(minor: int, currency: str) -> None:
    text = format_amount(minor, currency)
    assert parse_amount(text, currency) == minor
    assert as_major(minor, currency) == Decimal(text)
    assert currency_exponent(currency) in (0, 2, 3)
