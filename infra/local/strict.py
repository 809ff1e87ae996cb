"""What AWS enforces and moto does not, enforced on every AWS call a function makes, locally and in the tests.

- IAM: a call made while a function runs (see `acting_as`, used by lambdas.invoke) must be allowed by that
  function's own `Policies` statements in template.yaml, as AWS authorises it: each action inside a
  TransactWriteItems as PutItem, UpdateItem, DeleteItem or ConditionCheckItem on its table, a Query on an index
  against the index's ARN, SendMessageBatch as SendMessage. A call the policy does not allow fails with the
  AccessDeniedException AWS would answer. Calls made outside a function (test set-up, the local stack's own
  poller, which on AWS is the event source mapping) are not checked.
- Environment: while a function runs it sees the template's Globals variables and its own, not another
  function's (on AWS each runs in its own container).
- Limits (DynamoDB keys and items, transactions, SQS messages, EventBridge entries): a request over one fails
  with the ValidationException / InvalidParameterValue AWS would answer, whoever makes it.

Installed once per process with `install()` before boto3 makes its first client (it hooks every botocore session,
as moto's own mock does); `configure(stack)` resolves the template's policies to the stack's physical names.
"""

import contextlib
import contextvars
import fnmatch
import json
import os
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import botocore.handlers
from botocore.exceptions import ClientError

from infra.local.resources import Stack, load_template, resources_of

REGION = "us-east-1"
ACCOUNT = "123456789012"

# DynamoDB (https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/ServiceQuotas.html)
PARTITION_KEY_MAX = 2048
SORT_KEY_MAX = 1024
ITEM_MAX = 400 * 1024
TRANSACTION_ACTIONS_MAX = 100
TRANSACTION_BYTES_MAX = 4 * 1024 * 1024
# SQS: a queue's MaximumMessageSize (1 MiB by default on queues created since 2025); the template sets its own.
SQS_DEFAULT_MAX = 1024 * 1024
# EventBridge: one PutEvents entry
EVENT_ENTRY_MAX = 256 * 1024

# Batch operations AWS authorises as the single-message action.
_SQS_ACTION = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_TRANSACT_ACTION = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}


@dataclass
class Statement:
    effect: str
    actions: list[str]
    resources: list[str]

    def matches(self, action: str, resource: str) -> bool:
        return any(fnmatch.fnmatchcase(action.lower(), a.lower()) for a in self.actions) and any(
            fnmatch.fnmatchcase(resource, r) for r in self.resources
        )


@dataclass
class Policy:
    function: str
    statements: list[Statement]
    environment: set[str]  # the variable names this function is given

    def allows(self, action: str, resource: str) -> bool:
        if any(s.effect == "Deny" and s.matches(action, resource) for s in self.statements):
            return False
        return any(s.effect == "Allow" and s.matches(action, resource) for s in self.statements)


@dataclass
class _State:
    policies: dict[str, Policy] = field(default_factory=dict)
    function_variables: set[str] = field(default_factory=set)  # every variable some function is given
    queue_max: dict[str, int] = field(default_factory=dict)  # queue name -> MaximumMessageSize
    hash_keys: set[str] = field(default_factory=lambda: {"PK"})
    range_keys: set[str] = field(default_factory=lambda: {"SK"})
    used: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # function -> actions it made


_state = _State()
_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("loyalty_function", default=None)
_installed = False


# ---------------------------------------------------------------- set-up


def install() -> None:
    """Hook every botocore session made from now on (and boto3's default one, if made), and give os.environ a
    per-function view. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build", _check))
    import boto3

    if boto3.DEFAULT_SESSION is not None:
        boto3.DEFAULT_SESSION._session.register("before-parameter-build", _check)  # type: ignore[arg-type]
    if not isinstance(os.environ, FunctionEnviron):
        # Replaced, not cleared: os.getenv and os.environ[...] both read this module attribute.
        os.environ = FunctionEnviron(os.environ)  # type: ignore[assignment]  # noqa: B003


def configure(stack: Stack, template: dict[str, Any] | None = None) -> None:
    """Resolve each function's policy in `template` (default: template.yaml) to the physical names of `stack`."""
    template = template or load_template()
    names = _physical_arns(stack)
    globals_env = set(template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}))
    policies = {}
    variables: set[str] = set()
    for logical_id, props in resources_of("AWS::Serverless::Function", template).items():
        statements = []
        for policy in props.get("Policies", []):
            if not isinstance(policy, dict) or set(policy) != {"Statement"}:
                raise ValueError(f"{logical_id}: only inline Statement policies are understood here, not {policy}")
            for raw in policy["Statement"]:
                statements.append(
                    Statement(
                        effect=raw.get("Effect", "Allow"),
                        actions=_listed(raw["Action"]),
                        resources=[_resolve(r, names) for r in _listed(raw["Resource"])],
                    )
                )
        own = set(props.get("Environment", {}).get("Variables", {}))
        variables |= own
        policies[logical_id] = Policy(logical_id, statements, own | globals_env)
    _state.policies = policies
    _state.function_variables = variables - globals_env
    _state.queue_max = {
        stack.queues[logical].rsplit("/", 1)[-1]: int(props.get("MaximumMessageSize", SQS_DEFAULT_MAX))
        for logical, props in resources_of("AWS::SQS::Queue", template).items()
        if logical in stack.queues
    }
    for props in resources_of("AWS::DynamoDB::Table", template).values():
        schemas = [props["KeySchema"], *(index["KeySchema"] for index in props.get("GlobalSecondaryIndexes", []))]
        _state.hash_keys = {k["AttributeName"] for schema in schemas for k in schema if k["KeyType"] == "HASH"}
        _state.range_keys = {k["AttributeName"] for schema in schemas for k in schema if k["KeyType"] == "RANGE"}


