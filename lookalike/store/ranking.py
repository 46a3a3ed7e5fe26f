"""Ranking both backends share: boosts added to similarity scores, the grouping key of each
candidate, and the best hits of scored candidates."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from ..index.exact import top_k
from .base import Hit
from .filters import Node


def add_boosts(scores: np.ndarray, boosts: Sequence[tuple[Node, float]],
               mask: Callable[[Node], np.ndarray]) -> np.ndarray:
    """`scores` plus each boost rule's weight where its filter matches (`mask(filter)`: one bool per score)."""
    for node, weight in boosts:
        scores = scores + np.float32(weight) * mask(node)
    return scores


def group_keys(first: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The grouping key of each candidate: the id of its first group value, or, for a candidate
    without one, a key of its own (-(row + 1)): it is a group by itself."""
    return np.where(first >= 0, first, -(rows + 1))


def best_hits(ids: Sequence[str], slots: np.ndarray, scores: np.ndarray, k: int, offset: int) -> list[Hit]:
    """Hits of the best `k` scored slots after skipping `offset` (`ids[slot]`: the record of a slot)."""
    return [Hit(ids[slots[b]], float(scores[b])) for b in top_k(scores, k + offset)[offset:]]
