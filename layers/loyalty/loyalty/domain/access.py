"""Who is calling: staff keys with roles, a member holding a token, or the operator. Pure: the API decides what a
caller may do (api/access.py); the store records who did it (store/audit.py)."""

from dataclasses import dataclass
from typing import Literal

Role = Literal["owner", "marketing", "cashier", "support", "analyst"]
ROLES: tuple[Role, ...] = ("owner", "marketing", "cashier", "support", "analyst")


@dataclass(frozen=True)
class Caller:
    """The credentials a request was made with, once verified. `kind`: "key" (a shop's staff key: `key_id`, `name`,
    `role`), "member" (a member token: `member_id`) or "operator" (provisions shops)."""

    kind: Literal["key", "member", "operator"]
    shop_id: str | None = None
    key_id: str | None = None
    name: str | None = None
    role: Role | None = None
    member_id: str | None = None
    adjustment_cap: int | None = None  # points a key may adjust per local day (support); None: no cap


class Denied(PermissionError):
    """Credentials missing or wrong (401, `unauthenticated`) or not enough for what was asked (403, `forbidden`)."""

    def __init__(self, code: Literal["unauthenticated", "forbidden"], message: str | None = None) -> None:
        super().__init__(code)
        self.code = code
        self.message = message or (
            "missing or invalid credentials" if code == "unauthenticated" else "these credentials do not open this"
        )
