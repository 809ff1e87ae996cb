"""DynamoDB stream -> the shops' figures (service/reports.py), each change applied exactly once.

A batch is one stream shard's records in order. What contention leaves unapplied is reported from its first
record (ReportBatchItemFailures: the stream is read again from there); an error repeats with the batch halved
(BisectBatchOnFunctionError) until the records that cause it are sent to the AggregatesDeadLetterQueue
with their shard and sequence numbers (template.yaml), and the stream moves on.
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty import runtime
from loyalty.service.reports import NotAllApplied
from loyalty.store.reports import change_of

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)  # images hold members' details
@metrics.log_metrics
@event_source(data_class=DynamoDBStreamEvent)
def handler(event: DynamoDBStreamEvent, context: LambdaContext) -> dict[str, Any]:
    records = [record.raw_event for record in event.records]
    changes = [change_of(record) for record in records]
    try:
        runtime.services().reports.aggregate(changes)
    except NotAllApplied as exc:
        first = records[exc.applied]["dynamodb"]["SequenceNumber"]
        logger.warning("figures contended; the stream resumes from a record", extra={"applied": exc.applied})
        metrics.add_metric(name="AggregatedChanges", unit=MetricUnit.Count, value=exc.applied)
        return {"batchItemFailures": [{"itemIdentifier": first}]}
    metrics.add_metric(name="AggregatedChanges", unit=MetricUnit.Count, value=len(changes))
    return {"batchItemFailures": []}
