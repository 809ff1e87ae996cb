"""Handler overhead: each function's warm invocation against the raw AWS calls it makes, with AWS's replies canned.

    make bench-overhead        (BENCH_OVERHEAD_ROUNDS=15, BENCH_OVERHEAD_CALLS=40 by default)

`make bench` times both sides against moto, whose transactions cost 70-150 ms a call: that hides our own work.
Here the transport is stubbed instead. Each business event is first made once through its function against moto
in process, and every AWS call is recorded: its operation, its parameters as our code passed them to boto3, and
the HTTP reply moto gave. Then, round by round and interleaved:

- ours: the function's handler is invoked with the same event (a warm container: the shop's configuration is in
  its cache, as it is on a warm Lambda), each AWS call answered from the recording, in order;
- raw: the same calls, made with plain boto3 clients (same retry and timeout configuration) on the same
  parameters, answered from the same recording.

botocore serialises, signs and parses on both sides; only the network is gone. The ratio ours / raw is what the
handler adds to the calls it cannot avoid: routing, validation, our models and rules, logging and metrics.
Tracing is off on both sides (POWERTOOLS_TRACE_DISABLED), as X-Ray's daemon is not here. The handler's logs and
metrics go to /dev/null while it is timed, as they would go to CloudWatch's agent on Lambda.

Target (issue 10): every handler <= 1.2x.
"""

import contextlib
import copy
import hashlib
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from infra.local.offline import use_in_process_moto

use_in_process_moto(
    POWERTOOLS_LOG_LEVEL="INFO",  # the template's level: our INFO lines are part of the cost
    CONFIG_CACHE_SECONDS="86400",  # a warm container; the recording must not age out mid-run
    DUE_SHARDS="8",
)

import boto3
import botocore.handlers
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError
from moto import mock_aws

from infra.local import lambdas
from infra.local.resources import create_stack, max_receive_count
from loyalty import runtime
from loyalty.store import aws
from loyalty.webhooks import standard

ROUNDS = int(os.environ.get("BENCH_OVERHEAD_ROUNDS", "15"))
CALLS = int(os.environ.get("BENCH_OVERHEAD_CALLS", "40"))
TARGET = 1.2
OPERATOR_KEY = "op_bench_key"


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    status: int
    headers: dict[str, str]
    body: bytes


