"""A small cache of filter masks, because building one is the dominant cost of a filtered search.

At a million records turning `{"category": "shoes"}` into a boolean mask over slots takes
2-10 ms (a gather over the field's postings), while the graph walk after it takes 0.3 ms.
Filters repeat (facets, tenants, categories), and a mask over slots `0..n-1` never changes
while the field index stays the same: slots are written once (updates get new slots) and
deletes are applied separately through the live mask. So masks are cached under the
filter, the slot count and a version the store bumps whenever it indexes new records.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Callable, Hashable

import numpy as np

#: Bytes of masks kept (one byte per slot each): 64 masks of a million slots.
CACHE_BYTES = 64 * 2**20


class MaskCache:
    """Least-recently-used masks by (filter, slot count, version), bounded in bytes."""

    def __init__(self, limit_bytes: int = CACHE_BYTES) -> None:
        self.limit = limit_bytes
        self._items: OrderedDict[Hashable, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached mask for `key`, computing (and keeping) it on a miss; treat it as read-only."""
        with self._lock:
            mask = self._items.get(key)
            if mask is not None:
                self._items.move_to_end(key)
                return mask
        mask = compute()
        if mask.nbytes > self.limit:
            return mask
        with self._lock:
            if key not in self._items:
                self._items[key] = mask
                self._bytes += mask.nbytes
            while self._bytes > self.limit:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        return mask
