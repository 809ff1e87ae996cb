"""A small time-bounded cache for what rarely changes (shops, programs), per Lambda container."""

import time
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._items: dict[str, tuple[float, V]] = {}

    def get(self, key: str, load: Callable[[], V]) -> V:
        now = self._clock()
        hit = self._items.get(key)
        if hit is not None and now - hit[0] < self.seconds:
            return hit[1]
        value = load()
        if value is not None:
            self._items[key] = (now, value)
        return value

    def forget(self, key: str) -> None:
        self._items.pop(key, None)
