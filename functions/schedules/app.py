"""EventBridge schedules. Each run takes "now" from the event's `time`, so a run can be replayed exactly.

Nightly, in this order: activate_pending, expire_points, remind_expiring, review_tiers (see template.yaml).
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty import runtime
from loyalty.service.runs import RunReport

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Stop early enough to record progress; the next run resumes where this one stopped.
MARGIN_MS = 15_000

Run = Callable[..., RunReport]


def _run(run: Run, metric: str, event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    report = run(event.time, should_stop=lambda: context.get_remaining_time_in_millis() < MARGIN_MS)
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=report.applied)
    logger.info("scheduled run", extra={"report": report.__dict__})
    return report.__dict__


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=EventBridgeModel)
def activate_pending(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    return _run(runtime.service().activate_pending, "PendingActivated", event, context)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=EventBridgeModel)
def expire_points(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    return _run(runtime.service().expire_points, "LotsExpired", event, context)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=EventBridgeModel)
def remind_expiring(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    return _run(runtime.service().remind_expiring, "ExpiryRemindersPublished", event, context)


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=EventBridgeModel)
def review_tiers(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    return _run(runtime.service().review_tiers, "TiersReviewed", event, context)
