"""The whole system on a laptop: moto server, the HTTP API on localhost, the queue consumer and the schedules.

  python -m infra.local            (what `make run` does)

PORT (default 3000) is where the API listens. AWS_ENDPOINT_URL, if set, is an already-running moto (or AWS-like)
endpoint to use instead of starting one; otherwise moto starts in a process of its own (LOYALTY_LOCAL_MOTO=thread:
in this process, reached without a socket). LOYALTY_OPERATOR_KEY sets the operator key (else one is made and
printed). LOYALTY_SCHEDULE_SECONDS (default 300) is how often the schedules run by themselves;
POST /_local/schedules/{name} with an optional {"time": ISO-8601} body runs one at once, as EventBridge would.
"""

import hashlib
import json
import logging
import os
import re
import secrets
import signal
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from infra.local import lambdas, moto_server, strict
from infra.local.moto_server import AtomicMotoServer
from infra.local.resources import Stack, create_stack, max_receive_count
from infra.local.streams import StreamPoller

log = logging.getLogger("loyalty.local")
# What an AWS endpoint that restarted (and lost its state) answers: the stack's resources are made again.
MISSING = {"ResourceNotFoundException", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
WEBHOOK = re.compile(r"^/v1/shops/[^/]+/webhooks/[^/]+$")
# Batches in flight at once per queue: Lambda's SQS event source starts with five pollers (and the template's
# MaximumConcurrency caps how many the consumer may run; each is at least 5). One poller made the consumer wait on
# each of its requests to moto, in its own process, in turn.
QUEUE_POLLERS = 5
# Pollers wait this long for a message (SQS long polling, at most 20 s). Short polls of every queue five times a
# second, by each poller, were some 45 requests a second with nothing to do: a tenth of the stack's time while
# members enrolled, and a busy fan on an idle laptop.
LONG_POLL_SECONDS = 10
SCHEDULE = re.compile(r"^/_local/schedules/(?P<name>[a-z0-9-]+)$")


def configure_aws() -> AtomicMotoServer | None:
    """Point boto3 at moto. Returns the in-process moto server if one was started."""
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
    os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")
    if os.environ.get("AWS_ENDPOINT_URL"):
        return None
    if os.environ.get("LOYALTY_LOCAL_MOTO", "process") == "process":
        # moto in a process of its own, as AWS is: the functions' work and moto's run on two cores
        os.environ["AWS_ENDPOINT_URL"] = moto_server.start_process(int(os.environ.get("MOTO_PORT", "0")))
        return None
    server = AtomicMotoServer(port=int(os.environ.get("MOTO_PORT", "0")))
    server.start()
    server.serve_in_process()  # the functions reach it without a socket; others over HTTP
    host, port = server.get_host_and_port()
    os.environ["AWS_ENDPOINT_URL"] = f"http://{host}:{port}"
    return server


def configure_functions(stack: Stack, operator_key: str) -> None:
    """The environment template.yaml gives the functions, with local values."""
    os.environ.update(stack.env())
    os.environ["OPERATOR_KEY_SHA256"] = hashlib.sha256(operator_key.encode()).hexdigest()
    os.environ["MAX_RECEIVES"] = str(max_receive_count())
    os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
    os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "Loyalty")
    os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "loyalty-local")
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ.setdefault("POWERTOOLS_METRICS_DISABLED", "true")


