"""Run the functions of template.yaml in process, as AWS would: the events API Gateway, SQS and EventBridge
send, a Lambda context, and each function's handler loaded from its CodeUri. Used by the local stack and tests."""

import importlib.util
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from infra.local import strict
from infra.local.resources import load_template

ROOT = Path(__file__).resolve().parents[2]
LAYER = ROOT / "layers" / "loyalty"
if str(LAYER) not in sys.path:
    sys.path.insert(0, str(LAYER))


@dataclass
class Function:
    logical_id: str
    code_dir: Path
    module: str
    attribute: str
    timeout: int
    environment: dict[str, Any] = field(default_factory=dict)
    schedule: str | None = None  # the schedule expression, for scheduled functions
    queue: str | None = None  # the logical id of the queue it consumes, for SQS-triggered functions
    stream: str | None = None  # the logical id of the table whose stream it consumes
    stream_filters: list[dict[str, str]] = field(default_factory=list)  # its event source mapping's FilterCriteria
    stream_batch_size: int = 100  # the mapping's BatchSize
    stream_window: float = 0.0  # its MaximumBatchingWindowInSeconds

    @property
    def schedule_name(self) -> str:
        """'activate_pending' -> 'activate-pending': the name POST /_local/schedules/{name} takes."""
        return self.attribute.replace("_", "-")


def functions() -> dict[str, Function]:
    template = load_template()
    globals_ = template.get("Globals", {}).get("Function", {})
    found = {}
    for logical_id, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        module, attribute = props["Handler"].rsplit(".", 1)
        events = props.get("Events", {}).values()
        schedules = [e["Properties"]["Schedule"] for e in events if e["Type"] == "Schedule"]
        queues = [e["Properties"]["Queue"]["GetAtt"].split(".")[0] for e in events if e["Type"] == "SQS"]
        streams = [e["Properties"] for e in events if e["Type"] == "DynamoDB"]
        found[logical_id] = Function(
            logical_id=logical_id,
            code_dir=ROOT / props["CodeUri"],
            module=module,
            attribute=attribute,
            timeout=int(props.get("Timeout", globals_.get("Timeout", 3))),
            environment=props.get("Environment", {}).get("Variables", {}),
            schedule=schedules[0] if schedules else None,
            queue=queues[0] if queues else None,
            stream=streams[0]["Stream"]["GetAtt"].split(".")[0] if streams else None,
            stream_filters=streams[0].get("FilterCriteria", {}).get("Filters", []) if streams else [],
            stream_batch_size=int(streams[0].get("BatchSize", 100)) if streams else 100,
            stream_window=float(streams[0].get("MaximumBatchingWindowInSeconds", 0)) if streams else 0.0,
        )
    return found


def _resolvers_keep_their_own_event() -> None:
    """Powertools' event handler keeps the event it is resolving, and its Lambda context, on a class attribute
    (`BaseRouter.current_event`), shared by every resolver in the process, and a Router (one per API module,
    shared by every container here) reads them from the resolver that included it last. On Lambda a process runs
    one invocation at a time; here containers are threads, and a request that read its body after another
    container had begun resolving read the other's (an enrolment answered 200 for someone else's member, its own
    never written). So each resolver keeps its own event and context on the instance, which attribute lookup finds
    first, and a router reads them from the resolver resolving in its thread. Powertools still sets the class
    attribute, as it does."""
    from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, Router

    to_proxy_event = ApiGatewayResolver._to_proxy_event
    resolve = ApiGatewayResolver.resolve
    resolving = threading.local()

    def own_proxy_event(self: ApiGatewayResolver, event: dict[str, Any]) -> Any:
        proxy = to_proxy_event(self, event)
        self.__dict__["current_event"] = proxy
        return proxy

    def own_resolve(self: ApiGatewayResolver, event: Any, context: Any) -> dict[str, Any]:
        self.__dict__["lambda_context"] = context
        outer, resolving.app = getattr(resolving, "app", None), self
        try:
            return resolve(self, event, context)
        finally:
            resolving.app = outer

    def of_this_thread(name: str) -> property:
        inherited: property = getattr(Router, name)

        def read(router: Router) -> Any:
            app = getattr(resolving, "app", None)
            return getattr(app, name) if app is not None else inherited.fget(router)  # type: ignore[misc]

        return property(read, inherited.fset)

    ApiGatewayResolver._to_proxy_event = own_proxy_event  # type: ignore[method-assign]
    ApiGatewayResolver.resolve = own_resolve  # type: ignore[method-assign]
    for name in ("current_event", "lambda_context", "context"):
        setattr(Router, name, of_this_thread(name))


_resolvers_keep_their_own_event()


