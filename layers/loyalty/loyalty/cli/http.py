"""The API over HTTP, with the standard library: JSON in and out, and the status."""

import json
import os
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:3000"


def base_url(given: str | None) -> str:
    return (given or os.environ.get("LOYALTY_URL") or DEFAULT_URL).rstrip("/")


def call(
    method: str, url: str, *, body: bytes | None = None, headers: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, Any]:
    """(status, parsed JSON or None). A refusal (4xx, 5xx) is an answer too, not an exception."""
    request = urllib.request.Request(  # noqa: S310 (the URL is the user's own API)
        url, data=body, method=method, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")
