"""A moto server whose requests are each atomic, as DynamoDB's are, and which the stack's own functions reach
without a socket.

moto evaluates a transaction's conditions and applies its writes without a lock, so two threads can both pass
a condition that only one should (seen here: 15 redemptions of 70 succeeded against 1,000 points, beside
"dictionary changed size during iteration" errors from moto). DynamoDB guarantees that each request, a
TransactWriteItems included, is applied atomically. This server keeps HTTP threaded, so clients still race
to read and write, and runs one DynamoDB request at a time inside moto: the concurrency our conditions must handle,
without races that exist only in the emulator.

`serve_in_process()` hands the boto3 clients of this process (the functions of `make run`) to moto directly:
botocore still builds, checks (infra.local.strict), serialises and signs each request, then moto's handler for it
is called as moto's own in-process mock calls it (found by the URL the request would have on AWS), under the same
lock, instead of over loopback HTTP. A new TCP connection and server thread per request (moto's werkzeug server
speaks HTTP/1.0), then werkzeug and Flask, were over half of the stack's time per order. Clients in other
processes (the AWS CLI, a test, a benchmark) still use the HTTP endpoint; both reach the same moto state.
"""

import contextlib
import functools
import gc
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import botocore.handlers
import moto.backend_index as backend_index
from botocore.awsrequest import AWSPreparedRequest, AWSResponse
from botocore.compat import HTTPHeaders
from moto import backends
from moto.core.botocore_stubber import MockRawResponse
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder, run_wsgi_app

from infra.local import moto_patches

CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[a-z0-9-]+)/(?P<service>[a-z0-9-]+)/aws4_request")
_compiled = functools.cache(re.compile)
log = logging.getLogger("loyalty.local.moto")


def _one_at_a_time(target: str) -> bool:
    """Whether a request (by its X-Amz-Target) runs under the lock: DynamoDB's, which AWS applies atomically, and
    its stream's (a stream never shows a transaction's records before the transaction is done). Not SQS's: a long
    poll must not hold everyone else up."""
    return target.startswith(("DynamoDB_", "DynamoDBStreams_"))


@functools.lru_cache(maxsize=256)
def _handler_for(service: str, region: str, path: str) -> Any:
    """moto's handler for a request, found as moto's in-process mock finds it: by the URL the request would have on
    AWS (service and region from its signature), matched against each backend's URL patterns. Once per service,
    region and path: the scan of every pattern was a cost on each request."""
    aws_url = f"https://{service}.{region}.amazonaws.com{path}"
    for name, pattern in backend_index.backend_url_patterns:
        if not pattern.match(aws_url):
            continue
        backend_dict = backends.get_backend(name)  # type: ignore[call-overload]
        regions = backend_dict[DEFAULT_ACCOUNT_ID]
        backend = regions["us-east-1"] if "us-east-1" in regions else regions["aws"]
        for url, handler in backend.urls.items():
            if _compiled(url).match(aws_url):
                return handler
    return None


