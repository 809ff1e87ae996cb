"""One service and one queue client per Lambda container (and per local-stack process), made on first use."""

from functools import cache

from loyalty.service.loyalty import Loyalty
from loyalty.store.queue import Queues


@cache
def service() -> Loyalty:
    return Loyalty()


@cache
def queues() -> Queues:
    return Queues()
