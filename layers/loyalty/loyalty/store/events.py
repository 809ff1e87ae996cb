"""Publishing domain events (points.expiring, ...) to the stack's EventBridge bus (the only EventBridge code)."""

import json
import os
from typing import TYPE_CHECKING, Any

from loyalty.domain.errors import Retryable
from loyalty.store import aws

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient

SOURCE = "loyalty"


class Events:
    def __init__(self) -> None:
        self._client: EventBridgeClient | None = None

    @property
    def client(self) -> "EventBridgeClient":
        if self._client is None:
            self._client = aws.client("events")
        return self._client

    def publish(self, detail_type: str, detail: dict[str, Any]) -> None:
        response = aws.call(
            "events",
            self.client.put_events,
            Entries=[
                {
                    "EventBusName": os.environ.get("EVENT_BUS_NAME", "default"),
                    "Source": SOURCE,
                    "DetailType": detail_type,
                    "Detail": json.dumps(detail, separators=(",", ":")),
                }
            ],
        )
        if response.get("FailedEntryCount"):
            raise Retryable(f"EventBridge refused {detail_type}: {response['Entries'][0].get('ErrorCode')}")
