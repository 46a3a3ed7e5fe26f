"""The vector index interface: best slots for a query vector among allowed slots."""
from __future__ import annotations

from typing import Protocol

import numpy as np


class VectorIndex(Protocol):
    """Answers top-k by inner product over unit vectors, restricted to a slot mask."""

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slots, scores) of the k best allowed slots, best first."""
        ...
