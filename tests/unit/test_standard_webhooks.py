import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from loyalty.webhooks import standard
from loyalty.webhooks.common import SignatureError

VECTOR = json.loads((Path(__file__).parents[1] / "fixtures" / "standardwebhooks_test_vector.json").read_text())
SIGNED_AT = datetime.fromtimestamp(int(VECTOR["headers"]["webhook-timestamp"]), UTC)


def test_reference_vector_signs_and_verifies() -> None:
    body = VECTOR["raw_body"].encode()
    headers = VECTOR["headers"]
    assert (
        standard.sign(VECTOR["secret"], headers["webhook-id"], int(headers["webhook-timestamp"]), body)
        == (headers["webhook-signature"])
    )
    assert standard.verify(VECTOR["secret"], headers, body, SIGNED_AT) == headers["webhook-id"]


def test_one_of_several_signatures_is_enough() -> None:
    headers = {**VECTOR["headers"], "webhook-signature": "v1,AAAA " + VECTOR["headers"]["webhook-signature"]}
    standard.verify(VECTOR["secret"], headers, VECTOR["raw_body"].encode(), SIGNED_AT)


@pytest.mark.parametrize(
    ("change", "now_offset"),
    [
        ({"webhook-signature": "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OF="}, 0),
        ({"webhook-id": "msg_other"}, 0),
        ({"webhook-signature": "v2," + VECTOR["headers"]["webhook-signature"][3:]}, 0),
        ({}, 301),  # stale
        ({}, -301),  # from the future
        ({"webhook-timestamp": "yesterday"}, 0),
        ({"webhook-signature": ""}, 0),
    ],
)
def test_tampering_and_stale_deliveries_are_refused(change: dict[str, str], now_offset: int) -> None:
    headers = {**VECTOR["headers"], **change}
    now = datetime.fromtimestamp(SIGNED_AT.timestamp() + now_offset, UTC)
    with pytest.raises(SignatureError):
        standard.verify(VECTOR["secret"], headers, VECTOR["raw_body"].encode(), now)


def test_a_changed_byte_in_the_body_is_refused() -> None:
    with pytest.raises(SignatureError):
        standard.verify(VECTOR["secret"], VECTOR["headers"], VECTOR["raw_body"].replace("2", "3").encode(), SIGNED_AT)