class LocalStack:
    """Routes HTTP to the functions, polls the queue into the consumer, fires the schedules."""

    def __init__(self, stack: Stack, *, moto: AtomicMotoServer | None) -> None:
        self.stack = stack
        self.functions = lambdas.functions()
        self.schedules = {f.schedule_name: f for f in self.functions.values() if f.schedule}
        self.moto = moto  # the in-process server, if this stack started one
        self.stop = threading.Event()
        self.recreating = threading.Lock()
        self.retry_seconds = int(os.environ.get("LOYALTY_LOCAL_RETRY_SECONDS", "10"))
        import boto3

        # Every poller of every queue may be in a long poll at once: a connection each, or urllib3 drops them.
        self.sqs = boto3.client("sqs", config=Config(max_pool_connections=64))
        # Each SQS-triggered function of the template, with the URL and ARN of its queue.
        self.consumers = [
            (
                function,
                stack.queues[function.queue],
                self.sqs.get_queue_attributes(QueueUrl=stack.queues[function.queue], AttributeNames=["QueueArn"])[
                    "Attributes"
                ]["QueueArn"],
            )
            for function in self.functions.values()
            if function.queue
        ]
        self.pollers = self.stream_pollers()
        for function in self.functions.values():  # load every handler now, as a cold start would
            lambdas.handler(function)

    def stream_pollers(self) -> list[StreamPoller]:
        """Each stream-triggered function of the template, with a poller of its table's stream."""
        return [
            StreamPoller(
                function,
                self.stack.tables[function.stream],
                trim=self.moto is not None,
                exclusive=self.moto.exclusive if self.moto is not None else None,
                raw_endpoint=moto_server.own_endpoint(),
            )
            for function in self.functions.values()
            if function.stream
        ]

    # ---------------------------------------------------------------- HTTP

    def route(self, method: str, url: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], bytes]:
        path = url.split("?", 1)[0]
        schedule = SCHEDULE.match(path)
        if schedule and method == "POST":
            return self.run_schedule_http(schedule["name"], body)
        function = self.functions["WebhooksFunction" if WEBHOOK.match(path) else "ApiFunction"]
        event = lambdas.api_event(method, url, headers=headers, body=body or None)
        try:
            response = lambdas.invoke(function, event)
        except ClientError as exc:
            if not self.recreate_if_missing(exc):
                raise
            response = lambdas.invoke(function, event)
        if self.moto and method != "GET":
            self.moto.release_copies()
        out_headers = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            out_headers[name] = ", ".join(values)
        return int(response["statusCode"]), out_headers, (response.get("body") or "").encode()

    def recreate_if_missing(self, exc: Exception) -> bool:
        """After the AWS endpoint restarted empty, make the stack's tables and queues again (the data is gone, as
        it would be; the stack answers again instead of failing until restarted itself)."""
        if not isinstance(exc, ClientError) or exc.response.get("Error", {}).get("Code") not in MISSING:
            return False
        # Every poller and request finds them missing at once: one makes them (create_stack finds what another
        # made before it), so no two create the same table and none fails on "already exists".
        with self.recreating:
            log.warning("the AWS endpoint lost the stack's resources (restarted?): making them again")
            self.stack = create_stack()
            strict.configure(self.stack)
            os.environ.update(self.stack.env())
            self.pollers = self.stream_pollers()
        return True

    def _recover(self, exc: Exception, what: str) -> None:
        """A poller's failure: resources made again if they went missing, else logged; the poller goes on."""
        try:
            if self.recreate_if_missing(exc):
                return
        except Exception:
            log.exception("making the stack's resources again failed")
        log.exception("%s poll failed; trying again", what)
        time.sleep(1)

    def run_schedule_http(self, name: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json"}
        if name not in self.schedules:
            error = {
                "error": {
                    "code": "not_found",
                    "message": f"no schedule {name}; have {sorted(self.schedules)}",
                    "field": "name",
                }
            }
            return 404, headers, json.dumps(error).encode()
        try:
            requested = json.loads(body) if body.strip() else {}
            when = datetime.fromisoformat(requested["time"]) if "time" in requested else datetime.now(UTC)
            if when.tzinfo is None:
                raise ValueError("time needs a UTC offset or Z")
        except (ValueError, TypeError, KeyError) as exc:
            error = {"error": {"code": "invalid", "message": f"time: {exc}", "field": "time"}}
            return 400, headers, json.dumps(error).encode()
        report = self.run_schedule(name, when)
        return 200, headers, json.dumps(report, default=str).encode()

    def run_schedule(self, name: str, when: datetime) -> Any:
        stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        report = lambdas.invoke(self.schedules[name], lambdas.schedule_event(stamp, rule=name))
        if self.moto:
            self.moto.release_copies()
        return report

    # ---------------------------------------------------------------- queue consumer

    def poll_queue(self, function: lambdas.Function, url: str, arn: str, wait_seconds: int = 0) -> int:
        """One ReceiveMessage -> one SQS event -> the consumer; successes deleted, as the event source mapping does."""
        response = self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return 0
        result = lambdas.invoke(function, lambdas.sqs_event(messages, arn))
        failed = {item["itemIdentifier"] for item in (result or {}).get("batchItemFailures", [])}
        done: list[Any] = [
            {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
            for n, message in enumerate(messages)
            if message["MessageId"] not in failed
        ]
        if done:  # one request for the batch, as the event source mapping deletes
            self.sqs.delete_message_batch(QueueUrl=url, Entries=done)
        for message in messages:
            if message["MessageId"] in failed:
                # Locally, retry sooner than the queue's visibility timeout would.
                self.sqs.change_message_visibility(
                    QueueUrl=url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=self.retry_seconds,
                )
        return len(messages)

    def consume_forever(self, function: lambdas.Function, url: str, arn: str) -> None:
        """One poller of one queue, as each of the event source mapping's is: a long poll, so an idle queue costs
        a request every LONG_POLL_SECONDS and a message is picked up as soon as it is sent (moto wakes the poll)."""
        while not self.stop.is_set():
            try:
                if self.poll_queue(function, url, arn, LONG_POLL_SECONDS) and self.moto:
                    self.moto.release_copies()
            except Exception as exc:
                self._recover(exc, "queue")

    def stream_forever(self) -> None:
        """Deliver the table's stream to its consumers (the aggregator), as the event source mapping does."""
        while not self.stop.is_set():
            try:
                if not sum(poller.poll_once() for poller in self.pollers):
                    self.stop.wait(0.5)
            except Exception as exc:
                self._recover(exc, "stream")

    def schedule_forever(self) -> None:
        interval = float(os.environ.get("LOYALTY_SCHEDULE_SECONDS", "300"))
        while not self.stop.wait(interval):
            for name in self.schedules:  # in the documented nightly order
                try:
                    self.run_schedule(name, datetime.now(UTC))
                except Exception:
                    log.exception("schedule %s failed", name)


def serve(local: LocalStack, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; on a kept-alive connection Nagle's algorithm holds the second
        # until the client acknowledges the first, which it delays (up to 40 ms a response).
        disable_nagle_algorithm = True

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            try:
                status, headers, payload = local.route(self.command, self.path, dict(self.headers.items()), body)
            except Exception:
                log.exception("unhandled error")
                status, headers = 500, {"Content-Type": "application/json"}
                payload = b'{"error": {"code": "internal", "message": "internal error"}}'
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() not in ("content-length", "connection"):
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.command, self.path.split("?", 1)[0])

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    strict.install()  # before any boto3 client: IAM per function and AWS's limits
    in_process = configure_aws()
    operator_key = os.environ.get("LOYALTY_OPERATOR_KEY") or "op_" + secrets.token_urlsafe(24)
    stack = create_stack()
    strict.configure(stack)
    configure_functions(stack, operator_key)
    local = LocalStack(stack, moto=in_process)
    port = int(os.environ.get("PORT", "3000"))
    server = serve(local, port)
    for function, url, arn in local.consumers:
        for n in range(QUEUE_POLLERS):
            name = f"{function.logical_id}-poller-{n}"
            threading.Thread(target=local.consume_forever, args=(function, url, arn), name=name, daemon=True).start()
    threading.Thread(target=local.stream_forever, name="stream-consumer", daemon=True).start()
    threading.Thread(target=local.schedule_forever, name="schedules", daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    print(
        f"\nloyalty is running (AWS endpoint {os.environ['AWS_ENDPOINT_URL']})\n"
        f"  API            {base}\n"
        f"  Swagger UI     {base}/swagger\n"
        f"  OpenAPI spec   {base}/openapi.json\n"
        f"  operator key   {operator_key}\n"
        f'  schedules      POST {base}/_local/schedules/{{{"|".join(local.schedules)}}}  body {{"time": ISO-8601}}\n'
        f"\nTry:  curl -s -X POST {base}/v1/shops -H 'Authorization: Bearer {operator_key}' "
        f"-H 'Content-Type: application/json' -d '{{\"name\": \"My shop\"}}'\n",
        flush=True,
    )

    def shutdown(*_: Any) -> None:
        local.stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    try:
        server.serve_forever()
    finally:
        if in_process is not None:
            in_process.stop()
        moto_server.stop_process()


if __name__ == "__main__":
    main()