class _Raw:
    """What AWSResponse reads a body from."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


class Transport:
    """Records AWS calls made against moto, or answers them from a recording (botocore's before-send: a handler
    that returns a response stands in for the network)."""

    def __init__(self) -> None:
        self.recording: list[Call] | None = None
        self.replies: list[Call] = []
        self.position = 0

    def install(self) -> None:
        # Before any boto3 session exists, so every client (ours and the raw ones) gets these handlers.
        botocore.handlers.BUILTIN_HANDLERS.append(("provide-client-params", self._params))
        botocore.handlers.BUILTIN_HANDLERS.append(("after-call", self._reply))
        botocore.handlers.BUILTIN_HANDLERS.insert(0, ("before-send", self._send))

    @contextlib.contextmanager
    def record(self) -> Iterator[list[Call]]:
        self.recording = []
        try:
            yield self.recording
        finally:
            self.recording = None

    def replay(self, calls: list[Call]) -> None:
        self.replies, self.position = calls, 0

    def done(self) -> bool:
        return self.position == len(self.replies)

    def _params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.recording is not None:
            service = model.service_model.service_name
            self.recording.append(Call(service, model.name, copy.deepcopy(params), 0, {}, b""))

    def _reply(self, http_response: AWSResponse, model: Any, **_: Any) -> None:
        if self.recording is not None:
            call = self.recording[-1]
            assert call.operation == model.name
            call.status, call.headers, call.body = (
                http_response.status_code,
                dict(http_response.headers),
                http_response.content,
            )

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        if self.recording is not None or not self.replies:
            return None  # moto answers
        call = self.replies[self.position]
        self.position += 1
        headers: Any = call.headers  # botocore copies any mapping into its own headers
        return AWSResponse(request.url, call.status, headers, _Raw(call.body))


transport = Transport()
transport.install()


@dataclass
class Case:
    name: str
    function: str
    event: Callable[[str], dict[str, Any]]  # for a member; made anew each round (a webhook's signature is timed)
    expect: int | None = None  # the status an API answer must have


def api(method: str, path: str, key: str, body: Any = None, headers: dict[str, str] | None = None) -> dict[str, Any]:
    all_headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}", **(headers or {})}
    payload = json.dumps(body) if body is not None else None
    return lambdas.api_event(method, path, headers=all_headers, body=payload)


def invoke(function: lambdas.Function, event: dict[str, Any]) -> Any:
    return getattr(lambdas._containers.first(function), function.attribute)(event, lambdas.Context(function))


def set_up() -> list[Case]:
    """A shop with a program that uses what a busy shop uses (tiers, check-in, a campaign), a member with points,
    and the events to measure."""
    stack = create_stack(prefix="bench-")
    os.environ.update(stack.env())
    os.environ["OPERATOR_KEY_SHA256"] = hashlib.sha256(OPERATOR_KEY.encode()).hexdigest()
    os.environ["MAX_RECEIVES"] = str(max_receive_count())
    runtime.reset()
    functions = lambdas.functions()
    created = lambdas.response_json(
        invoke(functions["ApiFunction"], api("POST", "/v1/shops", OPERATOR_KEY, {"name": "Bench"}))
    )
    shop, key, secret = created["shop_id"], created["api_key"], created["webhook_secret"]
    program = {
        "points_per_unit": "1",
        "tiers": [
            {"name": "normal", "threshold": 0},
            {"name": "silver", "threshold": 100000, "multiplier": "1.5", "discount_percent": "5"},
        ],
        "check_in": {"points": 5, "streak_bonus": {"7": 20}},
        "campaigns": [
            {
                "id": "tea",
                "name": "Tea week",
                "multiplier": "2",
                "from": "2026-01-01T00:00:00Z",
                "until": "2030-01-01T00:00:00Z",
            }
        ],
    }
    answer = invoke(functions["ApiFunction"], api("PUT", f"/v1/shops/{shop}/program", key, program))
    assert answer["statusCode"] == 200, answer
    for member in ("m1", "warm"):
        invoke(functions["ApiFunction"], api("POST", f"/v1/shops/{shop}/members", key, {"member_id": member}))
    sqs = boto3.client("sqs")
    queue = stack.queues["OrdersQueue"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def order(order_id: str) -> bytes:
        return json.dumps(
            {
                "type": "order.paid",
                "data": {
                    "order_id": order_id,
                    "member_id": "m1",
                    "currency": "CNY",
                    "total": "100.00",
                    "paid_at": "2026-11-01T10:00:00Z",
                    "lines": [
                        {"sku": "tea", "category": "tea", "amount": "60.00"},
                        {"sku": "cup", "category": "ware", "amount": "40.00"},
                    ],
                },
            }
        ).encode()

    def webhook(order_id: str) -> dict[str, Any]:
        body = order(order_id)
        delivery = f"msg_{uuid.uuid4().hex[:12]}"
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery,
            "webhook-timestamp": str(stamp),
            "webhook-signature": standard.sign(secret, delivery, stamp, body),
        }
        return lambdas.api_event("POST", f"/v1/shops/{shop}/webhooks/orders", headers=headers, body=body)

    # The member has points to redeem, and one queued order.paid is kept as the consumer's event.
    for n in range(4):
        assert invoke(functions["WebhooksFunction"], webhook(f"seed{n}"))["statusCode"] == 202
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    invoke(functions["OrdersFunction"], lambdas.sqs_event(messages[:2], queue_arn))
    queued = {"warm": messages[2:3], "m1": messages[3:4]}
    member_path = f"/v1/shops/{shop}/members"
    gift = {"kind": "goods", "name": "Gift", "points": 20, "stock": 100}
    item = lambdas.response_json(
        invoke(functions["ApiFunction"], api("POST", f"/v1/shops/{shop}/mall/items", key, gift))
    )
    spin = {
        "name": "Spin",
        "cost_points": 5,
        "daily_limit": 100,
        "prizes": [
            {"prize_id": "p5", "kind": "points", "points": 5, "weight": 1, "stock": 100},
            {"prize_id": "thanks", "kind": "nothing", "weight": 1},
        ],
        "consolation": "thanks",
    }
    lottery = lambdas.response_json(
        invoke(functions["ApiFunction"], api("POST", f"/v1/shops/{shop}/lotteries", key, spin))
    )
    return [
        Case(
            "api: enrol a member",
            "ApiFunction",
            lambda m: api("POST", member_path, key, {"member_id": f"{m}-new", "birthday": "1990-05-04"}),
            201,
        ),
        Case("api: read a member", "ApiFunction", lambda m: api("GET", f"{member_path}/{m}", key), 200),
        Case("api: check in", "ApiFunction", lambda m: api("POST", f"{member_path}/{m}/check-ins", key), 201),
        Case(
            "api: redeem points",
            "ApiFunction",
            lambda m: api(
                "POST",
                f"{member_path}/{m}/redemptions",
                key,
                {"points": 10, "reason": "bench"},
                {"Idempotency-Key": f"r-{m}"},
            ),
            201,
        ),
        Case(
            "api: exchange in the mall",
            "ApiFunction",
            lambda m: api(
                "POST", f"{member_path}/{m}/exchanges", key, {"item_id": item["item_id"]}, {"Idempotency-Key": f"x-{m}"}
            ),
            201,
        ),
        Case(
            "api: lottery draw",
            "ApiFunction",
            lambda m: api(
                "POST",
                f"{member_path}/{m}/draws",
                key,
                {"lottery_id": lottery["lottery_id"]},
                {"Idempotency-Key": f"d-{m}"},
            ),
            201,
        ),
        Case("webhooks: order.paid accepted", "WebhooksFunction", lambda m: webhook(f"{m}-o1"), 202),
        Case("orders: order.paid settled", "OrdersFunction", lambda m: lambdas.sqs_event(queued[m], queue_arn)),
    ]


def check(case: Case, answer: Any) -> None:
    if case.expect is not None:
        assert answer["statusCode"] == case.expect, (case.name, answer)
    elif isinstance(answer, dict) and answer.get("batchItemFailures"):
        raise AssertionError(f"{case.name}: {answer}")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """The handler's log lines and metrics to /dev/null (fd 1, where Powertools writes)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)