class _Containers:
    """A function's warm containers. Lambda runs one invocation at a time in each container and starts another
    container for a concurrent one, so a handler module's state (Powertools' resolver and its per-request context)
    is never shared by two invocations at once. So here: each concurrent invocation takes an idle copy of the
    handler's module, or loads a new one (a cold start) under a module name of its own. The layer's modules
    (loyalty.*, loyalty.runtime's services and their caches) are one per process, shared as threads share them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: dict[Path, list[ModuleType]] = {}
        self._idle: dict[Path, list[ModuleType]] = {}
        self._started: dict[Path, int] = {}  # containers started or starting: the next one's number

    def first(self, function: Function) -> ModuleType:
        path = function.code_dir / f"{function.module}.py"
        with self._lock:
            if not self._all.get(path):
                self._all[path] = [self._load(function, path, 0)]
                self._idle[path] = list(self._all[path])
                self._started[path] = 1
            return self._all[path][0]

    @contextmanager
    def take(self, function: Function) -> Iterator[ModuleType]:
        path = function.code_dir / f"{function.module}.py"
        self.first(function)
        with self._lock:
            idle = self._idle[path]
            # The first idle container, so invocations one at a time always run in the first (tests patch it).
            module = min(idle, key=self._all[path].index) if idle else None
            if module is not None:
                idle.remove(module)
            else:  # every container is busy: a cold start (outside the lock), numbered now
                number = self._started[path]
                self._started[path] += 1
        if module is None:
            module = self._load(function, path, number)
            with self._lock:
                self._all[path].append(module)
        try:
            yield module
        finally:
            with self._lock:
                self._idle[path].append(module)

    @staticmethod
    def _load(function: Function, path: Path, number: int) -> ModuleType:
        name = f"lambda_{function.code_dir.name}_{function.module}" + (f"_{number}" if number else "")
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        with strict.acting_as(function.logical_id):  # a cold start runs as the function too
            spec.loader.exec_module(module)
        return module


_containers = _Containers()


def handler(function: Function) -> Any:
    """The handler of the function's first container (tests reach its module through it; invocations one at a
    time always run there)."""
    return getattr(_containers.first(function), function.attribute)


class Context:
    """The parts of the Lambda context that Powertools and our handlers read."""

    def __init__(self, function: Function) -> None:
        self.function_name = function.logical_id
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{function.logical_id}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function.logical_id}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + function.timeout

    def get_remaining_time_in_millis(self) -> int:
        return max(int((self._deadline - time.monotonic()) * 1000), 0)


def invoke(function: Function, event: dict[str, Any]) -> Any:
    """Run the function's handler as that function: its IAM policy and its environment (see strict.py)."""
    with strict.acting_as(function.logical_id), _containers.take(function) as module:
        return getattr(module, function.attribute)(event, Context(function))


def api_event(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    body: str | bytes | None = None,
    resource: str = "/{proxy+}",
) -> dict[str, Any]:
    """An API Gateway REST (v1) proxy event. The path is percent-decoded, as API Gateway decodes it."""
    parts = urlsplit(url)
    path = unquote(parts.path)
    query = parse_qs(parts.query, keep_blank_values=True)
    text = body.decode() if isinstance(body, bytes) else body
    headers = dict(headers or {})
    return {
        "resource": resource,
        "path": path,
        "httpMethod": method.upper(),
        "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": {k: v[-1] for k, v in query.items()} or None,
        "multiValueQueryStringParameters": query or None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": resource,
            "httpMethod": method.upper(),
            "path": path,
            "stage": "local",
            "requestId": str(uuid.uuid4()),
            "identity": {"sourceIp": "127.0.0.1"},
            "requestTimeEpoch": int(time.time() * 1000),
        },
        "body": text,
        "isBase64Encoded": False,
    }


def sqs_event(messages: Sequence[Mapping[str, Any]], queue_arn: str) -> dict[str, Any]:
    """An SQS event from messages as ReceiveMessage returns them (AttributeNames and MessageAttributeNames All)."""
    records = []
    for message in messages:
        attributes = {k: str(v) for k, v in message.get("Attributes", {}).items()}
        attributes.setdefault("ApproximateReceiveCount", "1")
        attributes.setdefault("SentTimestamp", str(int(time.time() * 1000)))
        attributes.setdefault("SenderId", "local")
        attributes.setdefault("ApproximateFirstReceiveTimestamp", str(int(time.time() * 1000)))
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message.get("ReceiptHandle", ""),
                "body": message["Body"],
                "attributes": attributes,
                "messageAttributes": {
                    k: {
                        "stringValue": v.get("StringValue"),
                        "dataType": v["DataType"],
                        "stringListValues": [],
                        "binaryListValues": [],
                    }
                    for k, v in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": message.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            }
        )
    return {"Records": records}


def schedule_event(time_iso: str, rule: str = "local") -> dict[str, Any]:
    """The Scheduled Event an EventBridge rule sends; its `time` is the run's "now"."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time_iso,
        "region": "us-east-1",
        "resources": [f"arn:aws:events:us-east-1:123456789012:rule/{rule}"],
        "detail": {},
    }


def response_json(response: dict[str, Any]) -> Any:
    """The answer's JSON body; a body of another type (the dashboard's HTML, a script) as its text."""
    if not response.get("body"):
        return None
    headers = {name.lower(): str(value) for name, value in (response.get("headers") or {}).items()}
    headers |= {name.lower(): ", ".join(values) for name, values in (response.get("multiValueHeaders") or {}).items()}
    if "json" not in headers.get("content-type", "application/json"):
        return response["body"]
    return json.loads(response["body"])
