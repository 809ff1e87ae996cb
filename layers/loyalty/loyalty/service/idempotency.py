"""Requests made idempotent by a caller's key: the stored first answer, and who may have it back."""

import hmac
import json
from typing import Any

from loyalty.domain.errors import Conflict
from loyalty.store.dynamo import Item
from loyalty.store.keys import digest


def fingerprint(request: dict[str, Any]) -> str:
    """What a key was first used for; a replay must ask for the same."""
    return digest(json.dumps(request, sort_keys=True))


def replay(stored: Item, request: str) -> dict[str, Any]:
    """The first answer to this key, if the request is the one it was first used for; else a 409."""
    if not hmac.compare_digest(str(stored.get("request_sha256", "")), request):
        raise Conflict("this Idempotency-Key was used for a different request", field="Idempotency-Key")
    response: dict[str, Any] = stored.get("response", {})
    return response
