"""Signed webhook intake: verify over the raw bytes, then map to our order events."""
