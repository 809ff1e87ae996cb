"""Print the API's OpenAPI document (`make openapi` writes it to openapi.json)."""

import sys

from infra.local import lambdas  # noqa: F401 - puts the layer on sys.path
from loyalty import runtime
from loyalty.api import routes

if __name__ == "__main__":
    sys.stdout.write(routes.openapi_json(routes.build(runtime.service, runtime.queues)) + "\n")
