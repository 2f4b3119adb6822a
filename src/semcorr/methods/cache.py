"""A least-recently-used cache of per-image results (backbone features, hyperpixels).

Each benchmark image takes part in many pairs (PF-WILLOW: 18), so methods keep what they computed
for an image under a key naming the image, its size and every setting the value depends on, and
an image goes through the backbone once. The cache assumes frozen backbone weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """Least-recently-used mapping with a capacity.

    Args:
        capacity: most entries kept; 0 disables caching (every lookup misses).
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = int(capacity)
        self._items: OrderedDict[Hashable, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable) -> V | None:
        """The entry for ``key`` (marked most recently used), or None."""
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: Hashable, value: V) -> None:
        """Store ``value``, evicting the least recently used entries beyond the capacity."""
        if self.capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def get_or_compute(self, key: Hashable | None, compute: Callable[[], V]) -> V:
        """The entry for ``key``, computed by ``compute()`` and stored on a miss (``key=None``:
        computed, not stored)."""
        item = self.get(key) if key is not None else None
        if item is None:
            item = compute()
            if key is not None:
                self.put(key, item)
        return item

    def get_many(self, keys: Sequence[Hashable | None], compute: Callable[[list[int]], Sequence[V]]) -> list[V]:
        """The entries for ``keys``; the missing ones computed together by ``compute(indices)``
        (their values, in the order of ``indices``: one batched backbone call) and stored
        (``None`` keys: computed, not stored)."""
        out: list[V | None] = [self.get(key) if key is not None else None for key in keys]
        missing = [i for i, item in enumerate(out) if item is None]
        if missing:
            for i, value in zip(missing, compute(missing)):
                out[i] = value
                if keys[i] is not None:
                    self.put(keys[i], value)
        return out  # type: ignore[return-value]

    def clear(self) -> None:
        """Drop every entry."""
        self._items.clear()
