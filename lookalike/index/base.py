"""The index interfaces: what the store searches through, and what planning asks of an ANN index."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np


class VectorIndex(Protocol):
    """Top-k by inner product among allowed slots. `ExactIndex` (the reference) and
    `CollectionIndex` (exact or an ANN index, as planning.py decides) both answer it."""

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray,
               matching: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(slots, scores) of the k best allowed slots, best first; `matching`: their count if known."""
        ...


class AnnIndex(Protocol):
    """An approximate index over a prefix of the vector file (HNSW and IVF, ann.py)."""

    kind: str
    dim: int  # of the stored vectors (before any PCA): what an exact scan reads per row
    pca: Any
    compressed: bool

    @property
    def ntotal(self) -> int: ...

    @property
    def max_width(self) -> int: ...

    def search(self, query: np.ndarray, k: int, width: int, selector: Any = None, params: Any = None) -> np.ndarray:
        """Candidate slots (up to k) found with this width (efSearch, nprobe)."""
        ...

    def base_width(self, index: dict) -> int:
        """The width of an unfiltered search with these index settings."""
        ...

    def fit_width(self, wide: int, in_count: int, pool: int) -> int:
        """The width raised to this kind's least for `in_count` matches and `pool` candidates."""
        ...

    def worth(self, matching: int, wide: int) -> bool:
        """Whether this many matching rows are better searched here than exactly."""
        ...
