"""Shared fixtures. AWS is always moto: one mock for the session (botocore models parse once), and a fresh
table and queues per test, built from template.yaml, so each test starts empty and small (moto copies the
whole table on every transaction item)."""

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.local.offline import use_in_process_moto

use_in_process_moto(
    POWERTOOLS_METRICS_NAMESPACE="LoyaltyTest",
    POWERTOOLS_SERVICE_NAME="loyalty-test",
    POWERTOOLS_LOG_LEVEL="WARNING",
    DUE_SHARDS="4",  # see the stack fixture
)

from infra.local import strict

strict.install()  # IAM per function and AWS's limits, on every client made from here on

from moto import mock_aws

from infra.local import moto_patches

moto_patches.apply()  # as the local stack does: a transaction's rollback copies its items, not whole tables

from infra.local import lambdas
from infra.local.resources import Stack, create_stack, max_receive_count
from loyalty import runtime
from loyalty.runtime import Services

OPERATOR_KEY = "op_test_key"


_mock = mock_aws()


@pytest.fixture(scope="session")
def aws() -> Iterator[None]:
    _mock.start()
    yield
    _mock.stop()


@pytest.fixture
def moto_server(aws: None) -> Iterator[str]:
    """A real moto server on loopback, reached over HTTP by every boto3 client (the in-process mock paused)."""
    from infra.local.moto_server import AtomicMotoServer

    _mock.stop()
    server = AtomicMotoServer()
    server.start()
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    try:
        yield os.environ["AWS_ENDPOINT_URL"]
    finally:
        del os.environ["AWS_ENDPOINT_URL"]
        server.stop()
        _mock.start()


@pytest.fixture
def stack(aws: None) -> Iterator[Stack]:
    """Empty table and queues for this test, and the functions' environment pointing at them."""
    created = create_stack(prefix=f"t{uuid.uuid4().hex[:8]}-")
    strict.configure(created)
    os.environ.update(created.env())
    # The due index's shards only spread load across partitions (template default 32). Tests simulate runs
    # hundreds of days ahead, each visiting every day-shard on moto (whose index queries scan the table): few.
    os.environ["DUE_SHARDS"] = "4"
    os.environ["OPERATOR_KEY_SHA256"] = hashlib.sha256(OPERATOR_KEY.encode()).hexdigest()
    os.environ["MAX_RECEIVES"] = str(max_receive_count())
    runtime.reset()
    yield created
    boto3.client("dynamodb").delete_table(TableName=created.tables["LoyaltyTable"])
    s3 = boto3.resource("s3")
    for name in created.buckets.values():
        s3.Bucket(name).objects.all().delete()
        s3.Bucket(name).delete()
    sqs = boto3.client("sqs")
    for url in created.queues.values():
        sqs.delete_queue(QueueUrl=url)
    for arn in created.secrets.values():
        boto3.client("secretsmanager").delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    events = boto3.client("events")
    for name in created.buses.values():
        for rule in events.list_rules(EventBusName=name)["Rules"]:
            targets = events.list_targets_by_rule(Rule=rule["Name"], EventBusName=name)["Targets"]
            if targets:
                events.remove_targets(Rule=rule["Name"], EventBusName=name, Ids=[t["Id"] for t in targets])
            events.delete_rule(Name=rule["Name"], EventBusName=name)
        events.delete_event_bus(Name=name)


@pytest.fixture
def service(stack: Stack) -> Services:
    """The same service instance the handlers use in this test."""
    return runtime.services()


class Api:
    """Calls the API and webhook functions with API Gateway events, as API Gateway would."""

    def __init__(self) -> None:
        self.functions = lambdas.functions()

    def call(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> tuple[int, Any]:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        payload = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        name = "WebhooksFunction" if "/webhooks/" in path else "ApiFunction"
        response = lambdas.invoke(
            self.functions[name], lambdas.api_event(method, path, headers=all_headers, body=payload)
        )
        return response["statusCode"], lambdas.response_json(response)


@pytest.fixture
def api(stack: Stack) -> Api:
    return Api()


@pytest.fixture
def shop(api: Api) -> dict[str, str]:
    status, body = api.call("POST", "/v1/shops", key=OPERATOR_KEY, body={"name": "Tea House"})
    assert status == 201, body
    return dict(body)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """`make iam-report`: what each function was granted and what the tests saw it do."""
    report = os.environ.get("LOYALTY_IAM_REPORT")
    if report:
        with open(report, "w") as handle:
            handle.write(strict.report_json())
