"""`duplicates`: groups of stored records that are copies of each other, verified like `match`.

Candidate pairs come from the fingerprints (query/duplicates.py: every pair whose copy score
reaches CANDIDATE_SCORE, and the crop edges of small collections) and from the embedding (each
record's NEIGHBOURS nearest records). Each candidate pair is verified with the records' stored
local features and colour grids (query/verify.py: RANSAC similarity transform, photometric
check of the aligned region), either way round; pairs the keypoints cannot verify (flat,
repetitive or mirrored pictures) are kept when their fingerprint score reaches the fallback's
and their unmoved (or mirrored) colour grids correlate. Clusters are the connected components
of the verified pairs. Measured with bench/copybench.py --duplicates.
"""
from __future__ import annotations

import time

import numpy as np

from ..models.fingerprint import BITS, PIXEL_HASH
from ..models.keypoints import KEYPOINTS, Features
from ..store.base import CollectionStore, SearchRequest
from .duplicates import (CLUSTER_CROP_MAX, CLUSTER_FULL_MAX, _live_slots, check_threshold, clusters, colours_cover,
                         components, copy_scores, crop_edges, similar_pairs, stored_fingerprints)
from .match import FINGERPRINT_SIMILARITY, FLAT_NCC, _feature_cache, look_of
from .verify import Estimate, check, estimate

#: Default score (query/verify.py `score_of`, or the fingerprint score of the fallback) a
#: verified pair needs, as `match`'s.
DEFAULT_DUPLICATE_THRESHOLD = 0.5
#: Fingerprint copy scores from which a pair is a candidate (verification decides).
CANDIDATE_SCORE = 0.5
#: The fingerprint score the crop edges are looked for from (query/duplicates.py's default).
CROP_LIMIT = 0.6
#: Records whose colour grid's mean chroma is under this are pale (grey, washed out): they
#: agree with any tint, so they keep one pair with a coloured record (`_one_tint_each`).
PALE_CHROMA = 8.0
#: Nearest records by embedding taken as candidates of each record.
NEIGHBOURS = 5
#: Collections up to this size get their embedding neighbours by blocked matrix products (100k
#: records of 1280 dimensions: about 1.3e13 multiply-adds, minutes on 2 cores); bigger ones ask
#: the store's vector index, record by record.
NEIGHBOURS_BY_PRODUCT = 200_000


