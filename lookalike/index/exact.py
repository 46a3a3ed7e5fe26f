"""Exact inner-product search: one matrix-vector product over the allowed rows.

The reference for every approximate index, and the fastest choice below a few hundred
thousand vectors or for selective filters.
"""
from __future__ import annotations

import numpy as np

#: Rows scored per matrix product; bounds the temporary memory for huge collections.
CHUNK = 262_144
#: Up to this many scores `top_k` sorts them all instead of partitioning first.
SMALL = 256


def plain(matrix: np.ndarray) -> np.ndarray:
    """The same memory as a plain ndarray: `np.memmap.__getitem__` is Python code, costing
    about 10 us per gather, which is a tenth of a whole filtered graph search."""
    return matrix.view(np.ndarray) if type(matrix) is not np.ndarray else matrix


def dot(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
    """rows @ query on one thread (einsum, not BLAS): a scan is memory-bound, and a threaded
    BLAS gemv on a busy machine waits on descheduled workers (measured 12 ms instead of
    0.15 ms for 3000 x 256 on a shared 2-core box)."""
    return np.einsum("ij,j->i", rows, query)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first (ties broken by position)."""
    if k <= 0 or len(scores) == 0:
        return np.empty(0, dtype=np.int64)
    if len(scores) <= SMALL:  # a few candidates (re-scoring): one stable sort is quicker, same order
        return (-scores).argsort(kind="stable")[:k]  # the method: np.argsort's wrapper costs as much
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
        kth = scores[part].min()
        if kth == kth:  # not NaN: every score tied with the k-th competes, so the lowest positions win
            part = np.flatnonzero(scores >= kth)  # (argpartition keeps an arbitrary few of them)
    else:
        part = np.arange(len(scores))
    order = np.lexsort((part, -scores[part]))[:k]
    return part[order]


def score_slots(vectors: np.ndarray, query: np.ndarray, slots: np.ndarray) -> np.ndarray:
    """Inner products of `query` with `vectors[slots]`, chunked to bound memory."""
    q = np.asarray(query, dtype=np.float32)
    vectors = plain(vectors)
    if len(slots) <= CHUNK:
        return dot(vectors[slots], q)
    out = np.empty(len(slots), dtype=np.float32)
    for start in range(0, len(slots), CHUNK):
        part = slots[start:start + CHUNK]
        out[start:start + len(part)] = dot(vectors[part], q)
    return out


def score_all(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Inner products with every row, chunked (contiguous rows need no gather)."""
    out = np.empty(len(vectors), dtype=np.float32)
    q = np.asarray(query, dtype=np.float32)
    vectors = plain(vectors)
    for start in range(0, len(vectors), CHUNK):
        out[start:start + CHUNK] = dot(vectors[start:start + CHUNK], q)
    return out


class ExactIndex:
    """Brute force over the store's vector matrix (memory-mapped, never copied)."""

    def __init__(self, vectors: np.ndarray) -> None:
        self.vectors = vectors

    def scores(self, query: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(slots, scores) for every allowed slot, unordered."""
        n = min(len(allowed), len(self.vectors))
        allowed = allowed[:n]
        if allowed.all():
            return np.arange(n), score_all(self.vectors[:n], query)
        slots = np.flatnonzero(allowed)
        return slots, score_slots(self.vectors, query, slots)

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray,
               matching: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(slots, scores) of the k best allowed slots, best first (the VectorIndex interface)."""
        slots, scores = self.scores(query, allowed)
        best = top_k(scores, k)
        return slots[best], scores[best]


#: Candidates a batched product keeps per query beyond k (re-scored one by one, see top_k_many).
MANY_MARGIN = 16
#: Rows per matrix product of a batch (rows x queries floats of scores at a time).
MANY_CHUNK = 32_768


#: Queries re-scored per gather in `rescore_many` (64 queries x 20 candidates x 1504 floats: 8 MB).
RESCORE_CHUNK = 64


def rescore_many(vectors: np.ndarray, queries: np.ndarray, cands: np.ndarray,
                 k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per query row, its candidate slots (a row of `cands`, at most SMALL of them) re-scored and
    ranked as `dot` and `top_k` do one query at a time: (best k slots, their scores). One gather
    and one einsum per chunk of queries; each sum runs over the same contiguous inner loop as a
    single query's, so the scores are the same to the bit (tests/test_batch_search.py)."""
    vectors = plain(vectors)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for start in range(0, len(cands), RESCORE_CHUNK):
        part = cands[start:start + RESCORE_CHUNK]
        scores = np.einsum("qpd,qd->qp", vectors[part], queries[start:start + RESCORE_CHUNK])
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # top_k of a few: one stable sort
        rows = np.arange(len(part))[:, None]
        out += zip(part[rows, order], scores[rows, order])
    return out


def top_k_many(vectors: np.ndarray, queries: np.ndarray, k: int,
               slots: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """`ExactIndex.search` for each query row, over `vectors[slots]` (all rows when None).

    One matrix product per chunk of rows serves every query (a BLAS kernel, several times
    the throughput of one scan per query). Its sums round differently from a single query's
    scan, so it only picks candidates: per query, every row within a tolerance of its k+16th
    best product (the rounding error is far below it), re-scored as `search` scores them and
    ranked the same way. So each result is the single query's, ties included.
    """
    vectors = plain(vectors)
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    total = len(vectors) if slots is None else len(slots)
    keep = min(total, k + MANY_MARGIN)
    picked: list[list[np.ndarray]] = [[] for _ in queries]
    qnorms = np.sqrt(np.einsum("ij,ij->i", queries, queries, dtype=np.float64))
    for start in range(0, total, MANY_CHUNK):
        part = slice(start, min(start + MANY_CHUNK, total))
        rows = vectors[part] if slots is None else vectors[slots[part]]
        scores = rows @ queries.T  # rows x queries
        rnorm = float(np.sqrt(np.einsum("ij,ij->i", rows, rows, dtype=np.float64).max()))
        take = min(keep, len(rows))
        kth = -np.partition(-scores, take - 1, axis=0)[take - 1]  # per query
        limits = kth - 1e-4 * qnorms * rnorm - 1e-30
        for i in range(len(queries)):
            picked[i].append(np.flatnonzero(scores[:, i] >= limits[i]) + start)
    out = []
    for i, q in enumerate(queries):
        pos = np.concatenate(picked[i]) if picked[i] else np.empty(0, np.int64)  # ascending
        cand = pos if slots is None else slots[pos]
        exact = dot(vectors[cand], q) if len(cand) else np.empty(0, np.float32)
        best = top_k(exact, k)
        out.append((cand[best], exact[best]))
    return out
