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

    def enqueue_grant_batches(self, batches: list[dict[str, Any]]) -> None:
        url = os.environ["COUPON_GRANTS_QUEUE_URL"]
        for start in range(0, len(batches), 10):  # SendMessageBatch takes ten at a time
            entries = [
                {"Id": str(n), "MessageBody": json.dumps(batch, separators=(",", ":"))}
                for n, batch in enumerate(batches[start : start + 10])
            ]
            response = self.client.send_message_batch(QueueUrl=url, Entries=entries)  # type: ignore[arg-type]
            if response.get("Failed"):
                raise RuntimeError(f"could not queue {len(response['Failed'])} grant batches")

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
