"""The environment for talking to the in-process moto mock and nothing else (tests and benchmarks).

Call before boto3 makes its first client: fake credentials, one region, no endpoint override (so no request can
reach a real or stray endpoint), and Powertools' tracing and metrics off.
"""

import os


def use_in_process_moto(**extra: str) -> None:
    os.environ.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_SECURITY_TOKEN="testing",
        AWS_SESSION_TOKEN="testing",
        POWERTOOLS_TRACE_DISABLED="true",
        POWERTOOLS_METRICS_DISABLED="true",
        AWS_ACCOUNT_ID_ENDPOINT_MODE="disabled",  # botocore would send stream calls to a host moto does not route
        **extra,
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
