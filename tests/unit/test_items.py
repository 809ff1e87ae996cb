"""Our DynamoDB (de)serialiser (store/dynamo.py) against boto3's, which it replaces for speed."""

from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from loyalty.store.dynamo import attribute, deserialise, plain, serialise

scalars = st.one_of(
    st.text(max_size=20),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**9), max_value=10**9),
    st.none(),
    st.binary(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@given(values)
def test_what_we_write_is_what_boto3_writes(value: Any) -> None:
    assert attribute(value) == TypeSerializer().serialize(value)


@given(values)
def test_what_we_read_back_is_what_we_wrote(value: Any) -> None:
    read = plain(attribute(value))
    expected = TypeDeserializer().deserialize(TypeSerializer().serialize(value))
    assert read == expected  # Decimal("2") == 2: whole numbers come back as int, others as exact Decimal


def test_whole_numbers_come_back_as_int_and_fractions_stay_exact() -> None:
    item = deserialise(serialise({"points": 120, "rate": Decimal("1.25"), "gone": None}))
    assert item == {"points": 120, "rate": Decimal("1.25")}
    assert type(item["points"]) is int


def test_sets() -> None:
    assert plain(attribute({"b", "a"})) == {"a", "b"}
    assert plain(attribute({1, 2})) == {1, 2}


def test_a_float_is_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        attribute({"amount": 9.99})