def _fingerprint_pairs(hashes: np.ndarray, scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i < j) from the fingerprints (`scores`: their copy scores, None for a
    collection too big for them)."""
    if scores is None:
        return similar_pairs(hashes[:, 0], CANDIDATE_SCORE)
    return np.nonzero(np.triu(scores >= CANDIDATE_SCORE, k=1))


def _crop_edges(hashes: np.ndarray, scores: np.ndarray, ids: list[str], store: CollectionStore,
                limit: float) -> tuple[np.ndarray, np.ndarray]:
    """The fingerprints' crop edges (query/duplicates.py `crop_edges`: a clear best original by
    sub-windows, with its colours) in collections of up to CLUSTER_CROP_MAX: kept without
    keypoints, which cannot verify crops of repeated patterns (stripes, checks), where the
    embedding finds the pair too (bench: alone, they chained a letterboxed photo to icons)."""
    if not 1 < len(hashes) <= CLUSTER_CROP_MAX:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows, cols = np.nonzero(np.triu(scores >= limit, k=1))
    crop_rows, crop_cols = crop_edges(hashes, components(len(hashes), rows, cols), limit)
    same = colours_cover(store.get([ids[i] for i in crop_rows]), store.get([ids[j] for j in crop_cols]))
    return crop_rows[same], crop_cols[same]


def _neighbour_pairs(store: CollectionStore, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs from each record's NEIGHBOURS nearest records by embedding."""
    found = store.vectors(ids)
    have = [n for n, rid in enumerate(ids) if rid in found]
    if len(have) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    k = min(NEIGHBOURS, len(have) - 1)
    rows, cols = [], []
    if len(have) <= NEIGHBOURS_BY_PRODUCT:
        vecs = np.stack([found[ids[n]] for n in have]).astype(np.float32)
        vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        index = np.array(have)
        block = max(1, min(1024, (1 << 24) // len(have)))  # at most 64 MB of similarities at once
        for start in range(0, len(have), block):
            sims = vecs[start:start + block] @ vecs.T
            np.fill_diagonal(sims[:, start:start + block], -np.inf)
            top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            rows.append(np.repeat(index[start:start + block], k))
            cols.append(index[top.ravel()])
    else:
        position = {rid: n for n, rid in enumerate(ids)}
        for n in have:
            hits = store.search(SearchRequest(vector=found[ids[n]], k=k, exclude=[ids[n]]))
            rows.append(np.full(len(hits), n))
            cols.append(np.array([position.get(h.id, n) for h in hits], dtype=np.int64))
    r, c = np.concatenate(rows), np.concatenate(cols)
    return np.minimum(r, c)[r != c], np.maximum(r, c)[r != c]


def _unmoved(a: Features, b: Features, mirrored: bool) -> float:
    """The lightness correlation of b's colours against a's unmoved (or mirrored) ones, or -1."""
    sx, sy = b.size[0] / a.size[0], b.size[1] / a.size[1]
    matrix = np.array([[sx, 0, 0], [0, sy, 0]], dtype=np.float64)
    look = look_of(a)
    if mirrored:
        look = look.mirrored()
    e = Estimate(0, 0, matrix, mirrored, 0.0, 1.0, [0.0, 0.0, 1.0, 1.0], 1.0, 1.0)
    v = check(e, look, b, geometry=False)
    return -1.0 if v is None else v.ncc


def pair_score(a: Features, b: Features, fingerprint: float) -> float:
    """The verified copy score of two stored records (0 when not copies): keypoints either way
    round, else the fingerprint fallback with the unmoved or mirrored colour grids."""
    best = 0.0
    for one, other in ((a, b), (b, a)):
        v = check(estimate(one, other, False), look_of(one), other)
        if v is not None:
            best = max(best, v.score)
    if best == 0.0 and fingerprint >= FINGERPRINT_SIMILARITY:
        # either way round: a grey record agrees with a coloured one as the query only
        if max(_unmoved(a, b, False), _unmoved(a, b, True), _unmoved(b, a, False), _unmoved(b, a, True)) >= FLAT_NCC:
            best = fingerprint
    return best


def _chroma(f: Features) -> float:
    """Mean chroma of a record's colour grid (8-bit CIELAB)."""
    ab = f.colours[..., 1:].astype(np.float32) - 128
    return float(np.hypot(ab[..., 0], ab[..., 1]).mean())


def _one_tint_each(feats: dict[int, Features | None], rows: list[int], cols: list[int],
                   scores: list[float]) -> tuple[list[int], list[int]]:
    """Verified pairs, where a grey or washed-out record keeps only its best pair with a
    coloured one: it agrees with every tint of its picture, and clusters are connected
    components, so two of its edges would join tints that are different items."""
    grey = {n for n, f in feats.items() if f is not None and _chroma(f) < PALE_CHROMA}
    best: dict[int, tuple[float, int]] = {}
    for k, (i, j, score) in enumerate(zip(rows, cols, scores)):
        for pale, other in ((i, j), (j, i)):
            if pale in grey and other not in grey and score > best.get(pale, (-1.0, -1))[0]:
                best[pale] = (score, k)
    keep = [k for k, (i, j) in enumerate(zip(rows, cols))
            if not ((i in grey) != (j in grey)) or best.get(i if i in grey else j, (0, k))[1] == k]
    return [rows[k] for k in keep], [cols[k] for k in keep]


def duplicates(store: CollectionStore, threshold: float | None = None) -> dict:
    """Groups of records that are copies of each other: `{"clusters": [[id, ...], ...]}`."""
    start = time.perf_counter()
    limit = check_threshold(threshold, DEFAULT_DUPLICATE_THRESHOLD)
    live_slots, live_ids = _live_slots(store)
    slots, hashes = stored_fingerprints(store)
    position = np.full(int(max(slots.max(initial=-1), live_slots.max(initial=-1))) + 1, -1, dtype=np.int64)
    position[slots] = np.arange(len(slots))
    have = position[live_slots] >= 0
    ids = [i for i, ok in zip(live_ids, have) if ok]
    chosen = hashes[position[live_slots[have]]]
    scores = copy_scores(chosen) if len(chosen) <= CLUSTER_FULL_MAX else None
    rows, cols = _fingerprint_pairs(chosen, scores)
    more_rows, more_cols = _neighbour_pairs(store, ids)
    pairs = np.unique(np.stack([np.concatenate([rows, more_rows]), np.concatenate([cols, more_cols])]), axis=1)
    docs = store.get(ids) if pairs.size else []
    cache = _feature_cache(store)
    feats = {}
    keep_rows, keep_cols, keep_scores = [], [], []
    for i, j in pairs.T.tolist():
        for n in (i, j):
            if n not in feats:
                feats[n] = cache.get(ids[n], (docs[n] or {}).get(KEYPOINTS))
        if feats[i] is None or feats[j] is None:
            continue
        if docs[i] is not None and docs[i].get(PIXEL_HASH) and docs[i].get(PIXEL_HASH) == docs[j].get(PIXEL_HASH):
            fingerprint = 1.0  # the very same pixels
        elif scores is not None:
            fingerprint = float(scores[i, j])
        else:
            fingerprint = 1.0 - 2.0 * float(np.bitwise_count(chosen[i, 0] ^ chosen[j, 0]).sum()) / BITS
        score = pair_score(feats[i], feats[j], fingerprint)
        if score >= limit:
            keep_rows.append(i)
            keep_cols.append(j)
            keep_scores.append(score)
    keep_rows, keep_cols = _one_tint_each(feats, keep_rows, keep_cols, keep_scores)
    if scores is not None:  # crop edges of pictures that are embedding neighbours too
        near = set(zip(more_rows.tolist(), more_cols.tolist()))
        for i, j in zip(*_crop_edges(chosen, scores, ids, store, CROP_LIMIT)):
            if (min(i, j), max(i, j)) in near:
                keep_rows.append(int(i))
                keep_cols.append(int(j))
    groups = [sorted(ids[i] for i in group)
              for group in clusters(len(ids), np.array(keep_rows, np.int64), np.array(keep_cols, np.int64))]
    groups.sort(key=lambda g: (-len(g), g[0]))
    return {"clusters": groups, "took_ms": round((time.perf_counter() - start) * 1000, 3)}