def record(cases: list[Case]) -> dict[str, list[Call]]:
    """Each case once against moto, its AWS calls recorded."""
    functions = lambdas.functions()
    recorded: dict[str, list[Call]] = {}
    for case in cases:
        function = functions[case.function]
        # Warm, on another member: the first call of a container reads the shop's configuration.
        warm = invoke(function, case.event("warm"))
        if os.environ.get("BENCH_OVERHEAD_DEBUG"):
            print(case.name, warm.get("statusCode") if isinstance(warm, dict) else warm, file=sys.stderr)
        with transport.record() as calls:
            check(case, invoke(function, case.event("m1")))
        recorded[case.name] = list(calls)
    return recorded


def measure(cases: list[Case], recorded: dict[str, list[Call]]) -> list[tuple[str, int, float, float]]:
    """Ours and raw, interleaved round by round, moto out of the way (botocore asks every before-send handler)."""
    functions = lambdas.functions()
    # Made as our store makes its clients (loyalty.store.aws: the same retries and timeouts).
    clients = {service: aws.client(service) for service in {c.service for cs in recorded.values() for c in cs}}
    ours: dict[str, list[float]] = {case.name: [] for case in cases}
    raw: dict[str, list[float]] = {case.name: [] for case in cases}
    with quiet():
        for _ in range(ROUNDS):
            for case in cases:
                function, calls = functions[case.function], recorded[case.name]
                event = case.event("m1")
                events_made = [copy.deepcopy(event) for _ in range(CALLS)]
                start = time.perf_counter()
                for made in events_made:
                    transport.replay(calls)
                    answer = invoke(function, made)
                ours[case.name].append(time.perf_counter() - start)
                check(case, answer)
                assert transport.done(), f"{case.name}: the handler made fewer calls than recorded"
                params = [[copy.deepcopy(c.params) for c in calls] for _ in range(CALLS)]
                methods = [getattr(clients[c.service], _snake(c.operation)) for c in calls]
                start = time.perf_counter()
                for made_params in params:
                    transport.replay(calls)
                    for method, kwargs in zip(methods, made_params, strict=True):
                        # A recorded refusal (a condition that failed) is part of the path.
                        with contextlib.suppress(ClientError):
                            method(**kwargs)
                raw[case.name].append(time.perf_counter() - start)
    return [
        (
            case.name,
            len(recorded[case.name]),
            statistics.median(ours[case.name]) / CALLS,
            statistics.median(raw[case.name]) / CALLS,
        )
        for case in cases
    ]


