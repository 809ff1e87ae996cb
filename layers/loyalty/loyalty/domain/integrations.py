"""A shop's connection to its store platform: how deliveries are verified, who the buyer is, and which of our
categories each line belongs to."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from loyalty.domain.orders import MatchKind

Platform = Literal["shopify", "woocommerce", "stripe", "youzan"]
PLATFORMS: tuple[Platform, ...] = ("shopify", "woocommerce", "stripe", "youzan")
DEFAULT_MATCH: tuple[MatchKind, ...] = ("customer_id", "email", "phone")
Category = Annotated[str, Field(min_length=1, max_length=64)]
Lookup = Annotated[dict[Annotated[str, Field(max_length=200)], Category], Field(max_length=5000)]


class CategoryMap(BaseModel):
    """Our category for a platform line, by the first of these the line has and the map knows; else default."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sku: Lookup = {}
    product_id: Lookup = {}
    vendor: Lookup = {}
    product_type: Lookup = {}
    default: Category = "default"

    def category(
        self, *, sku: object = None, product_id: object = None, vendor: object = None, product_type: object = None
    ) -> str:
        for table, value in (
            (self.sku, sku),
            (self.product_id, product_id),
            (self.vendor, vendor),
            (self.product_type, product_type),
        ):
            if value not in (None, "") and str(value) in table:
                return table[str(value)]
        return self.default


class IntegrationSettings(BaseModel):
    """PUT /integrations/{platform}. The secret is written, never read back."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    secret: Annotated[str, Field(min_length=8, max_length=512, description="the platform's signing secret")]
    client_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="Youzan: the app's client id (part of its signature)"
    )
    member_match: Annotated[list[MatchKind], Field(min_length=1, max_length=3)] = Field(
        default_factory=lambda: list(DEFAULT_MATCH),
        description="how a buyer is matched to a member, in order",
    )
    auto_enrol: bool = Field(default=True, description="enrol buyers no member matches")
    category_map: CategoryMap = Field(default_factory=CategoryMap)
    top_up_skus: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=list,
        max_length=100,
        description="the platform SKUs that sell wallet top-ups: a paid order of only these is a top-up (its "
        "total is paid into the member's wallet, with the program's bonus)",
    )

    def mark_top_up(self, event: dict[str, Any]) -> dict[str, Any]:
        """A mapped order.paid whose every line is a top-up SKU, flagged as a top-up."""
        lines = event["data"].get("lines") or [] if event.get("type") == "order.paid" else []
        if self.top_up_skus and lines and all(line.get("sku") in self.top_up_skus for line in lines):
            return {**event, "data": {**event["data"], "top_up": True}}
        return event


class Integration(IntegrationSettings):
    platform: Platform

    def view(self) -> dict[str, object]:
        """What reads show: everything but the secret."""
        return {
            "platform": self.platform,
            "secret_set": True,
            **self.model_dump(mode="json", exclude={"secret", "platform"}),
        }
