"""Shop platforms: their integrations, their webhooks as our order events, and their buyers as our members.

Loyalty inherits these; what they use of it is declared on the class.
"""

import hashlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

from aws_lambda_powertools import Logger
from pydantic import ValidationError

from loyalty.domain.errors import Conflict, InvalidInput, NotFound, Retryable, first_problem
from loyalty.domain.integrations import Integration, IntegrationSettings, Platform
from loyalty.domain.members import Member, Profile
from loyalty.domain.orders import EVENT_TYPES, Customer, OrderEnvelope
from loyalty.service.cache import TTLCache
from loyalty.store import integrations as integration_store
from loyalty.store import members as member_store
from loyalty.store.dynamo import Dynamo
from loyalty.store.queue import Queues
from loyalty.webhooks.common import Delivery, MappingError
from loyalty.webhooks.platforms import PLATFORMS

logger = Logger(child=True)


class PlatformService:
    db: Dynamo
    clock: Callable[[], datetime]
    _integrations: TTLCache[Integration | None]

    def enrol(self, shop_id: str, profile: Profile) -> tuple[bool, Member]:
        raise NotImplementedError

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
                event = EVENT_TYPES[raw["type"]].model_validate(raw)
                envelopes.append(OrderEnvelope.queued(shop_id, f"{platform}:{delivery.delivery_id}:{n}", event))
            except ValidationError as exc:
                where, what = first_problem(exc)
                raise MappingError(f"{platform} payload maps to an invalid event: {where}: {what}", where) from exc
        queues.enqueue_order_events(envelopes)
        integration_store.remember(self.db, shop_id, platform, delivery.delivery_id, self.clock())
        return delivery

    # ------------------------------------------------------------------ buyers

    def member_for_customer(self, shop_id: str, customer: Customer) -> str:
        """The member a platform's buyer is, by the shop's match rules in order; enrolled if none matches and the
        shop allows it. Raises Retryable when none matches (the shop may enrol them yet)."""
        own_id = _member_id(customer)
        for kind in customer.match:
            is_member = kind == "customer_id" and customer.customer_id and own_id
            if is_member and own_id and member_store.get_member(self.db, shop_id, own_id, consistent=False):
                return own_id
            value = customer.email if kind == "email" else customer.phone if kind == "phone" else None
            if value:
                found = member_store.find_member_id(self.db, shop_id, kind, value)
                if found:
                    return found
        if not customer.auto_enrol:
            raise Retryable(f"no member matches this {customer.platform} customer, and the shop does not auto-enrol")
        if own_id is None:
            raise InvalidInput("the order names no customer, e-mail or phone", field="data.customer")
        # Contact details another member holds are left off: they identify that member, not this buyer.
        for contacts in ({"email": customer.email, "phone": customer.phone}, {"email": customer.email}, {}):
            try:
                self.enrol(shop_id, Profile(member_id=own_id, **{k: v for k, v in contacts.items() if v}))
            except Conflict as exc:
                if exc.field == "member_id":  # enrolled meanwhile, with these or other details: it is them
                    return own_id
                continue
            logger.info(
                "member enrolled from a platform order", extra={"shop_id": shop_id, "platform": customer.platform}
            )
            return own_id
        raise NotFound("could not enrol this customer", field="data.customer")


def _member_id(customer: Customer) -> str | None:
    """Our member id for a platform buyer: the platform and its customer id, or (for guests who left an e-mail or
    phone) a digest of that, so the id carries no personal data."""
    if customer.customer_id:
        return f"{customer.platform}-{customer.customer_id}"[:128]
    contact = customer.email or customer.phone
    if contact:
        return f"{customer.platform}-guest-{hashlib.sha256(contact.encode()).hexdigest()[:24]}"
    return None