class AtomicMotoServer(ThreadedMotoServer):
    def __init__(self, ip_address: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(ip_address=ip_address, port=port, verbose=False)
        moto_patches.apply()  # transactions back up the items they touch, not whole tables
        self._lock = threading.Lock()
        self._app = DomainDispatcherApplication(create_backend_app)
        self._url = ""
        self._released = 0.0

    def atomic(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if not _one_at_a_time(environ.get("HTTP_X_AMZ_TARGET", "")):
            return self._app(environ, start_response)  # type: ignore[no-any-return]
        with self._lock:
            return list(self._app(environ, start_response))  # the whole response is made inside the lock

    def _server_entry(self) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server = _KeepAliveServer((self._ip_address, self._port), self)  # type: ignore[assignment]
        host, port = self._server.server_address[:2]  # type: ignore[union-attr]
        self._url = self._url or f"http://{host!s}:{port}"
        self._server_ready_event.set()
        try:
            self._server.serve_forever()  # type: ignore[union-attr]
        finally:
            self._server.server_close()  # type: ignore[union-attr]

    def stop(self) -> None:
        self._url = ""  # in-process clients made from now on (or a later server on this port) use HTTP
        if ("before-send", self._send) in botocore.handlers.BUILTIN_HANDLERS:
            botocore.handlers.BUILTIN_HANDLERS.remove(("before-send", self._send))
        server = self._server
        super().stop()
        if isinstance(server, _KeepAliveServer):
            server.hang_up()  # kept-alive connections end with the server, as a stopped endpoint's would

    def serve_in_process(self) -> None:
        """From now on, every botocore client of this process whose endpoint is this server calls moto's handlers
        directly (see the module's docstring). Call before the clients are made."""
        host, port = self.get_host_and_port()
        self._url = f"http://{host}:{port}"
        botocore.handlers.BUILTIN_HANDLERS.append(("before-send", self._send))
        import boto3

        if boto3.DEFAULT_SESSION is not None:
            boto3.DEFAULT_SESSION._session.register("before-send", self._send)  # type: ignore[arg-type]

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        if not self._url or not request.url.startswith(self._url):
            return None  # another endpoint: botocore sends it over HTTP as usual
        status, headers, body = self.dispatch(request)
        return AWSResponse(request.url, status, cast(Any, headers), MockRawResponse(body))

    def dispatch(self, request: Any) -> tuple[int, dict[str, Any], Any]:
        """(status, headers, body) of moto's answer to a botocore request whose URL starts with this server's."""
        for name, value in request.headers.items():
            if isinstance(value, bytes):
                request.headers[name] = value.decode()
        scope = CREDENTIAL_SCOPE.search(str(request.headers.get("Authorization", "")))
        path = request.url[len(self._url) :].split("?", 1)[0] or "/"
        target = str(request.headers.get("X-Amz-Target", ""))
        # DynamoDB Streams signs as "dynamodb" but has a host of its own on AWS, which moto routes by
        service = "streams.dynamodb" if target.startswith("DynamoDBStreams_") else scope["service"] if scope else ""
        handler = _handler_for(service, scope["region"], path) if scope else None
        if handler is None:  # not a service moto routes by URL (moto's own API): through moto's application
            return self._send_wsgi(request)
        try:
            if _one_at_a_time(target):
                with self._lock:
                    status, headers, body = handler(request, request.url, request.headers)
            else:
                status, headers, body = handler(request, request.url, request.headers)
        except HTTPException as exc:
            status, headers, body = exc.code or 500, dict(exc.get_headers()), exc.get_body()
        return status, headers, body

    def _send_wsgi(self, request: Any) -> tuple[int, dict[str, Any], bytes]:
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        environ = EnvironBuilder(
            path=request.url[len(self._url) :] or "/",
            base_url=self._url,
            method=request.method,
            headers=dict(request.headers.items()),
            data=body or b"",
        ).get_environ()
        app_iter, status, response_headers = run_wsgi_app(self.atomic, environ, buffered=True)
        try:
            payload = b"".join(app_iter)
        finally:
            close = getattr(app_iter, "close", None)
            if close:
                close()
        return int(status.split(" ", 1)[0]), dict(response_headers), payload

    def exclusive(self) -> Any:
        """The lock DynamoDB requests run under, for changing moto's state from outside a request."""
        return self._lock

    def release_copies(self) -> None:
        """Drop the references moto keeps to every model instance it made (items, messages, their copies), for
        its dashboard, so a long-running server does not grow without bound (see
        ../shared/notes/aws-local-facts.md). At most once a second: it walks every model class. No lock: each
        class's list is replaced, and an instance added to the old one meanwhile is only dropped sooner."""
        from moto.core.model_instances import reset_model_data

        now = time.monotonic()
        if now - self._released < 1.0:
            return
        self._released = now
        reset_model_data()


class _KeepAliveServer(ThreadingHTTPServer):
    """The HTTP endpoint for clients in other processes: HTTP/1.1 with kept-alive connections (as AWS's endpoints
    and botocore's pool speak), each request handed to moto as `serve_in_process` hands it. moto's own werkzeug
    server speaks HTTP/1.0, so each request was a new TCP connection and server thread, then werkzeug and Flask:
    several times moto's own work for a DynamoDB call. The stack runs moto in a process of its own (see
    infra/local/stack.py), so every AWS call of the functions comes this way."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], moto: AtomicMotoServer) -> None:
        self.moto = moto
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        super().__init__(address, _MotoRequest)

    def hang_up(self) -> None:
        with self.open_lock:
            for connection in list(self.open):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)


class _MotoRequest(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: see infra/local/stack.py
    server: _KeepAliveServer

    def setup(self) -> None:
        super().setup()
        with self.server.open_lock:
            self.server.open.add(self.connection)

    def finish(self) -> None:
        with self.server.open_lock:
            self.server.open.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = HTTPHeaders.from_pairs(list(self.headers.items()))  # as botocore's own requests carry them
        request = AWSPreparedRequest(self.command, self.server.moto._url + self.path, headers, body, False)
        try:
            status, out_headers, payload = self.server.moto.dispatch(request)
        except Exception:
            log.exception("moto failed on %s %s", self.command, self.path.split("?", 1)[0])
            status, out_headers, payload = 500, {}, b'{"__type": "InternalFailure", "message": "moto failed"}'
        data = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
        self.send_response(status)
        for name, value in out_headers.items():
            if name.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up: nobody to answer
                self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ------------------------------------------------------------------ moto in a process of its own

_process: "subprocess.Popen[bytes] | None" = None
_endpoint = ""


def start_process(port: int = 0) -> str:
    """Start moto in a process of its own and return its endpoint. The stack's functions, API shim and pollers are
    one Python process, and so run on one core at a time (the GIL); with moto beside them, in its own process as AWS
    is, the two halves of every request (the function's, and the service's) run on two cores. The process ends when
    this one does (it reads its standard input until it closes)."""
    global _process, _endpoint
    env = {**os.environ, "MOTO_PORT": str(port)}
    env.pop("AWS_ENDPOINT_URL", None)
    _process = subprocess.Popen(
        [sys.executable, "-m", "infra.local.moto_server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert _process.stdout is not None
    line = _process.stdout.readline().decode()
    if not line.startswith("moto listening on "):
        _process.kill()
        raise RuntimeError(f"moto did not start: {line!r}")
    _endpoint = line.split("moto listening on ", 1)[1].strip()
    return _endpoint


def own_endpoint() -> str:
    """The endpoint of the moto process this process started, if any."""
    return _endpoint if _process is not None and _process.poll() is None else ""


def own_pid() -> int:
    """The process id of the moto process this process started."""
    assert _process is not None
    return _process.pid


def stop_process() -> None:
    global _process, _endpoint
    if _process is not None:
        _process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            _process.wait(timeout=10)
        if _process.poll() is None:
            _process.kill()
    _process, _endpoint = None, ""


def main() -> None:
    """`python -m infra.local.moto_server`: moto on MOTO_PORT (default: any free port), until standard input
    closes. Prints `moto listening on <endpoint>` once it answers."""
    logging.basicConfig(level=logging.WARNING)
    moto_patches.trim_on_read = True  # the stack reads each stream from one place: what it read is dropped
    server = AtomicMotoServer(port=int(os.environ.get("MOTO_PORT") or 0))
    server.start()
    host, port = server.get_host_and_port()
    print(f"moto listening on http://{host}:{port}", flush=True)
    done = threading.Event()

    def release() -> None:  # moto's references to every model instance it made, dropped as the stack did per request
        while not done.wait(1.0):
            server.release_copies()
            # moto holds the table as Python objects (millions at 100,000 members); a full collection walking them
            # all held the interpreter for over 2 s, past the functions' read timeout, and enrolments failed. What
            # survived the young collections is the data: it is frozen out of later collections.
            gc.collect(1)
            gc.freeze()

    threading.Thread(target=release, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sys.stdin.buffer.read()  # until the stack's end of the pipe closes (it exited, however)
    done.set()
    os._exit(0)


if __name__ == "__main__":
    main()
