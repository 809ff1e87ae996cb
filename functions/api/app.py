"""API Gateway -> operator, merchant and member routes (layers/loyalty/loyalty/api/resolver.py)."""

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from loyalty.api import resolver

logger = Logger()
tracer = Tracer()
app = resolver.build()


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
@tracer.capture_lambda_handler(capture_response=False, capture_error=False)  # keys and contacts stay out of traces
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
