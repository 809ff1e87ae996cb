"""SQS -> one order event, one DynamoDB transaction. Failed records are reported singly (partial batch)."""

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty import runtime
from loyalty.service import intake

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# A batch whose every record failed is reported like any other: SQS retries just those records.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# The queue's maxReceiveCount (template.yaml): on the last delivery a still-failing event is parked with its reason.
MAX_RECEIVES = int(os.environ.get("MAX_RECEIVES", "5"))


@tracer.capture_method(capture_response=False, capture_error=False)
def record_handler(record: SQSRecord) -> str:
    outcome = intake.handle_record(record, runtime.services().orders, runtime.queues(), max_receives=MAX_RECEIVES)
    metrics.add_metric(name=f"OrderEvents_{outcome}", unit=MetricUnit.Count, value=1)
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)  # keys and contacts stay out of traces
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