@contextlib.contextmanager
def acting_as(function: str) -> Iterator[None]:
    """AWS calls made inside are made by `function`, with its policy and its environment."""
    token = _current.set(function)
    try:
        yield
    finally:
        _current.reset(token)


def used_actions() -> dict[str, set[str]]:
    """The actions each function was seen to make (and was allowed), for the IAM report."""
    return {function: set(actions) for function, actions in _state.used.items()}


def granted_actions() -> dict[str, set[str]]:
    return {
        name: {a for s in policy.statements if s.effect == "Allow" for a in s.actions}
        for name, policy in _state.policies.items()
    }


# ---------------------------------------------------------------- the environment a function sees


class FunctionEnviron(MutableMapping[str, str]):
    """os.environ, less the variables of functions other than the one running in this thread."""

    def __init__(self, real: MutableMapping[str, str]) -> None:
        self._real = real

    def _hidden(self, key: str) -> bool:
        function = _current.get()
        if function is None or function not in _state.policies:
            return False
        return key in _state.function_variables and key not in _state.policies[function].environment

    def __getitem__(self, key: str) -> str:
        if self._hidden(key):
            raise KeyError(key)
        return self._real[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._real[key] = value

    def __delitem__(self, key: str) -> None:
        del self._real[key]

    def __iter__(self) -> Iterator[str]:
        return (key for key in list(self._real) if not self._hidden(key))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def copy(self) -> dict[str, str]:
        return dict(self)

    def __getattr__(self, name: str) -> Any:  # encodekey, decodevalue...: what os._Environ has beyond a mapping
        return getattr(self._real, name)


# ---------------------------------------------------------------- the check on every call


def _check(params: dict[str, Any], model: Any, **_: Any) -> None:
    service = model.service_model.endpoint_prefix
    operation = model.name
    if service == "dynamodb":
        _dynamodb_limits(operation, params)
    elif service == "sqs":
        _sqs_limits(operation, params)
    elif service == "events":
        _events_limits(operation, params)
    function = _current.get()
    if function is None or function not in _state.policies:
        return
    policy = _state.policies[function]
    for action, resource in _authorisations(service, operation, params):
        if not policy.allows(action, resource):
            raise _invalid(
                operation,
                "AccessDeniedException",
                f"User: arn:aws:sts::{ACCOUNT}:assumed-role/{function}Role/{function} is not authorized to perform: "
                f"{action} on resource: {resource} because no identity-based policy allows the {action} action",
            )
        _state.used[function].add(action)


def _authorisations(service: str, operation: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(action, resource ARN) pairs AWS checks for one call."""
    if service == "dynamodb":
        if operation == "TransactWriteItems":
            return [
                (f"dynamodb:{_TRANSACT_ACTION[kind]}", _table_arn(action["TableName"]))
                for item in params["TransactItems"]
                for kind, action in item.items()
            ]
        if operation == "TransactGetItems":
            return [("dynamodb:GetItem", _table_arn(item["Get"]["TableName"])) for item in params["TransactItems"]]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", _table_arn(table)) for table in params["RequestItems"]]
        if "TableArn" in params:  # ExportTableToPointInTime
            return [(f"dynamodb:{operation}", str(params["TableArn"]))]
        if "TableName" in params:
            arn = _table_arn(params["TableName"])
            if params.get("IndexName"):
                arn += f"/index/{params['IndexName']}"
            return [(f"dynamodb:{operation}", arn)]
        return [(f"dynamodb:{operation}", "*")]
    if service == "sqs":
        action = f"sqs:{_SQS_ACTION.get(operation, operation)}"
        url = params.get("QueueUrl")
        return [(action, queue_arn(url) if url else "*")]
    if service == "secretsmanager" and "SecretId" in params:
        return [(f"secretsmanager:{operation}", str(params["SecretId"]))]
    if service == "events" and operation == "PutEvents":
        buses = {entry.get("EventBusName") or "default" for entry in params["Entries"]}
        return [("events:PutEvents", _bus_arn(bus)) for bus in sorted(buses)]
    return [(f"{service}:{operation}", "*")]


def _table_arn(name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{name}"


def queue_arn(url: str) -> str:
    return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{url.rsplit('/', 1)[-1]}"


def _bus_arn(name: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:events:{REGION}:{ACCOUNT}:event-bus/{name}"


def _physical_arns(stack: Stack) -> dict[str, str]:
    arns = {logical: _table_arn(name) for logical, name in stack.tables.items()}
    arns |= {logical: queue_arn(url) for logical, url in stack.queues.items()}
    arns |= {logical: _bus_arn(name) for logical, name in stack.buses.items()}
    arns |= stack.secrets
    arns |= {logical: f"arn:aws:s3:::{name}" for logical, name in stack.buckets.items()}
    return arns


def _resolve(value: Any, arns: Mapping[str, str]) -> str:
    """A policy Resource: a string, !GetAtt X.Arn or X.StreamArn, !Ref X (a secret: its ARN) or !Sub with ${X.Arn} and
    ${AWS::Region|AccountId|Partition}."""
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return arns[value["Ref"]]
    if "GetAtt" in value:
        logical, attribute = value["GetAtt"].split(".", 1)
        if attribute == "StreamArn":  # a table's stream (its label is only known once created)
            return arns[logical] + "/stream/*"
        if attribute != "Arn":
            raise ValueError(f"unsupported GetAtt {value}")
        return arns[logical]
    if "Sub" in value:
        text = value["Sub"]
        for logical, arn in arns.items():
            text = text.replace("${" + logical + ".Arn}", arn)
        for name, real in {"AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"}.items():
            text = text.replace("${" + name + "}", real)
        if "${" in text:
            raise ValueError(f"unresolved {value}")
        return str(text)
    raise ValueError(f"unsupported policy resource {value}")


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# ---------------------------------------------------------------- limits


def _invalid(operation: str, code: str, message: str) -> ClientError:
    """The error AWS answers, as botocore raises it."""
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}
    return ClientError(response, operation)


def attribute_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one AttributeValue (developerguide/CapacityUnitCalculations.html)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return len(inner.encode())
    if kind == "N":
        digits = Decimal(inner).normalize().as_tuple().digits
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(s.encode()) for s in inner)
    if kind == "NS":
        return sum(attribute_size({"N": n}) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "L":
        return 3 + sum(attribute_size(v) + 1 for v in inner)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(v) + 1 for k, v in inner.items())
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def _check_keys(operation: str, attributes: Mapping[str, Mapping[str, Any]]) -> None:
    for name, value in attributes.items():
        if name in _state.hash_keys and attribute_size(value) > PARTITION_KEY_MAX:
            raise _invalid(
                operation,
                "ValidationException",
                "One or more parameter values were invalid: Size of hashkey has exceeded the maximum size limit of "
                f"{PARTITION_KEY_MAX} bytes",
            )
        if name in _state.range_keys and attribute_size(value) > SORT_KEY_MAX:
            raise _invalid(
                operation,
                "ValidationException",
                "One or more parameter values were invalid: Aggregated size of all range keys has exceeded the size "
                f"limit of {SORT_KEY_MAX} bytes",
            )


def _check_item(operation: str, item: Mapping[str, Mapping[str, Any]]) -> int:
    _check_keys(operation, item)
    size = item_size(item)
    if size > ITEM_MAX:
        raise _invalid(operation, "ValidationException", "Item size has exceeded the maximum allowed size")
    return size


def _request_size(action: Mapping[str, Any]) -> int:
    """What one write counts toward a request's size: its item or key, and its expressions and values."""
    size = 0
    for name in ("Item", "Key", "ExpressionAttributeValues"):
        if name in action:
            size += item_size(action[name])
    for name in ("UpdateExpression", "ConditionExpression"):
        size += len(action.get(name, "").encode())
    return size


EXPRESSIONS = ("UpdateExpression", "ConditionExpression", "KeyConditionExpression", "FilterExpression",
               "ProjectionExpression")  # fmt: skip
_PLACEHOLDER = re.compile(r"[:#][A-Za-z0-9_]+")


def _check_placeholders(operation: str, request: Mapping[str, Any]) -> None:
    """DynamoDB refuses a request whose ExpressionAttributeValues or ExpressionAttributeNames hold a placeholder
    that none of its expressions uses (moto checks this for some operations, never inside a transaction)."""
    used = {token for name in EXPRESSIONS for token in _PLACEHOLDER.findall(request.get(name) or "")}
    for attributes, kind in (("ExpressionAttributeValues", "Value"), ("ExpressionAttributeNames", "Name")):
        unused = sorted(set(request.get(attributes) or {}) - used)
        if unused:
            raise _invalid(
                operation,
                "ValidationException",
                f"{kind} provided in {attributes} unused in expressions: keys: {{{', '.join(unused)}}}",
            )


def _dynamodb_limits(operation: str, params: Mapping[str, Any]) -> None:
    if operation in ("PutItem", "UpdateItem", "DeleteItem", "Query", "Scan"):
        _check_placeholders(operation, params)
    elif operation == "TransactWriteItems":
        for entry in params["TransactItems"]:
            for action in entry.values():
                _check_placeholders(operation, action)
    if operation == "PutItem":
        _check_item(operation, params["Item"])
    elif operation in ("GetItem", "UpdateItem", "DeleteItem"):
        _check_keys(operation, params["Key"])
        if operation == "UpdateItem" and _request_size(params) > ITEM_MAX:
            raise _invalid(
                operation, "ValidationException", "Item size to update has exceeded the maximum allowed size"
            )
    elif operation == "BatchGetItem":
        for request in params["RequestItems"].values():
            for key in request["Keys"]:
                _check_keys(operation, key)
    elif operation == "Query":
        _check_keys(operation, params.get("ExclusiveStartKey", {}))
        values = params.get("ExpressionAttributeValues", {})
        for value in values.values():  # a key condition's values are keys too
            if "S" in value and len(value["S"].encode()) > PARTITION_KEY_MAX:
                raise _invalid(
                    operation, "ValidationException", "One or more parameter values were invalid: key too long"
                )
    elif operation == "TransactWriteItems":
        items = params["TransactItems"]
        if len(items) > TRANSACTION_ACTIONS_MAX:
            raise _invalid(
                operation,
                "ValidationException",
                f"Member must have length less than or equal to {TRANSACTION_ACTIONS_MAX}",
            )
        total = 0
        for entry in items:
            for action in entry.values():
                if "Item" in action:
                    _check_item(operation, action["Item"])
                else:
                    _check_keys(operation, action["Key"])
                total += _request_size(action)
        if total > TRANSACTION_BYTES_MAX:
            raise _invalid(operation, "ValidationException", "Transaction request cannot be larger than 4 MB")


def _message_size(body: str, attributes: Mapping[str, Mapping[str, Any]] | None) -> int:
    size = len(body.encode())
    for name, value in (attributes or {}).items():
        size += len(name.encode()) + len(value["DataType"].encode())
        size += len(value.get("StringValue", "").encode()) + len(value.get("BinaryValue", b""))
    return size


def _sqs_limits(operation: str, params: Mapping[str, Any]) -> None:
    if operation not in ("SendMessage", "SendMessageBatch"):
        return
    limit = _state.queue_max.get(params["QueueUrl"].rsplit("/", 1)[-1], SQS_DEFAULT_MAX)
    entries = params["Entries"] if operation == "SendMessageBatch" else [params]
    sizes = [_message_size(e["MessageBody"], e.get("MessageAttributes")) for e in entries]
    if any(size > limit for size in sizes):
        raise _invalid(
            operation,
            "InvalidParameterValue",
            f"One or more parameters are invalid. Reason: Message must be shorter than {limit} bytes.",
        )
    if sum(sizes) > limit:
        raise _invalid(
            operation,
            "BatchRequestTooLong",
            f"Batch requests cannot be longer than {limit} bytes. You have sent {sum(sizes)} bytes.",
        )


def _events_limits(operation: str, params: Mapping[str, Any]) -> None:
    if operation != "PutEvents":
        return
    for entry in params["Entries"]:
        size = sum(len(str(entry.get(name, "")).encode()) for name in ("Source", "DetailType", "Detail"))
        size += sum(len(str(r).encode()) for r in entry.get("Resources", []))
        if size > EVENT_ENTRY_MAX:
            raise _invalid(
                operation, "ValidationException", "Total size of the entries in the request is over the limit."
            )


def report_json() -> str:
    """Granted and used actions per function (`make iam-report`)."""
    granted, used = granted_actions(), used_actions()
    return json.dumps(
        {name: {"granted": sorted(granted[name]), "used": sorted(used.get(name, set()))} for name in sorted(granted)},
        indent=2,
    )


def print_report(path: str) -> None:
    """A table of report_json()'s file: granted actions, and those granted but never seen used."""
    with open(path) as handle:
        report = json.load(handle)
    print("| function | granted | seen used in the tests | granted, not seen |")
    print("|---|---|---|---|")
    for name, row in report.items():
        unused = sorted(set(row["granted"]) - set(row["used"]))
        print(f"| {name} | {', '.join(row['granted'])} | {', '.join(row['used'])} | {', '.join(unused) or '-'} |")


if __name__ == "__main__":
    import sys

    print_report(sys.argv[1])
