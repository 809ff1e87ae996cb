"""A table's DynamoDB stream delivered to the function that consumes it, as Lambda's event source mapping does:
each shard read in order from its start, a batch at a time (the mapping's BatchSize, or what has gathered once its
MaximumBatchingWindowInSeconds has passed since a short batch was first seen); a batch's reported failure
(ReportBatchItemFailures) read again from that record; a batch that raises delivered again, halved
(BisectBatchOnFunctionError), until one record alone fails on every attempt, which is then skipped and reported
(AWS sends its description to the on-failure destination). Used by the local stack and the tests.
"""

import contextlib
import http.client
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import boto3

from infra.local import lambdas, moto_patches

log = logging.getLogger("loyalty.local")
ATTEMPTS = 3  # deliveries of a failing batch before it is halved (the template's MaximumRetryAttempts, shortened)


class StreamPoller:
    def __init__(
        self,
        function: lambdas.Function,
        table_name: str,
        *,
        batch_size: int | None = None,
        window: float | None = None,
        trim: bool = True,
        exclusive: Callable[[], Any] | None = None,
        raw_endpoint: str = "",
    ) -> None:
        self.function = function
        self.table_name = table_name
        self.batch_size = batch_size or function.stream_batch_size
        self.window = function.stream_window if window is None else window
        self.waiting: dict[str, float] = {}  # shard id -> when a short batch was first seen waiting there
        self.trim = trim  # drop delivered records from moto's stream (in-process moto only)
        self.exclusive = exclusive or contextlib.nullcontext
        # The stack's own moto process: GetRecords read as the mapping reads inside AWS, its JSON as sent, not
        # parsed through botocore's shapes record by record (15% of the stack's time while members enrolled).
        self.raw = urlsplit(raw_endpoint) if raw_endpoint else None
        self.connection: http.client.HTTPConnection | None = None
        self.streams = boto3.client("dynamodbstreams")
        self.region = self.streams.meta.region_name
        self.arn = boto3.client("dynamodb").describe_table(TableName=table_name)["Table"]["LatestStreamArn"]
        self.next: dict[str, str] = {}  # shard id -> the sequence number to read from next
        self.filters = [json.loads(f["Pattern"]) for f in function.stream_filters]
        self.skipped: list[dict[str, Any]] = []  # records given up on (what AWS sends to the on-failure destination)

    def poll_once(self, *, flush: bool = False) -> int:
        """Deliver one batch of each shard's records whose batch is full or whose window has passed (any batch,
        with `flush`); returns how many were delivered."""
        if self.trim:  # in-process moto: its one shard, read as the mapping reads inside AWS
            with self.exclusive():
                shard_id, records = moto_patches.stream_records(self.table_name, self.next, self.batch_size)
            return self._poll_shard(shard_id, records, flush)
        delivered = 0
        for shard_id in self._shards():
            iterator = self._iterator(shard_id, self.next.get(shard_id))
            records = self._get_records(iterator)
            delivered += self._poll_shard(shard_id, records, flush)
        return delivered

    def drain(self) -> int:
        """Deliver until the stream has nothing new, without waiting for batching windows."""
        total = 0
        while True:
            delivered = self.poll_once(flush=True)
            if not delivered:
                return total
            total += delivered

    def records(self) -> list[dict[str, Any]]:
        """Every record on the stream now, unfiltered and undelivered, as Lambda would deliver them (tests and
        benchmarks replay them at will)."""
        out: list[dict[str, Any]] = []
        for shard_id in self._shards():
            iterator = self._iterator(shard_id, None)
            while True:
                page = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                out += [self._as_lambda_delivers(record) for record in page["Records"]]
                if not page["Records"]:
                    break
                iterator = page["NextShardIterator"]
        return out

    def _shards(self) -> list[str]:
        shards = self.streams.describe_stream(StreamArn=self.arn)["StreamDescription"]["Shards"]
        return [shard["ShardId"] for shard in shards]

    def _iterator(self, shard_id: str, start: str | None) -> str:
        """A shard iterator at sequence number `start`, or at the shard's oldest record."""
        at = {"ShardIteratorType": "AT_SEQUENCE_NUMBER", "SequenceNumber": start} if start else {}
        iterator = self.streams.get_shard_iterator(
            StreamArn=self.arn, ShardId=shard_id, **({"ShardIteratorType": "TRIM_HORIZON"} | at)
        )
        return str(iterator["ShardIterator"])

    def _get_records(self, iterator: str) -> list[dict[str, Any]]:
        if self.raw is None:
            return list(self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)["Records"])
        body = json.dumps({"ShardIterator": iterator, "Limit": self.batch_size})
        headers = {
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDBStreams_20120810.GetRecords",
            # what moto routes by: the service and region of the signature's scope (moto checks no signature)
            "Authorization": f"AWS4-HMAC-SHA256 Credential=local/20260101/{self.region}/dynamodb/aws4_request",
        }
        for attempt in (1, 2):
            if self.connection is None:
                self.connection = http.client.HTTPConnection(self.raw.hostname or "", self.raw.port, timeout=30)
            try:
                self.connection.request("POST", "/", body, headers)
                response = self.connection.getresponse()
                answer = json.loads(response.read())
            except (OSError, http.client.HTTPException):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise RuntimeError(f"GetRecords answered {response.status}: {answer}")
            return list(answer["Records"])
        raise AssertionError("unreachable")

    def _poll_shard(self, shard_id: str, records: list[dict[str, Any]], flush: bool) -> int:
        """Deliver `records` (the shard's, from where delivery stands) if their batch is ready."""
        if not records:
            return 0
        now = time.monotonic()
        if len(records) < self.batch_size and not flush and now - self.waiting.setdefault(shard_id, now) < self.window:
            return 0  # a short batch waits out the window (read again then)
        self.waiting.pop(shard_id, None)
        last = records[-1]["dynamodb"]["SequenceNumber"]
        events = [self._as_lambda_delivers(record) for record in records]
        events = [event for event in events if not self.filters or any(matches(p, event) for p in self.filters)]
        done = self._deliver(shard_id, events) if events else 0
        if done < len(events):  # the rest is delivered again from its first record, next poll
            self.next[shard_id] = events[done]["dynamodb"]["SequenceNumber"]
            return done
        self.next[shard_id] = str(int(last) + 1)
        if self.trim:
            with self.exclusive():
                moto_patches.trim_stream(self.table_name, int(last))
        return len(records)

    def _deliver(self, shard_id: str, events: list[dict[str, Any]]) -> int:
        """How many of `events`, from the first, the function has taken (records given up on included)."""
        for _ in range(ATTEMPTS):
            try:
                result = lambdas.invoke(self.function, self.event(shard_id, events))
            except Exception:
                log.exception("%s failed on %d stream records", self.function.logical_id, len(events))
                continue
            failures = [f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])]
            if not failures:
                return len(events)
            numbers = [e["dynamodb"]["SequenceNumber"] for e in events]
            return min(numbers.index(f) for f in failures if f in numbers) if set(failures) & set(numbers) else 0
        if len(events) == 1:
            self.skipped.append(events[0])
            log.error(
                "%s gave up on stream record %s", self.function.logical_id, events[0]["dynamodb"]["SequenceNumber"]
            )
            return 1
        middle = len(events) // 2
        first = self._deliver(shard_id, events[:middle])
        return first if first < middle else middle + self._deliver(shard_id, events[middle:])

    def event(self, shard_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        """A batch as the event source mapping sends it with a tumbling window: the records, their shard, and the
        window's state (always empty here, as the aggregator keeps none)."""
        now = datetime.now(UTC).replace(microsecond=0)
        return {
            "Records": events,
            "shardId": shard_id,
            "eventSourceARN": self.arn,
            "window": {"start": now.isoformat().replace("+00:00", "Z"), "end": now.isoformat().replace("+00:00", "Z")},
            "state": {},
            "isFinalInvokeForWindow": False,
            "isWindowTerminatedEarly": False,
        }

    def _as_lambda_delivers(self, record: dict[str, Any]) -> dict[str, Any]:
        stream = dict(record["dynamodb"])
        created = stream.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):  # as botocore parses it (aware), or epoch seconds read in process
            stream["ApproximateCreationDateTime"] = int(created.timestamp())
        elif isinstance(created, float):
            stream["ApproximateCreationDateTime"] = int(created)
        return {
            "eventID": record["eventID"],
            "eventName": record["eventName"],
            "eventVersion": record.get("eventVersion", "1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": record.get("awsRegion", "us-east-1"),
            "dynamodb": stream,
            "eventSourceARN": self.arn,
        }


def matches(pattern: Any, value: Any) -> bool:
    """Whether an event matches a Lambda filter pattern of the shape the template uses: nested objects whose
    leaves list the values allowed."""
    if isinstance(pattern, list):
        return value in pattern
    if not isinstance(pattern, dict) or not isinstance(value, dict):
        return False
    return all(key in value and matches(inner, value[key]) for key, inner in pattern.items())
