"""The order-event queue, the coupon-grant queue and their dead-letter queues (the only SQS code)."""

import json
import os
from typing import TYPE_CHECKING, Any

from loyalty.domain.errors import Retryable, TooLarge
from loyalty.store import aws

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient


# Every queue's MaximumMessageSize in template.yaml (a test keeps the two equal), less room for our attributes.
MESSAGE_MAX_BYTES = 262_144
ATTRIBUTES_ALLOWANCE = 2_048


class Queues:
    def __init__(self) -> None:
        self._client: SQSClient | None = None

    @property
    def client(self) -> "SQSClient":
        if self._client is None:
            self._client = aws.client("sqs")
        return self._client

    def enqueue_order_event(self, envelope: dict[str, Any]) -> str:
        body = _body(envelope)
        attributes = {"shop_id": {"DataType": "String", "StringValue": str(envelope["shop_id"])}}
        response = aws.call(
            "sqs",
            self.client.send_message,
            QueueUrl=os.environ["ORDERS_QUEUE_URL"],
            MessageBody=body,
            MessageAttributes=attributes,
        )
        return str(response["MessageId"])

    def enqueue_order_events(self, envelopes: list[dict[str, Any]]) -> None:
        """Several events of one delivery (a WooCommerce order with its refunds), in as few requests as SQS allows."""
        self._send_all(os.environ["ORDERS_QUEUE_URL"], envelopes)

    def enqueue_grant_batches(self, batches: list[dict[str, Any]]) -> None:
        self._send_all(os.environ["COUPON_GRANTS_QUEUE_URL"], batches)

    def enqueue_shard_work(self, works: list[dict[str, Any]]) -> None:
        """Day-shards of a scheduled run, for its parallel workers."""
        self._send_all(os.environ["RUNS_QUEUE_URL"], works)

    def _send_all(self, url: str, bodies: list[dict[str, Any]]) -> None:
        """SendMessageBatch takes ten messages at a time, and at most MESSAGE_MAX_BYTES in all."""
        batch: list[str] = []
        for text in map(_body, bodies):
            if len(batch) == 10 or sum(map(len, batch)) + len(text) > MESSAGE_MAX_BYTES:
                self._send_batch(url, batch)
                batch = []
            batch.append(text)
        if batch:
            self._send_batch(url, batch)

    def _send_batch(self, url: str, bodies: list[str]) -> None:
        entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies)]
        response = aws.call("sqs", self.client.send_message_batch, QueueUrl=url, Entries=entries)
        if response.get("Failed"):  # the caller answers 5xx (webhooks) or is retried (grants): nothing is lost
            raise Retryable(f"SQS refused {len(response['Failed'])} of {len(entries)} messages")

    def park(self, body: str, *, reason: str, code: str, message_id: str, dlq_env: str = "ORDERS_DLQ_URL") -> None:
        """Move a message that can never succeed to the dead-letter queue, saying why."""
        aws.call(
            "sqs",
            self.client.send_message,
            QueueUrl=os.environ[dlq_env],
            MessageBody=body,
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": reason[:1000]},
                "code": {"DataType": "String", "StringValue": code},
                "source_message_id": {"DataType": "String", "StringValue": message_id},
            },
        )


def _body(message: dict[str, Any]) -> str:
    """The message as JSON, refused before it is sent if no queue of ours would take it (nothing is half sent)."""
    body = json.dumps(message, separators=(",", ":"))
    if len(body.encode()) > MESSAGE_MAX_BYTES - ATTRIBUTES_ALLOWANCE:
        raise TooLarge(
            f"the event is {len(body.encode())} bytes queued; at most {MESSAGE_MAX_BYTES - ATTRIBUTES_ALLOWANCE}"
        )
    return body
