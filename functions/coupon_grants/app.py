"""SQS -> one batch of a bulk coupon grant: a claim per member, then the batch's outcome recorded once."""

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
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
MAX_RECEIVES = int(os.environ.get("MAX_RECEIVES", "5"))


@tracer.capture_method(capture_response=False, capture_error=False)
def record_handler(record: SQSRecord) -> dict[str, int]:
    outcome = intake.handle_grant_batch(record, runtime.services().coupons, runtime.queues(), max_receives=MAX_RECEIVES)
    metrics.add_metric(name="CouponsGranted", unit=MetricUnit.Count, value=outcome.get("granted", 0))
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)  # keys and contacts stay out of traces
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
