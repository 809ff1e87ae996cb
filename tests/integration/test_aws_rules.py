"""The local stack is as strict as AWS: each function's own IAM policy and environment, and AWS's limits
(infra/local/strict.py). Each test here fails against plain moto, which checks neither."""

import copy
import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from infra.local import lambdas, strict
from infra.local.resources import Stack, load_template
from loyalty.domain.members import Profile
from loyalty.runtime import Services
from loyalty.store import queue
from tests.conftest import Api
from tests.helpers import drain, paid, send, signed_headers


@pytest.fixture
def without(stack: Stack) -> Iterator[Any]:
    """Configure the stack from a copy of template.yaml with one action taken from one function."""

    def remove(function: str, action: str) -> None:
        template = copy.deepcopy(load_template())
        for policy in template["Resources"][function]["Properties"]["Policies"]:
            for statement in policy["Statement"]:
                statement["Action"] = [a for a in statement["Action"] if a != action]
        strict.configure(stack, template)

    yield remove
    strict.configure(stack)


def test_a_webhook_without_sqs_send_message_is_refused_as_aws_would(
    api: Api, shop: dict[str, str], stack: Stack, without: Any
) -> None:
    without("WebhooksFunction", "sqs:SendMessage")
    body = json.dumps(paid("A1")).encode()
    with pytest.raises(ClientError) as refused:
        api.call(
            "POST",
            f"/v1/shops/{shop['shop_id']}/webhooks/orders",
            raw=body,
            headers=signed_headers(shop["webhook_secret"], body),
        )
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "WebhooksFunction is not authorized to perform: sqs:SendMessage" in str(refused.value)


def test_each_action_inside_a_transaction_is_authorised_on_its_own(
    service: Services, shop: dict[str, str], stack: Stack, without: Any
) -> None:
    """TransactWriteItems is no IAM action: its Update needs dynamodb:UpdateItem."""
    service.members.enrol(shop["shop_id"], Profile(member_id="m1"))
    without("OrdersFunction", "dynamodb:UpdateItem")
    send(stack, shop["shop_id"], paid("A1"))
    (response,) = drain(stack, rounds=1)
    assert len(response["batchItemFailures"]) == 1  # retried, not applied
    assert service.members.member(shop["shop_id"], "m1").balance.available == 0
    strict.configure(stack)
    drain(stack)
    assert service.members.member(shop["shop_id"], "m1").balance.available == 100


def test_authorisations_expand_transactions_batches_and_indexes() -> None:
    table = "arn:aws:dynamodb:us-east-1:123456789012:table/T"
    transaction = {
        "TransactItems": [
            {"Put": {"TableName": "T"}},
            {"Update": {"TableName": "T"}},
            {"Delete": {"TableName": "T"}},
            {"ConditionCheck": {"TableName": "T"}},
        ]
    }
    assert strict._authorisations("dynamodb", "TransactWriteItems", transaction) == [
        ("dynamodb:PutItem", table),
        ("dynamodb:UpdateItem", table),
        ("dynamodb:DeleteItem", table),
        ("dynamodb:ConditionCheckItem", table),
    ]
    assert strict._authorisations("dynamodb", "Query", {"TableName": "T", "IndexName": "DueIndex"}) == [
        ("dynamodb:Query", table + "/index/DueIndex")
    ]
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/Q"
    assert strict._authorisations("sqs", "SendMessageBatch", {"QueueUrl": url}) == [
        ("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:Q")
    ]


def test_the_schedules_may_query_the_due_index_only_where_granted(stack: Stack) -> None:
    policy = strict._state.policies["ExpirePointsShardFunction"]
    table = f"arn:aws:dynamodb:us-east-1:123456789012:table/{stack.tables['LoyaltyTable']}"
    assert policy.allows("dynamodb:Query", table + "/index/DueIndex")
    assert not policy.allows("dynamodb:Query", table)  # granted on the index, not the table
    assert not policy.allows("dynamodb:Scan", table + "/index/DueIndex")


def test_each_function_sees_only_its_own_environment(stack: Stack) -> None:
    assert os.environ.get("COUPON_GRANTS_QUEUE_URL") and os.environ.get("ORDERS_QUEUE_URL")  # the harness sees all
    with strict.acting_as("WebhooksFunction"):
        assert os.environ.get("ORDERS_QUEUE_URL") == stack.queues["OrdersQueue"]
        assert os.environ.get("TABLE_NAME") == stack.tables["LoyaltyTable"]  # Globals
        assert os.environ.get("COUPON_GRANTS_QUEUE_URL") is None
        assert "OPERATOR_KEY_SHA256" not in os.environ
        with pytest.raises(KeyError):
            os.environ["ORDERS_DLQ_URL"]
    with strict.acting_as("ApiFunction"):
        assert os.environ.get("OPERATOR_KEY_SHA256") and os.environ.get("ORDERS_QUEUE_URL") is None


# ---------------------------------------------------------------- limits


def _put(stack: Stack, item: dict[str, Any]) -> None:
    boto3.client("dynamodb").put_item(TableName=stack.tables["LoyaltyTable"], Item=item)


def _refused(call: Any, code: str) -> str:
    with pytest.raises(ClientError) as refused:
        call()
    assert refused.value.response["Error"]["Code"] == code
    return str(refused.value)


