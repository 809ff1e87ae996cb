"""The boto3 clients of the store modules, and AWS's failures as domain errors.

Timeouts sit well below the functions' own (10 s for the API and webhooks): botocore's defaults (60 s to connect,
60 s to read) would let one unreachable endpoint use up a whole invocation. Two attempts of at most 1 s to connect
and 2 s to read leave time to answer 503 (the sender retries) or to report the record failed (SQS redelivers).
"""

from collections.abc import Callable
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from loyalty.domain.errors import Retryable, TooLarge

CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2})

# Failures that say "not now" rather than "no": the endpoint could not be reached, or answered too late.
TRANSPORT_ERRORS = (BotoConnectionError, HTTPClientError)
# Error codes that say the same, whichever service answers them.
BUSY_CODES = {
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "Throttling",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "TransactionInProgressException",
    "RequestThrottled",
    "KMS.ThrottlingException",
}
# What AWS says when a request is over one of its size limits (item, transaction, message).
_TOO_LARGE = ("size", "4 MB", "shorter than", "longer than", "too long")

R = TypeVar("R")


def client(service: str) -> Any:
    return boto3.client(service, config=CONFIG)  # type: ignore[call-overload]


def call(service: str, method: Callable[..., R], **params: Any) -> R:
    """`method(**params)`, with an outage or throttling raised as Retryable and a size limit as TooLarge;
    any other ClientError is raised as it is (a bug or a missing permission: not the caller's to fix)."""
    try:
        return method(**params)
    except TRANSPORT_ERRORS as exc:
        raise Retryable(f"{service} is unreachable ({type(exc).__name__})") from exc
    except ClientError as exc:
        raise translate(service, exc) from exc


def translate(service: str, exc: ClientError) -> Exception:
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    if code in BUSY_CODES:
        return Retryable(f"{service} is busy ({code})")
    if code in ("ValidationException", "InvalidParameterValue", "BatchRequestTooLong") and any(
        marker in message for marker in _TOO_LARGE
    ):
        return TooLarge(f"{service} refused a request over its size limit: {message}")
    return exc
