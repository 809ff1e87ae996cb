"""The weekly export of the table to S3 for Athena (template.yaml ExportTableFunction, README "Questions over
years"): DynamoDB's own point-in-time export, which reads no capacity and writes DYNAMODB_JSON files under
exports/AWSDynamoDB/<export id>/data/, the folder the Glue table's `export` partition names."""

import os
from datetime import datetime
from typing import Any

from loyalty.store.dynamo import Dynamo
from loyalty.store.keys import schedule_state_key

PREFIX = "exports"
JOB = "export-table"


class Exports:
    def __init__(self, db: Dynamo, *, bucket: str | None = None) -> None:
        self.db = db
        self.bucket = bucket or os.environ.get("EXPORT_BUCKET", "")

    def export(self, time: datetime) -> dict[str, Any]:
        """Start the export of the table as it is at `time`'s run, once per run day: a retried run (EventBridge
        retries) answers the export it started (kept as the run's state, and the day is the request's client
        token, which DynamoDB also honours for 8 hours)."""
        day = f"{time:%Y-%m-%d}"
        state = self.db.get(*schedule_state_key(JOB))
        if state is not None and state.get("day") == day:
            return {"export_arn": state["export_arn"], "status": state["status"], "day": day}
        started = self.db.export_to_s3(self.bucket, PREFIX, client_token=f"weekly-{day}")
        pk, sk = schedule_state_key(JOB)
        self.db.put({"PK": pk, "SK": sk, "type": "run_state", "day": day, **started})
        return started | {"day": day}
