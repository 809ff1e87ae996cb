"""The order-event queue and its dead-letter queue (the only SQS code)."""

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

    def park(self, body: str, *, reason: str, code: str, message_id: str) -> None:
        """Move a message that can never succeed to the dead-letter queue, saying why."""
        self.client.send_message(
            QueueUrl=os.environ["ORDERS_DLQ_URL"],
            MessageBody=body,
            MessageAttributes={
                "reason": {"DataType": "String", "StringValue": reason[:1000]},
                "code": {"DataType": "String", "StringValue": code},
                "source_message_id": {"DataType": "String", "StringValue": message_id},
            },
        )
