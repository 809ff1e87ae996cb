"""Print the API's OpenAPI document (`make openapi` writes it to openapi.json)."""

import sys

from infra.local import lambdas  # noqa: F401 - puts the layer on sys.path
from loyalty.api import resolver

if __name__ == "__main__":
    sys.stdout.write(resolver.openapi_json(resolver.build()) + "\n")
