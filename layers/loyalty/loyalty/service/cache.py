"""A small time-bounded cache for what rarely changes (shops, programs), per Lambda container."""

import time
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")
_MISSING = object()


class TTLCache(Generic[V]):
    """Values for `seconds`. With `remember_missing`, a key found to have no value is remembered too, so a
    stranger repeating an unknown shop id costs no read. At most `size` keys: the oldest go first."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic, *, size: int = 10_000) -> None:
        self.seconds = seconds
        self.size = size
        self._clock = clock
        self._items: dict[str, tuple[float, object]] = {}

    def get(self, key: str, load: Callable[[], V], *, remember_missing: bool = False) -> V:
        now = self._clock()
        hit = self._items.get(key)
        if hit is not None and now - hit[0] < self.seconds:
            return None if hit[1] is _MISSING else hit[1]  # type: ignore[return-value]
        value = load()
        if value is not None or remember_missing:
            self._items.pop(key, None)
            if len(self._items) >= self.size:
                del self._items[next(iter(self._items))]
            self._items[key] = (now, _MISSING if value is None else value)
        return value

    def forget(self, key: str) -> None:
        self._items.pop(key, None)
