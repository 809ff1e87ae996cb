"""Memory of the local stack (`make run`) as orders flow through it: resident size after each burst.

    python -m bench.local_memory

Starts the stack in its own process, enrols 20 members, then sends bursts of 150 signed paid orders (and a
redemption every third order) through the webhook, waits for the consumer, and prints the process's resident
memory after each burst with the growth per order. moto holds every item in memory, so some growth is the data
itself; the stack releases moto's per-transaction table copies, which otherwise grow by the table's size per
transaction item.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from loyalty.webhooks import standard

ROOT = Path(__file__).resolve().parents[1]
PORT = 3457
BASE = f"http://127.0.0.1:{PORT}"
BURST = 150


def call(
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(
        BASE + path, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def main() -> None:
    log = Path(tempfile.mkstemp(suffix=".log")[1])
    env = {**os.environ, "PORT": str(PORT), "LOYALTY_OPERATOR_KEY": "op_bench"}
    env.pop("AWS_ENDPOINT_URL", None)
    with log.open("w") as out:
        stack = subprocess.Popen(
            [sys.executable, "-m", "infra.local"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        while "operator key" not in log.read_text():
            time.sleep(0.2)
        shop = call("POST", "/v1/shops", {"name": "memory"}, key="op_bench")
        sid, key = shop["shop_id"], shop["api_key"]
        for n in range(20):
            call("POST", f"/v1/shops/{sid}/members", {"member_id": f"m{n}"}, key=key)
        start = rss_mb(stack.pid)
        print(f"{'orders':>7} {'RSS MB':>8} {'KB per order since start':>25}")
        print(f"{0:>7} {start:>8.1f}")
        for burst in range(3):
            for n in range(burst * BURST, (burst + 1) * BURST):
                body = json.dumps(
                    {
                        "type": "order.paid",
                        "data": {
                            "order_id": f"o{n}",
                            "member_id": f"m{n % 20}",
                            "currency": "CNY",
                            "total": "10.00",
                            "lines": [{"sku": "a", "amount": "10.00"}],
                            "paid_at": "2026-11-01T00:00:00Z",
                        },
                    }
                ).encode()
                stamp = int(time.time())
                call(
                    "POST",
                    f"/v1/shops/{sid}/webhooks/orders",
                    raw=body,
                    headers={
                        "webhook-id": f"w{n}",
                        "webhook-timestamp": str(stamp),
                        "webhook-signature": standard.sign(shop["webhook_secret"], f"w{n}", stamp, body),
                    },
                )
                if n % 3 == 0 and n > 30:
                    with contextlib.suppress(urllib.error.HTTPError):  # not yet credited: the consumer is behind
                        call(
                            "POST",
                            f"/v1/shops/{sid}/members/m{n % 20}/redemptions",
                            {"points": 1, "reason": "x"},
                            key=key,
                            headers={"Idempotency-Key": f"k{n}"},
                        )
            orders = (burst + 1) * BURST
            while (
                sum(call("GET", f"/v1/shops/{sid}/members/m{m}", key=key)["points"]["available"] for m in range(20))
                < 10 * orders - orders // 3
            ):
                time.sleep(0.5)
            now = rss_mb(stack.pid)
            print(f"{orders:>7} {now:>8.1f} {(now - start) * 1024 / orders:>25.0f}")
    finally:
        stack.terminate()
        stack.wait(timeout=10)


if __name__ == "__main__":
    main()
