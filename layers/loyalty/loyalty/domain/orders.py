"""Order events as a shop's platform reports them, and the order's state as we keep it.

The wire format (see README "Order events"):
  {"type": "order.paid", "data": {"order_id", "member_id", "currency", "total", "lines": [...], "paid_at"}}
  {"type": "order.refunded", "data": {"order_id", "refund_id", "amount"}}
  {"type": "order.cancelled", "data": {"order_id"}}
Amounts are decimal strings in major units; they become integers once the program's currency is known.
"""

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from loyalty.domain.ledger import BusinessTime, Draw

# Identifiers end up inside DynamoDB keys, so they are bounded and free of our '#' separator.
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^#\s]+$")]
DecimalString = Annotated[str, Field(pattern=r"^[0-9]{1,15}(\.[0-9]{1,6})?$", examples=["199.00"])]
MAX_CODES = 5  # coupon codes one order may use
CouponCode = Annotated[str, Field(min_length=1, max_length=32)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderLine(_Model):
    sku: Identifier
    category: Annotated[str, Field(min_length=1, max_length=64)] = "default"
    quantity: Annotated[int, Field(ge=1, le=100_000)] = 1
    amount: DecimalString = Field(description="what the buyer paid for this line, after discounts, in major units")


MatchKind = Literal["customer_id", "email", "phone"]


class Customer(_Model):
    """The buyer as a shop platform names them, for orders that do not name our member: the consumer finds the
    member by the shop's `match` rules, in order, and enrols one if the shop allows (`auto_enrol`)."""

    platform: Annotated[str, Field(pattern=r"^[a-z]{2,20}$")]
    customer_id: Annotated[str, Field(min_length=1, max_length=100, pattern=r"^[^#\s]+$")] | None = None
    email: Annotated[str, Field(max_length=254)] | None = None
    phone: Annotated[str, Field(max_length=32)] | None = None
    match: Annotated[list[MatchKind], Field(min_length=1, max_length=3)]
    auto_enrol: bool = False


class OrderPaidData(_Model):
    order_id: Identifier
    member_id: Identifier | None = Field(default=None, description="our member; or give `customer`")
    customer: Customer | None = Field(default=None, description="the platform's buyer, when member_id is unknown")
    currency: Annotated[str, Field(pattern=r"^[A-Za-z]{3}$")]
    total: DecimalString = Field(description="the order total the refunds are measured against")
    lines: Annotated[list[OrderLine], Field(min_length=1, max_length=500)]
    paid_at: BusinessTime
    coupon_codes: Annotated[list[CouponCode], Field(max_length=MAX_CODES)] = Field(
        default_factory=list,
        description="our coupons the order used; with them, line amounts are before these coupons and points",
    )
    points_used: Annotated[int, Field(ge=0, le=1_000_000_000)] = Field(
        default=0, description="points the order used as payment (the program's points_offset)"
    )
    wallet_used: DecimalString | None = Field(
        default=None, description="the part of `total` paid from the member's wallet (stored value)"
    )
    top_up: bool = Field(
        default=False, description="the order is a wallet top-up: its total is paid into the member's wallet"
    )

    @model_validator(mode="after")
    def _buyer(self) -> "OrderPaidData":
        if self.member_id is None and self.customer is None:
            raise ValueError("member_id: give member_id, or customer")
        if self.top_up and (self.coupon_codes or self.points_used or self.wallet_used):
            raise ValueError("top_up: a top-up uses no coupons, points or wallet")
        return self


class OrderRefundedData(_Model):
    order_id: Identifier
    refund_id: Identifier
    amount: DecimalString
    cumulative: bool = Field(
        default=False,
        description="amount is the order's total refunded so far (as Stripe reports it), not this refund's own",
    )


class OrderCancelledData(_Model):
    order_id: Identifier


class OrderPaid(_Model):
    type: Literal["order.paid"]
    data: OrderPaidData


class OrderRefunded(_Model):
    type: Literal["order.refunded"]
    data: OrderRefundedData


class OrderCancelled(_Model):
    type: Literal["order.cancelled"]
    data: OrderCancelledData


OrderEvent = Annotated[OrderPaid | OrderRefunded | OrderCancelled, Field(discriminator="type")]
EVENT_TYPES: dict[str, type[OrderPaid | OrderRefunded | OrderCancelled]] = {
    "order.paid": OrderPaid,
    "order.refunded": OrderRefunded,
    "order.cancelled": OrderCancelled,
}


class OrderEnvelope(_Model):
    """What travels on the queue: the shop it belongs to, the delivery id, and the event.

    The webhooks build it with `queued()` before they answer, so what they accept is what the consumer can read:
    nothing is answered 202 and then parked for its shape."""

    shop_id: Identifier
    delivery_id: Annotated[str, Field(min_length=1, max_length=256)]
    event: OrderEvent

    @classmethod
    def queued(
        cls, shop_id: str, delivery_id: str, event: "OrderPaid | OrderRefunded | OrderCancelled"
    ) -> dict[str, Any]:
        """The message body for an event, checked as the consumer will check it (raises ValidationError)."""
        envelope = cls.model_validate({"shop_id": shop_id, "delivery_id": delivery_id, "event": event})
        return envelope.model_dump(mode="json")


class OrderWallet(BaseModel):
    """What an order did to its member's wallet. A top-up: `principal` paid in and the plan's `bonus`; a purchase:
    what it drew from each. `*_back`: what refunds have taken back from a top-up, or given back to a purchase's
    member (cumulative targets); `*_not_recovered`: of a top-up's take-back, what the wallet no longer held."""

    model_config = ConfigDict(extra="forbid")

    principal: int = 0
    bonus: int = 0
    principal_back: int = 0
    bonus_back: int = 0
    principal_not_recovered: int = 0
    bonus_not_recovered: int = 0
    bonus_lot: str | None = None  # a top-up: the lot its bonus formed (its refunds forfeit from it first)
    bonus_draws: list[Draw] = Field(default_factory=list)  # a purchase: the bonus lots it drew from, to give back


def refunded_of(refunds: Mapping[str, int]) -> int:
    """What was refunded, from an order's refunds (refund_id -> minor units): their sum, or the cumulative figure a
    platform reported, whichever is more (Stripe reports both ways; either alone, or both, gives the same figure)."""
    cumulative = int(refunds.get("~cumulative", 0))
    return max(cumulative, sum(int(amount) for key, amount in refunds.items() if key != "~cumulative"))


class OrderState(BaseModel):
    """One order as stored: what it earned, what refunds and cancellation took back, where its points are.

    An order item can exist before its payment is known (a refund or cancellation that overtook it),
    with `paid` False: those events are recorded and settled when the payment arrives.
    """

    model_config = ConfigDict(extra="forbid")

    order_id: str
    version: int = 0
    paid: bool = False
    member_id: str | None = None
    currency: str | None = None
    total: int = 0  # minor units
    earned: int = 0  # P: points the payment earned
    paid_at: datetime | None = None
    refunds: dict[str, int] = Field(default_factory=dict)  # refund_id -> minor units
    cancelled: bool = False
    credited: int = 0  # points the member currently holds from this order (pending or available)
    pending: int = 0  # of those, still pending (0 once activated)
    activates_at: datetime | None = None
    activated: bool = False
    lot_sk: str | None = None  # the lot its available points went to
    qualified: int = 0  # what it adds to the member's tier metric (spend or points, less refunds)
    expired: int = 0  # of its points, how many lapsed unspent (the expiry run counts them here)
    expiry_waived: int = 0  # of those, how many a clawback has already taken into account
    coupons: dict[str, datetime] = Field(default_factory=dict)  # code -> its expiry, of the coupons it used
    coupons_returned: bool = False  # given back (cancellation, or a full refund under the program's policy)
    discount: int = 0  # minor units its coupons took off
    member_discount: int = 0  # minor units the member's tier price took off (before coupons)
    earning: dict[str, Any] = Field(default_factory=dict)  # how its points were reached (domain/earning.py)
    points_used: int = 0  # points it used as payment
    points_offset: int = 0  # minor units those points paid
    spent: list[Draw] = Field(default_factory=list)  # the lots those points came from, to give them back
    points_returned: int = 0  # of points_used, how many refunds and cancellation gave back
    top_up: bool = False  # a wallet top-up (it earns no points; its total is the wallet's principal)
    wallet: OrderWallet | None = None  # what it put in or drew from the member's wallet (domain/wallet.py)
    saved: dict[str, int] = Field(default_factory=dict)  # what it saved the member, as counted in their savings

    @property
    def refunded(self) -> int:
        return refunded_of(self.refunds)

    @property
    def refunded_in_full(self) -> bool:
        return self.total > 0 and self.refunded >= self.total

    def refunded_share(self, part: int) -> int:
        """Of `part` (points or money the order used or put in), what its refunds concern: in proportion to the
        amount refunded, rounded down, so a full refund is exactly `part`; all of it on cancellation."""
        if self.cancelled or self.total <= 0:
            return part
        return part * min(self.refunded, self.total) // self.total
