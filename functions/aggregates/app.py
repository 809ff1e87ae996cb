"""DynamoDB stream -> the shops' figures (service/reports.py), each change applied exactly once.

A batch is one stream shard's records in order; the event names the shard because the event source mapping has a
tumbling window (template.yaml), whose state we do not use. What contention leaves unapplied is reported from its
first record (ReportBatchItemFailures: the stream is read again from there); an error repeats with the batch
halved (BisectBatchOnFunctionError) until the records that cause it are described to the AggregatesDeadLetterQueue,
and the stream moves on.
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
    shard = event.raw_event.get("shardId")
    if not shard:  # without its tumbling window, the event source mapping does not say which shard a batch is of
        raise ValueError("the stream event names no shardId: the event source mapping needs TumblingWindowInSeconds")
    records = [record.raw_event for record in event.records]
    changes = [change_of(record) for record in records]
    try:
        runtime.services().reports.aggregate(shard, changes)
    except NotAllApplied as exc:
        first = records[exc.applied]["dynamodb"]["SequenceNumber"]
        logger.warning("figures contended; the stream resumes from a record", extra={"applied": exc.applied})
        metrics.add_metric(name="AggregatedChanges", unit=MetricUnit.Count, value=exc.applied)
        return {"state": {}, "batchItemFailures": [{"itemIdentifier": first}]}
    metrics.add_metric(name="AggregatedChanges", unit=MetricUnit.Count, value=len(changes))
    return {"state": {}, "batchItemFailures": []}  # a tumbling window's answer must carry its state
