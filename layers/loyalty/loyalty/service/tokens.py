"""Member tokens: what a shop's backend hands its mini-program after its own login, so the member can read and
act on their own account (/v1/me) without the shop's key.

A token is a JWT (PyJWT, HS256) naming the shop and the member, valid for minutes, verified in the API function
without a database read: the signing keys come from Secrets Manager (MEMBER_TOKEN_SECRET_ARN), read once per
container and again every `reload_seconds`. The secret holds {"current": "<kid>", "<kid>": "<key>", ...}: tokens
are signed with the current key and carry its kid; to rotate, add a key and make it current, and remove the old one
once its tokens have expired (15 minutes by default).

Why not a Lambda authorizer: verifying an HMAC is microseconds once the key is in memory, and an authorizer would
be a second function's invocation (and cold start) for every token it has not cached; tokens live minutes and
belong to one member, so API Gateway's cache by token would seldom hit.
"""

import json
import os
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from loyalty.domain.access import Caller, Denied
from loyalty.domain.ledger import iso
from loyalty.service.access import SHOP_ID
from loyalty.store import aws

ISSUER = "loyalty"
DEFAULT_TTL = timedelta(minutes=15)
DASHBOARD = "dashboard"


class SigningKeys:
    """The deployment's member-token keys, from Secrets Manager."""

    def __init__(self, arn: str | None = None, *, reload_seconds: float = 300) -> None:
        self.arn = arn
        self.reload_seconds = reload_seconds
        self._keys: dict[str, str] = {}
        self._current = ""
        self._loaded = -float("inf")

    def _load(self) -> None:
        arn = self.arn or os.environ.get("MEMBER_TOKEN_SECRET_ARN")
        if not arn:
            raise RuntimeError("MEMBER_TOKEN_SECRET_ARN is not set: member tokens need the deployment's signing keys")
        answer = aws.call("secretsmanager", aws.client("secretsmanager").get_secret_value, SecretId=arn)
        value = json.loads(answer["SecretString"])
        self._current = str(value.pop("current"))
        self._keys = {str(kid): str(key) for kid, key in value.items()}
        if self._current not in self._keys:
            raise RuntimeError("the member token secret's current key is missing")
        self._loaded = time.monotonic()

    def current(self) -> tuple[str, str]:
        if time.monotonic() - self._loaded > self.reload_seconds:
            self._load()
        return self._current, self._keys[self._current]

    def key(self, kid: str) -> str | None:
        """The key of `kid`; an unknown kid reloads the keys (a rotation elsewhere), at most once a second."""
        if time.monotonic() - self._loaded > self.reload_seconds or (
            kid not in self._keys and time.monotonic() - self._loaded > 1
        ):
            self._load()
        return self._keys.get(kid)


class MemberTokens:
    """Member tokens (scope None), and with scope "dashboard" a shop's dashboard links: the same signature over
    {shop, the key that asked for the link}, read-only as an analyst, for 15 minutes."""

    def __init__(self, keys: SigningKeys, *, clock: Callable[[], datetime], scope: str | None = None) -> None:
        self.keys = keys
        self.clock = clock
        self.scope = scope

    def issue(self, shop_id: str, member_id: str, ttl: timedelta | None = None) -> dict[str, Any]:
        import jwt

        now = self.clock()
        expires = now + (ttl or DEFAULT_TTL)
        kid, key = self.keys.current()
        claims = {
            "iss": ISSUER,
            "aud": shop_id,
            "sub": member_id,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
        }
        if self.scope is not None:
            claims["scope"] = self.scope
        token = jwt.encode(claims, key, algorithm="HS256", headers={"kid": kid})
        return {"token": token, "expires_at": iso(expires.replace(microsecond=0))}

    def verify(self, token: str) -> Caller:
        """The member a token stands for; Denied('unauthenticated') for any token not signed by a key of ours, past
        its expiry, or missing a claim."""
        import jwt

        try:
            header = jwt.get_unverified_header(token)
            key = self.keys.key(str(header.get("kid", "")))
            if key is None:
                raise Denied("unauthenticated")
            # The audience is the shop the token opens (any of ours): checked below rather than against one value.
            claims = jwt.decode(
                token,
                key,
                algorithms=["HS256"],
                issuer=ISSUER,
                options={"require": ["iss", "aud", "sub", "exp", "iat"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise Denied("unauthenticated") from exc
        if not isinstance(claims["aud"], str) or not SHOP_ID.fullmatch(claims["aud"]):
            raise Denied("unauthenticated")
        if self.clock().timestamp() >= claims["exp"]:  # the service's clock decides (tests move it)
            raise Denied("unauthenticated")
        if claims.get("scope") != self.scope:  # a dashboard link never opens /v1/me, nor a member token a dashboard
            raise Denied("unauthenticated")
        if self.scope == DASHBOARD:
            return Caller(
                kind="key", shop_id=str(claims["aud"]), key_id=str(claims["sub"]), role="analyst", name="dashboard link"
            )
        return Caller(kind="member", shop_id=str(claims["aud"]), member_id=str(claims["sub"]))
