"""Queued work (order events, bulk coupon grant batches): apply each once, retry what may succeed later, park
what never will."""

from collections.abc import Callable
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from loyalty.domain.errors import DomainError, Retryable, first_problem
from loyalty.domain.orders import OrderEnvelope
from loyalty.service.coupons import Coupons, GrantBatch
from loyalty.service.runs import RunReport, Runs, ShardWork
from loyalty.store.queue import Queues

if TYPE_CHECKING:
    from loyalty.service.orders import Orders
    from loyalty.service.points import Points
    from loyalty.service.wallet import Wallet

logger = Logger(child=True)


def handle_record(record: SQSRecord, orders: "Orders", queues: Queues, *, max_receives: int) -> str:
    """Returns the outcome; raising makes BatchProcessor report the record failed, so SQS redelivers it."""
    try:
        envelope = OrderEnvelope.model_validate_json(record.body)
    except ValidationError as exc:
        where, what = first_problem(exc)
        return _park(record, queues, "invalid", f"{where}: {what}")
    event = envelope.event
    context = {"shop_id": envelope.shop_id, "event_type": event.type, "order_id": event.data.order_id}
    last_delivery = int(record.attributes.approximate_receive_count) >= max_receives
    try:
        outcome = orders.apply(envelope.shop_id, event)
    except Retryable as exc:
        if last_delivery:
            return _park(record, queues, exc.code, exc.message, **context)
        logger.warning("order event will be retried", extra={**context, "reason": exc.message})
        raise
    except DomainError as exc:
        return _park(record, queues, exc.code, f"{exc.field}: {exc.message}" if exc.field else exc.message, **context)
    except Exception as exc:  # a bug or a missing permission: retried, and never parked without its reason
        logger.exception("order event failed unexpectedly", extra=context)
        if last_delivery:
            return _park(record, queues, "internal", _described(exc), **context)
        raise
    logger.info("order event settled", extra={**context, "outcome": outcome})
    return outcome


def handle_grant_batch(record: SQSRecord, coupons: Coupons, queues: Queues, *, max_receives: int) -> dict[str, int]:
    """One batch of a bulk grant. Members it cannot grant to are part of its outcome, not failures; only a
    malformed batch is parked, and contention is retried (each member's claim is idempotent on its own key)."""
    try:
        batch = GrantBatch.model_validate_json(record.body)
    except ValidationError as exc:
        where, what = first_problem(exc)
        _park(record, queues, "invalid", f"{where}: {what}", dlq_env="COUPON_GRANTS_DLQ_URL")
        return {"parked": 1}
    last_delivery = int(record.attributes.approximate_receive_count) >= max_receives
    try:
        outcome = coupons.apply_grant_batch(batch)
    except Retryable as exc:
        if last_delivery:
            _park(record, queues, exc.code, exc.message, dlq_env="COUPON_GRANTS_DLQ_URL", grant_id=batch.grant_id)
            return {"parked": 1}
        raise
    except DomainError as exc:  # the template is gone, or the shop: nothing in this batch can be granted
        _park(record, queues, exc.code, exc.message, dlq_env="COUPON_GRANTS_DLQ_URL", grant_id=batch.grant_id)
        return {"parked": 1}
    except Exception as exc:
        logger.exception("coupon grant batch failed unexpectedly", extra={"grant_id": batch.grant_id})
        if last_delivery:
            _park(record, queues, "internal", _described(exc), dlq_env="COUPON_GRANTS_DLQ_URL", grant_id=batch.grant_id)
            return {"parked": 1}
        raise
    logger.info("coupon grant batch applied", extra={"grant_id": batch.grant_id, **outcome})
    return outcome


def handle_shard_work(
    record: SQSRecord,
    runs: Runs,
    points: "Points",
    wallet: "Wallet",
    queues: Queues,
    *,
    max_receives: int,
    should_stop: Callable[[], bool],
) -> RunReport:
    """One day-shard of a fanned-out run. A worker short of time queues where it stopped and succeeds; a
    failure is retried (every lot is handled by its own conditional write, so a retry repeats nothing)."""
    try:
        work = ShardWork.model_validate_json(record.body)
    except ValidationError as exc:
        where, what = first_problem(exc)
        _park(record, queues, "invalid", f"{where}: {what}", dlq_env="RUNS_DLQ_URL")
        return RunReport(job="invalid", time="", complete=True)
    try:
        report = runs.expire_shard(work, points, wallet, should_stop=should_stop)
    except Exception as exc:
        last_delivery = int(record.attributes.approximate_receive_count) >= max_receives
        logger.warning("day-shard will be retried", extra={"day": work.day, "shard": work.shard, "error": repr(exc)})
        if last_delivery:
            _park(record, queues, getattr(exc, "code", "internal"), _described(exc), dlq_env="RUNS_DLQ_URL")
            return RunReport(job=work.job, time=work.time, complete=False)
        raise
    if report.resume is not None:
        queues.enqueue_shard_work([report.resume.model_dump(exclude_none=True)])
    return report


def _park(
    record: SQSRecord, queues: Queues, code: str, reason: str, *, dlq_env: str = "ORDERS_DLQ_URL", **context: str
) -> str:
    queues.park(record.body, reason=reason, code=code, message_id=record.message_id, dlq_env=dlq_env)
    logger.warning("order event parked in the dead-letter queue", extra={**context, "code": code, "reason": reason})
    return "parked"


def _described(exc: Exception) -> str:
    """An unexpected error as the DLQ's reason: its kind and message (AWS's and ours carry no personal data)."""
    return f"{type(exc).__name__}: {exc}"[:1000]
