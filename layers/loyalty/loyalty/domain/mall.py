"""The points mall (积分商城): items a member exchanges points for, and the life of an exchange. Pure: an item,
the member's tier and the time come in; whether they may exchange, and what an exchange may become, go out."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from loyalty.domain.orders import DecimalString, Identifier

Kind = Literal["coupon", "goods"]
Status = Literal["issued", "awaiting_payment", "pending", "shipped", "delivered", "cancelled"]

# What the shop may move a goods exchange to, from each status. One with a cash part waits for the shop's platform
# to collect it (the exchange id is the order's reference there), then is `pending` like any other. A coupon
# exchange is `issued` once and stays so (the coupon itself is then used or expires); a delivered one is final.
MOVES: dict[str, set[str]] = {
    "awaiting_payment": {"pending", "cancelled"},
    "pending": {"shipped", "cancelled"},
    "shipped": {"delivered", "cancelled"},
}
CANCELLED: Status = "cancelled"
MAX_QUANTITY = 100  # units of one item per exchange


class ItemRequest(BaseModel):
    """What a shop sends to list an item in its mall."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Kind
    name: Annotated[str, Field(min_length=1, max_length=200)]
    points: Annotated[int, Field(ge=1, le=100_000_000, strict=True)] = Field(description="points per unit")
    stock: Annotated[int, Field(ge=0, le=10_000_000, strict=True)]
    per_member_limit: Annotated[int, Field(ge=1, le=1_000_000, strict=True)] | None = Field(
        default=None, description="units one member may exchange in all (absent: no limit)"
    )
    template_id: Identifier | None = Field(default=None, description="coupon items: the coupon template granted")
    sku: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    image_url: Annotated[str, Field(max_length=2048, pattern=r"^https://")] | None = None
    ships: bool = Field(default=False, description="goods items: a physical gift the shop ships")
    cash: DecimalString | None = Field(
        default=None, description="money per unit on top of the points (e.g. 500 points + 9.90), collected by the shop"
    )
    from_: AwareDatetime | None = Field(default=None, alias="from")
    until: AwareDatetime | None = None
    tiers: list[Annotated[str, Field(min_length=1, max_length=64)]] | None = Field(
        default=None, max_length=20, description="only members of these tiers (absent: everyone)"
    )
    visible: bool = True

    @model_validator(mode="after")
    def _consistent(self) -> "ItemRequest":
        if self.kind == "coupon" and self.template_id is None:
            raise ValueError("template_id: a coupon item names the coupon template it grants")
        if self.kind == "goods" and self.template_id is not None:
            raise ValueError("template_id: only coupon items grant a coupon template")
        if self.kind == "coupon" and self.cash is not None:
            raise ValueError("cash: only goods items take a cash part (a coupon is issued at once)")
        if self.from_ and self.until and self.until <= self.from_:
            raise ValueError("until: must be after from")
        return self


class Item(BaseModel):
    """A mall item as stored: the request, its id and money in minor units."""

    model_config = ConfigDict(frozen=True)

    item_id: str
    kind: Kind
    name: str
    points: int
    stock: int
    per_member_limit: int | None = None
    template_id: str | None = None
    sku: str | None = None
    image_url: str | None = None
    ships: bool = False
    cash: int = 0  # minor units per unit
    starts: datetime | None = None
    until: datetime | None = None
    tiers: list[str] | None = None
    visible: bool = True
    created_at: datetime

    def why_not(self, tier: str | None, at: datetime) -> str | None:
        """Why a member of `tier` may not exchange this item at `at`, or None if they may (stock and their limit
        are the exchange's own conditions)."""
        if not self.visible:
            return "this item is not offered"
        if self.starts is not None and at < self.starts:
            return "this item is not offered yet"
        if self.until is not None and at >= self.until:
            return "this item is no longer offered"
        if self.tiers is not None and tier not in self.tiers:
            return "this item is for other tiers"
        return None


class Exchange(BaseModel):
    """One exchange of points (and cash) for an item, and what became of it."""

    model_config = ConfigDict(frozen=True)

    exchange_id: str
    item_id: str
    kind: Kind
    member_id: str
    quantity: int
    points: int  # in all
    cash: int = 0  # minor units, in all
    status: Status
    coupon: dict[str, str] | None = None  # the coupon a coupon item granted: its code and expiry
    history: list[dict[str, str]] = []  # each status and when it was reached
    at: datetime


def first_status(item: Item) -> Status:
    """Where an exchange of the item starts: a coupon is issued at once; goods with a cash part wait for it."""
    if item.kind == "coupon":
        return "issued"
    return "awaiting_payment" if item.cash else "pending"


def may_move(exchange: Exchange, to: str) -> str | None:
    """Why the shop may not move the exchange to `to`, or None if it may. Moving to the status it has is allowed
    (a repeated request)."""
    if to == exchange.status:
        return None
    if exchange.kind == "coupon":
        return "a coupon exchange is done when issued; the coupon itself is used or expires"
    if to not in MOVES.get(exchange.status, set()):
        return f"an exchange {exchange.status} cannot become {to}"
    return None
