"""EventBridge schedules. Each run takes "now" from the event's `time`, so a run can be replayed exactly.

Nightly, in this order: activate_pending, expire_points, remind_expiring, review_tiers, expire_coupons
(see template.yaml).
"""

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty import runtime
from loyalty.service.loyalty import Loyalty
from loyalty.service.runs import RunReport

logger = Logger()
tracer = Tracer()
metrics = Metrics()
# Stop early enough to record progress; the next run resumes where this one stopped.
MARGIN_MS = 15_000

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def scheduled(run: Callable[[Loyalty], Callable[..., RunReport]], metric: str) -> Handler:
    """A Lambda handler for one run of the service, with logging, tracing, metrics and the event parsed."""

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    @event_parser(model=EventBridgeModel)
    def handler(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
        report = run(runtime.service())(
            event.time, should_stop=lambda: context.get_remaining_time_in_millis() < MARGIN_MS
        )
        metrics.add_metric(name=metric, unit=MetricUnit.Count, value=report.applied)
        logger.info("scheduled run", extra={"report": report.__dict__})
        return report.__dict__

    return handler


activate_pending = scheduled(lambda service: service.activate_pending, "PendingActivated")
expire_points = scheduled(lambda service: service.expire_points, "LotsExpired")
remind_expiring = scheduled(lambda service: service.remind_expiring, "ExpiryRemindersPublished")
review_tiers = scheduled(lambda service: service.review_tiers, "TiersReviewed")
expire_coupons = scheduled(lambda service: service.expire_coupons, "CouponsExpired")
