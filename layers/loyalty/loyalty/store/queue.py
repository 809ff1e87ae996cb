"""The order-event queue, the coupon-grant queue and their dead-letter queues (the only SQS code)."""

import json
import os
from typing import TYPE_CHECKING, Any

import boto3

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient


class Queues:
    def __init__(self) -> None:
        self._client: SQSClient | None = None

    @property
    def client(self) -> "SQSClient":
        if self._client is None:
            self._client = boto3.client("sqs")
        return self._client

    def enqueue_order_event(self, envelope: dict[str, Any]) -> str:
        response = self.client.send_message(
            QueueUrl=os.environ["ORDERS_QUEUE_URL"],
            MessageBody=json.dumps(envelope, separators=(",", ":")),
            MessageAttributes={"shop_id": {"DataType": "String", "StringValue": str(envelope["shop_id"])}},
        )
        return response["MessageId"]

    def enqueue_order_events(self, envelopes: list[dict[str, Any]]) -> None:
        """Several events of one delivery (a WooCommerce order with its refunds), in as few requests as SQS allows."""
        self._send_all(os.environ["ORDERS_QUEUE_URL"], envelopes)

    def enqueue_grant_batches(self, batches: list[dict[str, Any]]) -> None:
        self._send_all(os.environ["COUPON_GRANTS_QUEUE_URL"], batches)

    def _send_all(self, url: str, bodies: list[dict[str, Any]]) -> None:
        for start in range(0, len(bodies), 10):  # SendMessageBatch takes ten at a time
            entries = [
                {"Id": str(n), "MessageBody": json.dumps(body, separators=(",", ":"))}
                for n, body in enumerate(bodies[start : start + 10])
            ]
            response = self.client.send_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]
            if response.get("Failed"):  # the caller answers 5xx (webhooks) or is retried (grants): nothing is lost
                raise RuntimeError(f"SQS refused {len(response['Failed'])} of {len(entries)} messages")

    def park(self, body: str, *, reason: str, code: str, message_id: str, dlq_env: str = "ORDERS_DLQ_URL") -> None:
        """Move a message that can never succeed to the dead-letter queue, saying why."""
        self.client.send_message(
            QueueUrl=os.environ[dlq_env],
            MessageBody=body,
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": reason[:1000]},
                "code": {"DataType": "String", "StringValue": code},
                "source_message_id": {"DataType": "String", "StringValue": message_id},
            },
        )
