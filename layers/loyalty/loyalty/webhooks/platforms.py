"""The shop platforms we take webhooks from, each with its own verification and mapping."""

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, NamedTuple

from loyalty.domain.integrations import Integration, Platform
from loyalty.webhooks import shopify, stripe, woocommerce, youzan
from loyalty.webhooks.common import Delivery


class PlatformWebhooks(NamedTuple):
    verify: Callable[[Integration, Mapping[str, str], bytes, datetime], None]
    parse: Callable[[Integration, Mapping[str, str], dict[str, Any]], Delivery]


PLATFORMS: dict[Platform, PlatformWebhooks] = {
    "shopify": PlatformWebhooks(shopify.verify, shopify.parse),
    "woocommerce": PlatformWebhooks(woocommerce.verify, woocommerce.parse),
    "stripe": PlatformWebhooks(stripe.verify, stripe.parse),
    "youzan": PlatformWebhooks(youzan.verify, youzan.parse),
}
