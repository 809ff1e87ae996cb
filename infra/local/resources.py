"""Create the stack's tables and queues from template.yaml on moto (or any DynamoDB/SQS endpoint).

template.yaml is the one source of the schema: tests and the local stack both build from it, so a key
or index added there is the key or index the code runs against everywhere.
"""

import json
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """Reads CloudFormation's short-form tags (!Ref, !GetAtt, !Sub...) as plain {'Fn': value} maps."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {suffix: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as handle:
        template: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return template


def resources_of(kind: str, template: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    template = template or load_template()
    return {name: res.get("Properties", {}) for name, res in template["Resources"].items() if res["Type"] == kind}


def table_definition(logical_id: str = "LoyaltyTable", table_name: str | None = None) -> dict[str, Any]:
    """create_table parameters for a table of the template, under `table_name` (default: its logical id)."""
    props = resources_of("AWS::DynamoDB::Table")[logical_id]
    params: dict[str, Any] = {
        "TableName": table_name or logical_id,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in props:
        params["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    if "StreamSpecification" in props:
        params["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    return params


@dataclass
class Stack:
    """Physical names of what was created, by logical id."""

    tables: dict[str, str] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)  # logical id -> queue URL
    buses: dict[str, str] = field(default_factory=dict)  # logical id -> event bus name
    secrets: dict[str, str] = field(default_factory=dict)  # logical id -> secret ARN (what !Ref gives)
    buckets: dict[str, str] = field(default_factory=dict)  # logical id -> bucket name

    def env(self) -> dict[str, str]:
        """The environment variables template.yaml gives the functions (Globals and each function's own), with
        every `!Ref` resolved: a queue to its URL, a table or bus to its name, a parameter to its default.
        Literal values (Powertools' settings) and variables with no local value (the operator key's hash) are
        left to the caller."""
        template = load_template()
        refs: dict[str, str] = {**self.tables, **self.queues, **self.buses, **self.secrets, **self.buckets}
        refs |= {name: str(p["Default"]) for name, p in template.get("Parameters", {}).items() if "Default" in p}
        found: dict[str, str] = {}
        sources = [template.get("Globals", {}).get("Function", {})]
        sources += list(resources_of("AWS::Serverless::Function", template).values())
        for props in sources:
            for name, value in props.get("Environment", {}).get("Variables", {}).items():
                if isinstance(value, dict) and value.get("Ref") in refs:
                    found[name] = refs[value["Ref"]]
        return found


def generated(properties: dict[str, Any]) -> str:
    """A secret's value as GenerateSecretString makes it: random and never the same twice; with a
    SecretStringTemplate, that JSON with the random string under GenerateStringKey."""
    spec = properties.get("GenerateSecretString", {})
    value = uuid.uuid4().hex + uuid.uuid4().hex
    if "SecretStringTemplate" not in spec:
        return value
    return json.dumps({**json.loads(spec["SecretStringTemplate"]), spec["GenerateStringKey"]: value})


def create_stack(prefix: str = "") -> Stack:
    """Create (or find) every table and queue of the template. Safe to call again."""
    template = load_template()
    stack = Stack()
    dynamodb = boto3.client("dynamodb")
    existing = set(dynamodb.list_tables()["TableNames"])
    for logical_id in resources_of("AWS::DynamoDB::Table", template):
        name = prefix + logical_id
        if name not in existing:
            dynamodb.create_table(**table_definition(logical_id, name))
            recovery = resources_of("AWS::DynamoDB::Table", template)[logical_id].get(
                "PointInTimeRecoverySpecification"
            )
            if recovery and recovery.get("PointInTimeRecoveryEnabled"):  # exports need it, as on AWS
                dynamodb.update_continuous_backups(
                    TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
                )
        stack.tables[logical_id] = name
    sqs = boto3.client("sqs")
    queues = resources_of("AWS::SQS::Queue", template)
    # Dead-letter queues first: the queues that redrive into them need their ARNs.
    ordered = sorted(queues, key=lambda logical: "RedrivePolicy" in queues[logical])
    arns: dict[str, str] = {}
    for logical_id in ordered:
        props = queues[logical_id]
        attributes: dict[Any, str] = {"VisibilityTimeout": str(props.get("VisibilityTimeout", 30))}
        if "MaximumMessageSize" in props:
            attributes["MaximumMessageSize"] = str(props["MaximumMessageSize"])
        redrive = props.get("RedrivePolicy")
        if redrive:
            target = redrive["deadLetterTargetArn"]["GetAtt"].split(".")[0]
            attributes["RedrivePolicy"] = json.dumps(
                {"deadLetterTargetArn": arns[target], "maxReceiveCount": str(redrive["maxReceiveCount"])}
            )
        url = sqs.create_queue(QueueName=prefix + logical_id, Attributes=attributes)["QueueUrl"]
        arns[logical_id] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        stack.queues[logical_id] = url
    events = boto3.client("events")
    existing_buses = {bus["Name"] for bus in events.list_event_buses()["EventBuses"]}
    for logical_id in resources_of("AWS::Events::EventBus", template):
        name = prefix + logical_id
        if name not in existing_buses:
            events.create_event_bus(Name=name)
        stack.buses[logical_id] = name
    s3 = boto3.client("s3")
    existing_buckets = {bucket["Name"] for bucket in s3.list_buckets().get("Buckets", [])}
    for logical_id in resources_of("AWS::S3::Bucket", template):
        name = (prefix + logical_id).lower()  # bucket names are lower case
        if name not in existing_buckets:
            s3.create_bucket(Bucket=name)
        stack.buckets[logical_id] = name
    secrets = boto3.client("secretsmanager")
    for logical_id in resources_of("AWS::SecretsManager::Secret", template):
        name = prefix + logical_id
        try:
            arn = secrets.describe_secret(SecretId=name)["ARN"]
        except secrets.exceptions.ResourceNotFoundException:
            properties = template["Resources"][logical_id].get("Properties", {})
            arn = secrets.create_secret(Name=name, SecretString=generated(properties))["ARN"]
        stack.secrets[logical_id] = arn
    return stack


def max_receive_count(queue_logical_id: str = "OrdersQueue") -> int:
    return int(resources_of("AWS::SQS::Queue")[queue_logical_id]["RedrivePolicy"]["maxReceiveCount"])