def test_key_and_item_sizes_are_refused_as_dynamodb_refuses_them(stack: Stack) -> None:
    _put(stack, {"PK": {"S": "p" * 2048}, "SK": {"S": "s" * 1024}})  # at the limits: taken
    assert "hashkey" in _refused(
        lambda: _put(stack, {"PK": {"S": "p" * 2049}, "SK": {"S": "s"}}), "ValidationException"
    )
    assert "range keys" in _refused(
        lambda: _put(stack, {"PK": {"S": "p"}, "SK": {"S": "é" * 513}}), "ValidationException"
    )
    big = {"PK": {"S": "p"}, "SK": {"S": "s"}, "blob": {"S": "x" * (400 * 1024)}}
    assert "Item size" in _refused(lambda: _put(stack, big), "ValidationException")
    index_key = {"PK": {"S": "p"}, "SK": {"S": "s"}, "DueSK": {"S": "d" * 1025}}
    _refused(lambda: _put(stack, index_key), "ValidationException")  # index keys are keys too


def test_transactions_over_100_actions_or_4_mb_are_refused(stack: Stack) -> None:
    name = stack.tables["LoyaltyTable"]
    client: Any = boto3.client("dynamodb")

    def put(n: int, size: int) -> dict[str, Any]:
        return {"Put": {"TableName": name, "Item": {"PK": {"S": f"p{n}"}, "SK": {"S": "s"}, "v": {"S": "x" * size}}}}

    _refused(lambda: client.transact_write_items(TransactItems=[put(n, 1) for n in range(101)]), "ValidationException")
    eleven = [put(n, 390 * 1024) for n in range(11)]  # each under 400 KB, 4.2 MB in all
    assert "4 MB" in _refused(lambda: client.transact_write_items(TransactItems=eleven), "ValidationException")
    client.transact_write_items(TransactItems=eleven[:10])  # 3.9 MB: taken


def test_sqs_messages_over_the_queue_maximum_are_refused(stack: Stack) -> None:
    sqs: Any = boto3.client("sqs")
    url = stack.queues["OrdersQueue"]
    sqs.send_message(QueueUrl=url, MessageBody="x" * 262_144)
    assert "shorter than 262144" in _refused(
        lambda: sqs.send_message(
            QueueUrl=url,
            MessageBody="x" * 262_100,
            MessageAttributes={"a": {"DataType": "String", "StringValue": "y" * 100}},
        ),
        "InvalidParameterValue",
    )
    entries = [{"Id": str(n), "MessageBody": "x" * 30_000} for n in range(10)]  # 300 KB in one batch
    _refused(lambda: sqs.send_message_batch(QueueUrl=url, Entries=entries), "BatchRequestTooLong")


def test_queue_code_and_template_agree_on_the_message_size() -> None:
    queues = {k: v for k, v in load_template()["Resources"].items() if v["Type"] == "AWS::SQS::Queue"}
    assert {v["Properties"]["MaximumMessageSize"] for v in queues.values()} == {queue.MESSAGE_MAX_BYTES}


def test_attribute_sizes_follow_dynamodb_rules() -> None:
    assert strict.attribute_size({"S": "日本"}) == 6  # UTF-8 bytes
    assert strict.attribute_size({"N": "12345"}) == 4  # (5 digits + 1) / 2 + 1
    assert strict.attribute_size({"BOOL": True}) == 1
    assert strict.attribute_size({"M": {"ab": {"S": "c"}}}) == 3 + 2 + 1 + 1
    assert strict.attribute_size({"L": [{"N": "1"}, {"N": "2"}]}) == 3 + 2 * (2 + 1)


def test_every_function_is_checked(stack: Stack) -> None:
    """A function the template declares without an understood policy would run unchecked: none does."""
    assert set(strict._state.policies) == set(lambdas.functions())


def test_every_function_has_logs_and_an_errors_alarm_within_cloudwatch_limits() -> None:
    """CloudWatch refuses an alarm whose math uses more than 10 metrics (cfn-lint does not see it); and a function
    added without a log group keeps its logs forever, one outside every errors alarm fails silently."""
    resources = load_template()["Resources"]
    alarmed: set[str] = set()
    for name, resource in resources.items():
        if resource["Type"] != "AWS::CloudWatch::Alarm" or "Metrics" not in resource["Properties"]:
            continue
        stats = [m["MetricStat"] for m in resource["Properties"]["Metrics"] if "MetricStat" in m]
        assert len(stats) <= 10, f"{name} uses {len(stats)} metrics; CloudWatch allows 10"
        for stat in stats:
            if stat["Metric"]["MetricName"] == "Errors":
                alarmed |= {d["Value"]["Ref"] for d in stat["Metric"]["Dimensions"] if d["Name"] == "FunctionName"}
    logged = {
        r["Properties"]["LogGroupName"]["Sub"].split("${", 1)[1].rstrip("}")
        for r in resources.values()
        if r["Type"] == "AWS::Logs::LogGroup" and "LogGroupName" in r["Properties"]  # not the API's access logs
    }
    assert alarmed == set(lambdas.functions())
    assert logged == set(lambdas.functions())
