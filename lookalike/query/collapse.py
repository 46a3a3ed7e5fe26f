"""`collapse`: one hit per near-duplicate cluster in a result list.

Near-duplicates are decided as `duplicates` decides them (query/clusters.py `copy_edges`,
docs/duplicates.md) over the ranked candidates alone: pairs the fingerprints or the embedding
propose are verified with the stored keypoints and colours, as `match` verifies a copy,
linked at the threshold (default DEFAULT_DUPLICATE_THRESHOLD, a verified score), and each
connected cluster keeps its best-ranked hit, which carries `_collapsed`: how many of its copies
were hidden (`_collapsed_ids` with `{"ids": true}`). Records with the very same pixels are
copies too; records without a fingerprint (`_vector` records) are clusters of their own.
Similar shots and other tints of a picture stay apart.

The store is asked for more candidates than the page shows (CANDIDATES times, doubling while
clusters eat the page, up to MAX_CANDIDATES), so a page of k is full whenever the collection
has k distinct pictures; copies beyond the candidates read are not counted.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import numpy as np

from ..models.fingerprint import FINGERPRINT, N_HASHES, PIXEL_HASH, WORDS, decode_fingerprint, full_width
from ..store.base import SearchRequest
from .clusters import DEFAULT_DUPLICATE_THRESHOLD, copy_edges
from .duplicates import components
from .search import SearchParams

if TYPE_CHECKING:  # engine.py imports this module when a search runs
    from .engine import Searcher

#: Candidates read per hit shown, at first; doubled while collapsed clusters leave the page short.
CANDIDATES = 3
#: At most this many candidates are compared (pairwise: about 0.2 s for 2,000 on one core).
MAX_CANDIDATES = 2_000


def collapse_hits(engine: "Searcher", params: SearchParams, request: SearchRequest,
                  group_by: str | None) -> list[dict]:
    """The page `request` asks for, with each near-duplicate cluster collapsed into its best hit."""
    want = request.offset + request.k
    limit = params.collapse.get("threshold") or DEFAULT_DUPLICATE_THRESHOLD
    n = min(MAX_CANDIDATES, max(want * CANDIDATES, want + 10))
    while True:
        found = engine.ranked(params, dataclasses.replace(request, k=n, offset=0), group_by)
        kept = collapse(engine.store, found, limit, with_ids=bool(params.collapse.get("ids")))
        if len(kept) >= want or len(found) < n or n >= MAX_CANDIDATES:
            return kept[request.offset:want]
        n = min(MAX_CANDIDATES, n * 2)


def collapse(store, hits: list[dict], threshold: float, *, with_ids: bool = False) -> list[dict]:
    """`hits` (best first) with each cluster of copies reduced to its first hit, which gets
    `_collapsed` (how many were hidden) and, `with_ids`, `_collapsed_ids` (best first)."""
    labels = copy_clusters(store, [h["_id"] for h in hits], threshold)
    kept: dict[int, dict] = {}
    hidden: dict[int, list[str]] = {}
    for hit, label in zip(hits, labels.tolist()):
        if label in kept:
            hidden[label].append(hit["_id"])
        else:
            kept[label], hidden[label] = hit, []
    out = []
    for label, hit in kept.items():
        hit["_collapsed"] = len(hidden[label])
        if with_ids:
            hit["_collapsed_ids"] = hidden[label]
        out.append(hit)
    return out


def copy_clusters(store, ids: list[str], threshold: float) -> np.ndarray:
    """A cluster label per id: equal labels are copies of each other, as `duplicates` decides
    (query/clusters.py `copy_edges` over these records alone), or have the very same pixels."""
    n = len(ids)
    if n < 2:
        return np.arange(n)
    docs = [d or {} for d in store.get(ids)]
    have = [i for i, d in enumerate(docs) if decode_fingerprint(d.get(FINGERPRINT) or "") is not None]
    hashes = np.zeros((len(have), N_HASHES, WORDS), dtype=np.uint64)
    for row, i in enumerate(have):
        hashes[row] = full_width(decode_fingerprint(docs[i][FINGERPRINT]))
    rows, cols = np.empty(0, np.int64), np.empty(0, np.int64)
    if len(have) > 1:
        rows, cols = copy_edges(store, [ids[i] for i in have], hashes, threshold, subset=True)
    index = np.array(have, dtype=np.int64)
    rows, cols = list(index[rows]), list(index[cols])
    by_pixels: dict[str, int] = {}  # the same pixels: copies whatever their features say
    for i, doc in enumerate(docs):
        key = doc.get(PIXEL_HASH)
        if isinstance(key, str) and key:
            if key in by_pixels:
                rows.append(by_pixels[key])
                cols.append(i)
            else:
                by_pixels[key] = i
    return components(n, np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))
