"""Shop platforms: their integrations, and their webhooks mapped to our order events and queued. Their buyers
become our members as their orders settle (Members.for_customer)."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from loyalty.domain.errors import InvalidInput, first_problem
from loyalty.domain.integrations import Integration, IntegrationSettings, Platform
from loyalty.domain.orders import EVENT_TYPES, OrderEnvelope
from loyalty.service.cache import TTLCache
from loyalty.store import integrations as integration_store
from loyalty.store.dynamo import Dynamo
from loyalty.store.queue import Queues
from loyalty.webhooks.common import Delivery, MappingError
from loyalty.webhooks.platforms import PLATFORMS


class Platforms:
    def __init__(self, db: Dynamo, *, clock: Callable[[], datetime], cache_seconds: float) -> None:
        self.db = db
        self.clock = clock
        self._integrations: TTLCache[Integration | None] = TTLCache(cache_seconds)

    # ------------------------------------------------------------------ integrations

    def set_integration(self, shop_id: str, platform: Platform, settings: IntegrationSettings) -> Integration:
        if platform == "youzan" and not settings.client_id:
            raise InvalidInput("Youzan signs with the app's client id: give client_id", field="client_id")
        integration = Integration(platform=platform, **settings.model_dump())
        integration_store.put_integration(self.db, shop_id, integration, self.clock())
        self._integrations.forget(f"{shop_id}|{platform}")
        return integration

    def integration(self, shop_id: str, platform: Platform) -> Integration | None:
        return self._integrations.get(
            f"{shop_id}|{platform}", lambda: integration_store.get_integration(self.db, shop_id, platform)
        )

    # ------------------------------------------------------------------ webhooks

    def platform_delivery(
        self, shop_id: str, integration: Integration, headers: dict[str, str], body: dict[str, Any], queues: Queues
    ) -> Delivery:
        """Map a verified delivery to our order events and queue them, once per delivery id. Raises MappingError
        (400) for a payload we cannot read; never queues part of a delivery it refuses."""
        platform = integration.platform
        try:
            delivery = PLATFORMS[platform].parse(integration, headers, body)
        except (TypeError, ValueError, AttributeError, KeyError, ArithmeticError) as exc:
            # A field of the wrong type somewhere we did not name: still the sender's mistake, still a 400.
            raise MappingError(f"the {platform} payload is not shaped as documented ({exc})", "body") from exc
        if not delivery.events:
            return delivery
        if integration_store.seen(self.db, shop_id, platform, delivery.delivery_id):
            delivery.ignored = "a delivery already taken"
            delivery.events = []
            return delivery
        envelopes = []
        for n, raw in enumerate(delivery.events):
            try:
                event = EVENT_TYPES[raw["type"]].model_validate(integration.mark_top_up(raw))
                envelopes.append(OrderEnvelope.queued(shop_id, f"{platform}:{delivery.delivery_id}:{n}", event))
            except ValidationError as exc:
                where, what = first_problem(exc)
                raise MappingError(f"{platform} payload maps to an invalid event: {where}: {what}", where) from exc
        queues.enqueue_order_events(envelopes)
        integration_store.remember(self.db, shop_id, platform, delivery.delivery_id, self.clock())
        return delivery
