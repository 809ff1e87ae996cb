"""The ceiling moto puts on the local stack: the DynamoDB requests that enrolments and orders make, sent straight
to moto's own process (`python -m infra.local.moto_server`, as `make run` starts it) by bare boto3 clients on
THREADS threads: no API, queue, function, stream consumer or strict checks in the way. What the stack does per
second can be no more than this; bench-local prints its own rates against it.

The requests are the real ones: enrolments and orders are first made in process (moto's mock, the services as
the functions call them), every DynamoDB request recorded with its parameters; then a fresh moto process is
started and they are sent again in the same order per member, the table filled to the size measured with
copies of an enrolled member's items between the enrolments and the orders (the filling is not timed).

    python -m bench.moto_ceiling [members]     (default 5,000; about a minute, plus the filling)
"""

import copy
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

from infra.local.offline import use_in_process_moto

use_in_process_moto(POWERTOOLS_LOG_LEVEL="ERROR", POWERTOOLS_METRICS_NAMESPACE="LoyaltyBench")

import boto3
from botocore import xform_name
from botocore.config import Config
from moto import mock_aws

from infra.local import moto_patches, moto_server
from infra.local.resources import create_stack
from loyalty import runtime
from loyalty.domain.members import Profile
from loyalty.domain.orders import OrderEnvelope

THREADS = int(os.environ.get("BENCH_THREADS", "8"))
SAMPLE = int(os.environ.get("BENCH_CEILING_SAMPLE", "2000"))  # enrolments and orders recorded, then replayed

Call = tuple[str, dict[str, Any]]  # (operation, its parameters)


@dataclass
class Recorded:
    enrolments: list[list[Call]] = field(default_factory=list)  # one list of requests per member, in order
    orders: list[list[Call]] = field(default_factory=list)  # one per order, each of its own member
    member_items: list[dict[str, Any]] = field(default_factory=list)  # what one enrolment wrote: filler's model
    table: str = ""


class Recorder:
    def __init__(self) -> None:
        self.calls: list[Call] | None = None

    def before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        if self.calls is not None and model.service_model.endpoint_prefix == "dynamodb":
            self.calls.append((model.name, copy.deepcopy(params)))

    def record(self, action: Callable[[], object]) -> list[Call]:
        self.calls = []
        try:
            action()
            return self.calls
        finally:
            self.calls = None


def record(sample: int) -> Recorded:
    """Enrol `sample` members and pay one order each, in process, recording each one's DynamoDB requests."""
    recorder = Recorder()
    recorded = Recorded()
    with mock_aws():
        boto3.setup_default_session()  # inside the mock (it resets the default session); before any client
        assert boto3.DEFAULT_SESSION is not None
        boto3.DEFAULT_SESSION.events.register("before-parameter-build", recorder.before)
        stack = create_stack(prefix="ceiling-")
        os.environ.update(stack.env())
        runtime.reset()
        service = runtime.services()
        shop_id = service.shops.create_shop("Ceiling")["shop_id"]
        recorded.table = stack.tables["LoyaltyTable"]
        for n in range(sample):
            profile = Profile(member_id=f"m{n}")
            recorded.enrolments.append(recorder.record(partial(service.members.enrol, shop_id, profile)))
        paid_at = datetime.now(UTC).isoformat()
        for n in range(sample):
            envelope = OrderEnvelope.model_validate(
                {
                    "shop_id": shop_id,
                    "delivery_id": f"d{n}",
                    "event": {
                        "type": "order.paid",
                        "data": {
                            "order_id": f"o{n}",
                            "member_id": f"m{n}",
                            "currency": "CNY",
                            "total": "12.00",
                            "paid_at": paid_at,
                            "lines": [{"sku": "tea", "category": "tea", "amount": "12.00"}],
                        },
                    },
                }
            )
            recorded.orders.append(recorder.record(partial(service.orders.apply, shop_id, envelope.event)))
        for operation, params in recorded.enrolments[0]:
            if operation == "TransactWriteItems":
                recorded.member_items = [a["Put"]["Item"] for a in params["TransactItems"] if "Put" in a]
    runtime.reset()
    return recorded


