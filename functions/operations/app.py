"""Operations an operator invokes by hand (`aws lambda invoke`), never on a schedule.

migrate_members: after deploying a release that gave enrolment more to do (the MembersIndex keys, a claimed
referral code, the next birthday filed), bring the members enrolled before it up to date. It Scans the table
once, in segments; invoke it with `{"segments": 4}`, then again with its `resume` until it answers
`"complete": true`. Safe to repeat: a member brought up to date is skipped.
"""

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty import runtime
from loyalty.service.members import Migration

logger = Logger()
tracer = Tracer()
metrics = Metrics()
MARGIN_MS = 15_000  # stop early enough to answer where to resume


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)
@metrics.log_metrics
@event_parser(model=Migration)
def migrate_members(event: Migration, context: LambdaContext) -> dict[str, Any]:
    report = runtime.services().members.bring_up_to_date(
        event, lambda: context.get_remaining_time_in_millis() < MARGIN_MS
    )
    metrics.add_metric(name="MembersMigrated", unit=MetricUnit.Count, value=report["migrated"])
    logger.info("members migration", extra={"report": report})
    return report
