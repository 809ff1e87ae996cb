"""Nothing secret or personal reaches X-Ray: what every function's tracer would send is recorded and searched."""

import inspect
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from infra.local import lambdas
from infra.local.resources import Stack
from tests.conftest import OPERATOR_KEY, Api
from tests.helpers import drain, paid, signed_headers


class Recorder:
    """Stands in for the X-Ray provider of Powertools' Tracer: keeps every annotation, metadata and exception."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any]] = []

    @contextmanager
    def in_subsegment(self, name: str, **_: Any) -> Iterator["Recorder"]:
        self.sent.append(("subsegment", name))
        yield self

    def put_annotation(self, key: str, value: Any) -> None:
        self.sent.append(("annotation", {key: value}))

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        self.sent.append(("metadata", {key: value}))

    def add_exception(self, exception: BaseException, stack: Any = None, remote: bool = False) -> None:
        self.sent.append(("exception", repr(exception)))


@pytest.fixture
def recorder(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder()
    for function in lambdas.functions().values():
        module = inspect.getmodule(lambdas.handler(function))
        monkeypatch.setattr(module.tracer, "provider", recorder)  # type: ignore[union-attr]
    return recorder


def test_no_keys_secrets_or_contacts_in_traces(api: Api, stack: Stack, recorder: Recorder) -> None:
    status, shop = api.call("POST", "/v1/shops", key=OPERATOR_KEY, body={"name": "Traced"})
    assert status == 201
    base, key = f"/v1/shops/{shop['shop_id']}", shop["api_key"]
    contact = {"member_id": "m1", "email": "secret.person@example.com", "phone": "+8613812345678"}
    assert api.call("POST", f"{base}/members", key=key, body=contact)[0] == 201
    assert api.call("GET", f"{base}/members/m1", key=key)[0] == 200
    assert api.call("GET", f"{base}/members?email=secret.person@example.com", key=key)[0] == 200
    # A refused body that carries a contact, and a function that raises with it in its arguments.
    assert api.call("POST", f"{base}/members", key=key, body={**contact, "member_id": ""})[0] == 400
    body = json.dumps(paid("A1")).encode()
    headers = signed_headers(shop["webhook_secret"], body)
    assert api.call("POST", f"{base}/webhooks/orders", raw=body, headers=headers)[0] == 202
    drain(stack)

    sent = json.dumps(recorder.sent, default=str)
    assert "## handler" in sent and "ColdStart" in sent  # the tracer did run for every call
    for secret in (key, key.split(".", 1)[1], shop["webhook_secret"], "secret.person", "13812345678", OPERATOR_KEY):
        assert secret not in sent