def _retarget(calls: list[Call], tables: dict[str, str]) -> list[Call]:
    """The same requests, to the tables of the moto process (same logical tables, its own names)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (tables.get(v, v) if k == "TableName" else walk(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return [(operation, walk(params)) for operation, params in calls]


def _filler(model: list[dict[str, Any]], count: int) -> Iterator[dict[str, Any]]:
    """`count` copies of one enrolment's items, each copy's keys made its own."""
    for n in range(count):
        for item in model:
            copied = dict(item)
            copied["PK"] = {"S": item["PK"]["S"] + f"#f{n}"}  # index keys repeat: the table's size is the point
            yield copied


@dataclass
class Ceiling:
    members: int
    enrol_per_s: float
    orders_per_s: float
    refused: int  # requests moto refused (none expected: each is replayed as first made)
    enrol_cpu_ms: tuple[float, float]  # CPU per enrolment: (the clients' botocore, moto's process)
    order_cpu_ms: tuple[float, float]


def _cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(members: int, recorded: Recorded) -> Ceiling:
    """Start moto's process, replay the enrolments (timed), fill the table to `members`, replay the orders."""
    endpoint = moto_server.start_process()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    try:
        stack = create_stack()
        tables = {recorded.table: stack.tables["LoyaltyTable"]}
        config = Config(max_pool_connections=THREADS, retries={"mode": "standard"})
        client = boto3.session.Session().client("dynamodb", endpoint_url=endpoint, config=config)
        refused: list[str] = []  # appended to from the threads (one append is atomic)

        def replay(calls: list[Call]) -> None:
            for operation, params in _retarget(calls, tables):
                try:
                    getattr(client, xform_name(operation))(**params)
                except client.exceptions.ClientError as exc:
                    refused.append(str(exc))

        moto_pid = moto_server.own_pid()

        def timed(events: list[list[Call]]) -> tuple[float, tuple[float, float]]:
            started, cpu, moto_cpu = time.perf_counter(), time.process_time(), _cpu_seconds(moto_pid)
            with ThreadPoolExecutor(THREADS) as pool:
                list(pool.map(replay, events))
            rate = len(events) / (time.perf_counter() - started)
            used = (time.process_time() - cpu, _cpu_seconds(moto_pid) - moto_cpu)
            return rate, (used[0] * 1000 / len(events), used[1] * 1000 / len(events))

        enrol_rate, enrol_cpu = timed(recorded.enrolments)
        table = stack.tables["LoyaltyTable"]
        batch: list[dict[str, Any]] = []
        batches: list[list[dict[str, Any]]] = []
        for item in _filler(recorded.member_items, max(0, members - len(recorded.enrolments))):
            batch.append({"PutRequest": {"Item": item}})
            if len(batch) == 25:
                batches.append(batch)
                batch = []
        if batch:
            batches.append(batch)

        def write(chunk: list[dict[str, Any]]) -> None:
            pending: dict[str, Any] = {table: chunk}
            while pending:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}

        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(write, batches))
        orders_rate, order_cpu = timed(recorded.orders)
        return Ceiling(members, enrol_rate, orders_rate, len(refused), enrol_cpu, order_cpu)
    finally:
        os.environ.pop("AWS_ENDPOINT_URL", None)
        moto_server.stop_process()


def main() -> None:
    moto_patches.apply()  # the in-process recording runs moto as the tests do
    as_json = "--json" in sys.argv  # one line of results, for bench-local's ratios
    sizes = [int(n) for n in sys.argv[1:] if n != "--json"] or [5000]
    recorded = record(SAMPLE)
    if as_json:
        print(json.dumps([asdict(measure(members, recorded)) for members in sizes]))
        return
    print(f"moto alone: the requests of {SAMPLE} enrolments and {SAMPLE} orders, {THREADS} threads")
    print(f"{'members':>8} {'enrol/s':>8} {'orders/s':>9} {'refused':>8}  CPU ms per enrolment, order (client+moto)")
    for members in sizes:
        c = measure(members, recorded)
        cpu = f"{c.enrol_cpu_ms[0]:.1f}+{c.enrol_cpu_ms[1]:.1f}, {c.order_cpu_ms[0]:.1f}+{c.order_cpu_ms[1]:.1f}"
        print(f"{c.members:>8} {c.enrol_per_s:>8.0f} {c.orders_per_s:>9.1f} {c.refused:>8}  {cpu}")


if __name__ == "__main__":
    main()
