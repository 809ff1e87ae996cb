"""EventBridge schedules. Each run takes "now" from the event's `time`, so a run can be replayed exactly.

Nightly, in this order: activate_pending, expire_points, remind_expiring, review_tiers, expire_coupons,
grant_birthdays, grant_monthly_coupons, publish_lottery_digests, review_segments (see template.yaml). expire_points only
dispatches: one message per day-shard on the runs queue, each expired by expire_points_shard, in parallel.
"""

import os
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty import runtime
from loyalty.runtime import Services
from loyalty.service.intake import handle_shard_work
from loyalty.service.runs import RunReport

logger = Logger()
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# Stop early enough to record progress; the next run (or the continuation message) resumes where this one stopped.
MARGIN_MS = 15_000
MAX_RECEIVES = int(os.environ.get("MAX_RECEIVES", "5"))

Handler = Callable[[dict[str, Any], LambdaContext], dict[str, Any]]


def report_metrics(report: RunReport, metric: str) -> None:
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=report.applied)
    # A run that stopped for time is resumed by the next run; the metric (and its alarm) makes it visible.
    metrics.add_metric(name="RunIncomplete", unit=MetricUnit.Count, value=0 if report.complete else 1)
    logger.info("scheduled run", extra={"report": report.view()})


def scheduled(run: Callable[[Services, datetime, Callable[[], bool]], RunReport], metric: str) -> Handler:
    """A Lambda handler for one run, with logging, tracing, metrics and the event parsed. `run` is given the
    container's services, the run's time and when to stop; it picks the capability its run needs."""

    @logger.inject_lambda_context
    @tracer.capture_lambda_handler(capture_response=False, capture_error=False)  # keys and contacts stay out of traces
    @metrics.log_metrics
    @event_parser(model=EventBridgeModel)
    def handler(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
        report = run(runtime.services(), event.time, lambda: context.get_remaining_time_in_millis() < MARGIN_MS)
        report_metrics(report, metric)
        return report.view()

    wrapped: Handler = handler  # Powertools' decorators are untyped
    return wrapped


activate_pending = scheduled(
    lambda s, time, stop: s.runs.activate_pending(time, s.orders, s.engagement, should_stop=stop), "PendingActivated"
)
remind_expiring = scheduled(
    lambda s, time, stop: s.runs.remind_expiring(time, s.points, s.wallet, should_stop=stop), "ExpiryRemindersPublished"
)
review_tiers = scheduled(
    lambda s, time, stop: s.runs.review_tiers(time, s.tiers, s.mall, s.privacy, should_stop=stop), "TiersReviewed"
)
grant_birthdays = scheduled(
    lambda s, time, stop: s.runs.grant_birthdays(time, s.engagement, should_stop=stop), "BirthdaysGranted"
)
review_segments = scheduled(
    lambda s, time, stop: s.runs.review_segments(time, s.segments, should_stop=stop), "SegmentsReviewed"
)
publish_lottery_digests = scheduled(
    lambda s, time, stop: s.runs.publish_lottery_digests(time, s.lotteries, should_stop=stop),
    "LotteryDigestsPublished",
)
grant_monthly_coupons = scheduled(
    lambda s, time, stop: s.runs.grant_monthly_coupons(time, s.engagement, runtime.queues(), should_stop=stop),
    "MonthlyCouponShopsServed",
)
expire_coupons = scheduled(
    lambda s, time, stop: s.runs.expire_coupons(time, s.coupons, should_stop=stop), "CouponsExpired"
)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
@event_parser(model=EventBridgeModel)
def expire_points(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    """Dispatch the expiry run: one message per day-shard for expire_points_shard."""
    report = runtime.services().runs.dispatch_expiry(event.time, runtime.queues())
    metrics.add_metric(name="ExpiryShardsDispatched", unit=MetricUnit.Count, value=report.due)
    logger.info("expiry dispatched", extra={"report": report.view()})
    return report.view()


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
def expire_points_shard(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """SQS -> one day-shard of the expiry run each; one that runs short of time queues its own continuation."""

    def record_handler(record: SQSRecord) -> dict[str, Any]:
        services = runtime.services()
        report = handle_shard_work(
            record,
            services.runs,
            services.points,
            services.wallet,
            runtime.queues(),
            max_receives=MAX_RECEIVES,
            should_stop=lambda: context.get_remaining_time_in_millis() < MARGIN_MS,
        )
        report_metrics(report, "LotsExpired")
        return report.view()

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
@event_parser(model=EventBridgeModel)
def export_table(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    """Weekly: the table's point-in-time export to S3, for Athena (service/exports.py)."""
    started = runtime.services().exports.export(event.time)
    metrics.add_metric(name="ExportsStarted", unit=MetricUnit.Count, value=1)
    logger.info("table export started", extra={"export": started})
    return started