def profile(cases: list[Case], recorded: dict[str, list[Call]], wanted: str) -> None:
    """Where our time goes for the cases whose name contains `wanted` (BENCH_OVERHEAD_PROFILE), by cumulative time."""
    import cProfile
    import pstats

    functions = lambdas.functions()
    for case in cases:
        if wanted not in case.name:
            continue
        profiler = cProfile.Profile()
        events = [case.event("m1") for _ in range(CALLS * ROUNDS)]
        with quiet():
            profiler.enable()
            for event in events:
                transport.replay(recorded[case.name])
                invoke(functions[case.function], event)
            profiler.disable()
        print(f"--- {case.name}")
        pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_OVERHEAD_SORT", "cumulative")).print_stats(
            os.environ.get("BENCH_OVERHEAD_FILTER", ""), 45
        )


def _snake(operation: str) -> str:
    from botocore import xform_name

    return str(xform_name(operation))


def floor(single: list[Call]) -> tuple[float, float]:
    """What Powertools alone costs an API event: a resolver with validation behind the Logger and Tracer
    decorators, routing to a route like ours that answers at once (no AWS call, no rule), against one raw call
    (`single`). An API event making one AWS call cannot come below 1 + floor / raw."""
    from aws_lambda_powertools import Logger, Tracer
    from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
    from aws_lambda_powertools.logging import correlation_paths

    from loyalty.api.common import MemberId, ShopId, json_response

    logger, tracer = Logger(service="floor"), Tracer(service="floor")
    app = APIGatewayRestResolver(enable_validation=True)

    @app.get("/v1/shops/<shop_id>/members/<member_id>")
    def member(shop_id: ShopId, member_id: MemberId) -> Response[str]:
        return json_response(200, {"member_id": member_id})

    @logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
    @tracer.capture_lambda_handler(capture_response=False, capture_error=False)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return app.resolve(event, context)

    function = lambdas.functions()["ApiFunction"]
    event = lambdas.api_event("GET", "/v1/shops/shp_0123456789abcdef/members/m1", headers={"Authorization": "x"})
    assert handler(event, lambdas.Context(function))["statusCode"] == 200
    (call,) = single
    method = getattr(aws.client(call.service), _snake(call.operation))
    ours, raw = [], []
    with quiet():
        for _ in range(ROUNDS):
            events = [copy.deepcopy(event) for _ in range(CALLS)]
            start = time.perf_counter()
            for made in events:
                handler(made, lambdas.Context(function))
            ours.append(time.perf_counter() - start)
            params = [copy.deepcopy(call.params) for _ in range(CALLS)]
            start = time.perf_counter()
            for kwargs in params:
                transport.replay(single)
                method(**kwargs)
            raw.append(time.perf_counter() - start)
    return statistics.median(ours) / CALLS, statistics.median(raw) / CALLS


def main() -> None:
    with mock_aws():
        cases = set_up()
        recorded = record(cases)
    if os.environ.get("BENCH_OVERHEAD_PROFILE"):
        profile(cases, recorded, os.environ["BENCH_OVERHEAD_PROFILE"])
        return
    rows = measure(cases, recorded)
    powertools, one_call = floor(recorded["api: read a member"][:1])
    print(f"Handler overhead, AWS transport stubbed: median of {ROUNDS} rounds of {CALLS} calls each")
    print(f"{'event':<36} {'AWS calls':>9} {'ours ms':>8} {'raw ms':>8} {'ours/raw':>9}")
    worst = 0.0
    for name, count, ours, raw in rows:
        ratio = ours / raw if raw else float("inf")
        worst = max(worst, ratio)
        print(f"{name:<36} {count:>9} {ours * 1000:>8.2f} {raw * 1000:>8.2f} {ratio:>8.2f}x")
    print(f"worst {worst:.2f}x (target <= {TARGET}x)")
    print(
        f"floor: Powertools alone (resolver with validation, Logger, Tracer; a route that answers at once) "
        f"{powertools * 1000:.2f} ms, against one raw GetItem {one_call * 1000:.2f} ms: an API event making one "
        f"AWS call cannot come below {1 + powertools / one_call:.2f}x"
    )


if __name__ == "__main__":
    main()
