"""`make run`'s stack as a child process, started the way a user starts it: for the end-to-end tests and
`make bench-local`."""

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    process: "subprocess.Popen[bytes]"
    url: str  # the API
    endpoint: str  # the AWS endpoint it uses
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def start(operator_key: str, log: Path, extra_env: dict[str, str] | None = None) -> Running:
    """Start `python -m infra.local` with its output in `log` (a file, not a pipe: nobody has to keep reading it)
    and wait until it says where it listens. Its own moto unless `extra_env` names an AWS_ENDPOINT_URL."""
    port = free_port()
    extra = extra_env or {}
    env = {**os.environ, "PORT": str(port), "LOYALTY_OPERATOR_KEY": operator_key, **extra}
    if "AWS_ENDPOINT_URL" not in extra:
        env.pop("AWS_ENDPOINT_URL", None)
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "infra.local"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text()
        if "operator key" in text:
            endpoint = text.split("AWS endpoint ", 1)[1].split(")", 1)[0]
            return Running(process, f"http://127.0.0.1:{port}", endpoint, log)
        if process.poll() is not None:
            break
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the local stack did not start:\n" + log.read_text())
