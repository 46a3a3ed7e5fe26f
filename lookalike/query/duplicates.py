"""Near-duplicate matching (`match`) and duplicate clustering (`duplicates`) over stored
fingerprints (models/fingerprint.py); how the scores are built: docs/duplicates.md."""
from __future__ import annotations

import threading
import weakref

import numpy as np

from ..models.fingerprint import (BITS, CANON, CANVAS, CENTRE, COPY_CROPS, CROP_GRID, CROP_QUERY_GRID,
                                  CROP_SCALE, CROP_WINDOW, FINGERPRINT, FIRST_CROP, MIRROR, MIRROR_BYTES,
                                  N_HASHES, N_STORED, QueryHashes, ROTATED, WORDS, as_bytes, boxes, dct_bits,
                                  decode_fingerprint, full_width, has_copy_side)
from ..index.faiss_lib import faiss_or_none, hamming_faiss, knn_hamming
from ..models.colors import hex_to_rgb, srgb_to_lab
from ..store.base import CollectionStore
from ..store.filters import MATCH_ALL
from ..validation import check_number
from .colors import ciede2000

CROP_PENALTY = 0.1               # crop scores come from ~2000 comparisons: discount their noise
#: Crops are looked for in collections of up to this many fingerprints (the whole scan about 4
#: us a record with FAISS's k-NN, 20 with the BLAS product: bench/fingerprint_scan.py).
CROP_SCAN_MAX = 20_000
#: Default similarity over which a record is a near copy (tuned on bench/duplicates.py).
DEFAULT_MATCH_THRESHOLD = 0.55
DEFAULT_DUPLICATE_THRESHOLD = 0.6  # of the fingerprint scores alone (`duplicates` verifies: query/clusters.py)


# -- scanning ---------------------------------------------------------------------------------
def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Popcount of XOR over the last axis (uint64 words), broadcasting: the words' counts added
    one by one, in half the time of NumPy's sum over an axis of 4 (20,000 records' 10 windows
    against a query's 2 versions: 6.5 ms against 13.7)."""
    counts = np.bitwise_count(a ^ b)
    out = counts[..., 0].astype(np.int32)
    for k in range(1, counts.shape[-1]):
        out += counts[..., k]
    return out


def similarities(stored: np.ndarray, query: QueryHashes, chunk: int = 2_000, top: int = 0) -> np.ndarray:
    """Best similarity of each stored fingerprint (N, N_HASHES, 4) to the query versions.

    `top` > 0 (where FAISS is installed): the crop scores are exact only for records that can
    rank among the `top` best (`_top_crop_scores`); the others keep their other versions'
    score, which their crop score cannot lift past those `top`."""
    faiss = hamming_faiss() if top > 0 and len(query.crop) else None
    out = np.empty(len(stored), dtype=np.float32)
    crop = _signs(query.crop if faiss is None else query.crop[:0]).T.copy()  # (256, C)
    for start in range(0, len(stored), chunk):
        part = stored[start:start + chunk]
        plain = _hamming(part[:, :FIRST_CROP, None, :], query.plain[None, None])  # (n, FIRST_CROP, versions)
        sims = 1.0 - 2.0 * plain.min(axis=(1, 2)) / BITS
        if len(query.rotated):
            centre = part[:, CENTRE:CENTRE + 1, None, :]
            rotated = _hamming(centre, query.rotated[None, None]).min(axis=(1, 2))
            sims = np.maximum(sims, 1.0 - 2.0 * rotated / BITS - ROTATED_PENALTY)
        if len(query.aligned):  # the ALIGNED_TOP best windows at the same place, with the whole image
            dist = _hamming(part[:, None, FIRST_CROP:N_STORED], query.aligned[None])
            top_mean = np.partition(dist, ALIGNED_TOP - 1, axis=2)[:, :, :ALIGNED_TOP].mean(axis=2).min(axis=1)
            whole = plain[:, 0].min(axis=1)
            sims = np.maximum(sims, 1.0 - (top_mean + whole) / BITS - ALIGNED_PENALTY)
        if crop.size:  # ~2000 pairs per record: one BLAS product of ±1 forms (a.b / 256 = 1 - 2 h / 256)
            dots = _signs(part[:, FIRST_CROP:N_STORED]).reshape(-1, BITS) @ crop
            sims = np.maximum(sims, dots.reshape(len(part), -1).max(axis=1) / BITS - CROP_PENALTY)
        out[start:start + len(part)] = sims
    if faiss is not None and len(stored):
        _top_crop_scores(faiss, stored, query.crop, top, out)
    return out


def _top_crop_scores(faiss, stored: np.ndarray, crops: np.ndarray, top: int, out: np.ndarray) -> None:
    """Raise `out` to the crop score (best of the query's sub-windows `crops` against each
    record's crop windows, less CROP_PENALTY) of every record among each sub-window's
    CROP_GRID^2 * `top` nearest windows, by FAISS's binary k-NN. A record left out has, for its
    best pair, that many windows nearer, of at least `top` other records: its crop score cannot
    rank it among the `top` best. One thread, no BLAS: in `match` beside its workers, the
    product's BLAS threads spun for the CPU the workers wanted (bench/copyprofile.py, the 441
    records of bench/copyset.py: `match` p50 57.4 ms, 126 CPU ms a query with the product, 48.8
    and 83 with this, every hit the same; bench/fingerprint_scan.py, the scan alone at 20,000
    records: 405 ms a query against 83, the same 12 best)."""
    windows = CROP_GRID * CROP_GRID
    base = np.ascontiguousarray(stored[:, FIRST_CROP:N_STORED]).view(np.uint8).reshape(-1, WORDS * 8)
    k = min(len(base), windows * top)
    dist, index = knn_hamming(faiss, np.ascontiguousarray(crops).view(np.uint8).reshape(-1, WORDS * 8), base, k)
    found = index >= 0
    scores = np.full(len(stored), -np.inf, dtype=np.float32)
    np.maximum.at(scores, index[found] // windows, 1.0 - 2.0 * dist[found].astype(np.float32) / BITS - CROP_PENALTY)
    np.maximum(out, scores, out=out)


#: `match` refines the crop check for its best CROP_REFINE candidates: the query's best
#: sub-window is moved by up to CROP_REFINE_RADIUS canvas pixels each way (the 9 x 9 grid is
#: 5.4 pixels apart, and a pixel of shift costs finely patterned windows many bits); the extra
#: 49 tries cost CROP_REFINE_PENALTY more (bench/duplicates.py: crops found 0.75 -> 0.97;
#: 0.08, not less, or crops of look-alike outsiders reach the threshold).
CROP_REFINE, CROP_REFINE_RADIUS, CROP_REFINE_PENALTY = 5, 3, 0.08


def refine_crops(stored: np.ndarray, query: QueryHashes) -> np.ndarray:
    """Crop scores of a few stored fingerprints (K, N_HASHES, 4) with the query's best sub-window
    for each re-placed at every position within CROP_REFINE_RADIUS pixels of the grid's."""
    small = _signs(stored[:, FIRST_CROP:N_STORED])                       # (K, 25, BITS)
    dots = small @ _signs(query.crop).T                                 # (K, 25, C)
    window, sub = np.unravel_index(dots.reshape(len(stored), -1).argmax(axis=1), dots.shape[1:])
    grid = boxes(CROP_WINDOW / CROP_SCALE, CROP_QUERY_GRID)
    size = grid[0][2] - grid[0][0]
    shifts = range(-CROP_REFINE_RADIUS, CROP_REFINE_RADIUS + 1)
    out = np.empty(len(stored), dtype=np.float32)
    for k, (w, q) in enumerate(zip(window.tolist(), sub.tolist())):  # K (5) candidates
        x, y = grid[q][:2]
        placed = [(x + dx, y + dy, x + dx + size, y + dy + size) for dy in shifts for dx in shifts
                 if 0 <= x + dx <= CANVAS - size and 0 <= y + dy <= CANVAS - size]
        signs = dct_bits(query.canvas, placed).astype(np.float32) * 2 - 1
        out[k] = (signs @ small[k, w]).max() / BITS - CROP_PENALTY - CROP_REFINE_PENALTY
    return out


class FingerprintCache:
    """Per-collection packed fingerprints by slot, grown from the field index's postings.

    Postings only grow, so each update decodes just the new ones; a rebuilt field index
    (compaction, reopening) is recognised by postings that no longer start with the ones read
    (rows, values and the distinct values they index), and read anew. The store hands out a
    copy of its distinct values list per call, so lists are compared by content: the same
    value objects, so the comparison is one identity test per value.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, keys: list | None) -> None:
        self._keys = keys      # the field index's distinct values list these postings index into
        self._seen = 0         # postings consumed
        self._rows = np.empty(0, dtype=np.int64)   # the postings consumed, to recognise a rebuild
        self._vids = np.empty(0, dtype=np.int64)
        self.slots = np.empty(0, dtype=np.int64)
        self.hashes = np.empty((0, N_HASHES, WORDS), dtype=np.uint64)

    def update(self, rows: np.ndarray, vids: np.ndarray, keys: list) -> tuple[np.ndarray, np.ndarray]:
        """(slots, hashes) of every posting so far; only new postings are decoded."""
        with self._lock:
            known = self._keys
            if known is None or len(keys) < len(known) or len(rows) < self._seen or \
                    keys[:len(known)] != known or not np.array_equal(rows[:self._seen], self._rows) or \
                    not np.array_equal(vids[:self._seen], self._vids):
                self._reset(keys)
            self._keys = keys
            if len(rows) > self._seen:
                new_rows = rows[self._seen:]
                decoded = [decode_fingerprint(keys[v][1]) if keys[v][0] == "s" else None
                           for v in vids[self._seen:len(rows)].tolist()]
                keep = [i for i, fp in enumerate(decoded) if fp is not None]
                if keep:
                    self.slots = np.concatenate([self.slots, new_rows[keep]])
                    self.hashes = np.concatenate([self.hashes, np.stack([full_width(decoded[i]) for i in keep])])
                self._seen = len(rows)
                self._rows, self._vids = np.array(rows), np.array(vids[:len(rows)])
            return self.slots, self.hashes


# -- duplicates ---------------------------------------------------------------------------------
def _signs(words: np.ndarray) -> np.ndarray:
    """uint64 (..., 4) -> float32 (..., 256) of ±1."""
    return np.unpackbits(as_bytes(words), axis=-1).astype(np.float32) * 2 - 1


def similar_pairs(words: np.ndarray, threshold: float, chunk: int = 16_384) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose whole-image hashes (or one's mirror) have similarity >= threshold.

    Similarity 1 - 2 * hamming / BITS >= threshold is a Hamming radius, so this is FAISS's exact
    binary range search (popcounts in C over packed bits, threads over queries), each record's
    hash and its mirror against all. Still every pair, but 5x faster than the ±1 matrix products
    it replaced (`bench/duplicates.py --pairs 100000`: 9.6 s against 51.9 s, the same pairs): this is the
    path of collections too big for the full comparison (CLUSTER_FULL_MAX). A million hashes
    would still take about 16 minutes on 2 cores: an approximate binary graph would be next.
    """
    n = len(words)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    faiss = faiss_or_none()  # the `ann` extra
    if faiss is None:
        return pairs_by_products(words, threshold)
    packed = as_bytes(words)
    index = faiss.IndexBinaryFlat(BITS)
    index.add(packed)
    radius = int(np.floor((1 - threshold) * BITS / 2 + 5e-4)) + 1  # FAISS: distance < radius
    rows, cols = [], []
    for queries in (packed, packed ^ MIRROR_BYTES):
        for start in range(0, n, chunk):
            lims, _, found = index.range_search(queries[start:start + chunk], radius)
            i = np.repeat(np.arange(start, start + len(lims) - 1), np.diff(lims.astype(np.int64)))
            j = found.astype(np.int64)
            rows.append(np.minimum(i, j)[i != j])
            cols.append(np.maximum(i, j)[i != j])
    pairs = np.unique(np.stack([np.concatenate(rows), np.concatenate(cols)]), axis=1)
    return pairs[0], pairs[1]


def pairs_by_products(words: np.ndarray, threshold: float, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """`similar_pairs` without FAISS: with ±1 vectors a.b = BITS - 2 * hamming, so one matrix
    product per block pair (and one with the mirrors) finds the same pairs, 5x slower."""
    signs = _signs(words)
    mirrored = signs * np.where(MIRROR, -1.0, 1.0).astype(np.float32)
    limit = threshold * BITS - 1e-3
    rows, cols = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for start in range(0, len(signs), block):
        a = signs[start:start + block]
        for other in range(start, len(signs), block):
            sims = np.maximum(a @ signs[other:other + block].T, a @ mirrored[other:other + block].T)
            i, j = np.nonzero(sims >= limit)
            i, j = i + start, j + other
            rows.append(i[i < j])
            cols.append(j[i < j])
    return np.concatenate(rows), np.concatenate(cols)


#: Floats one block of dot products may hold (bounds the memory of `copy_scores`).
_BLOCK_CELLS = 1 << 23
#: `duplicates` compares rotated centres and captioned windows in collections of up to this
#: many fingerprints (beyond: whole images only), and crops in collections of up to
#: CLUSTER_CROP_MAX. Their cost grows with the square of the collection: about 33 and 2,025
#: hash comparisons an ordered pair (bench/duplicates.py machine: 280 records 0.8 s + 4.7 s for crops).
CLUSTER_FULL_MAX = 5_000
CLUSTER_CROP_MAX = 1_000


def _max_dots(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (n, p, d), b (m, t, d) of ±1 -> (n, m): best dot product over the p x t pairs.

    The cost is the n*p x m*t products it reduces (memory-bound), not their length d."""
    n, p, dims = a.shape
    m, t, _ = b.shape
    flat_b = b.reshape(m * t, dims).T.copy()
    out = np.empty((n, m), dtype=np.float32)
    rows = max(1, _BLOCK_CELLS // max(1, p * m * t))
    for start in range(0, n, rows):
        part = a[start:start + rows]
        dots = (part.reshape(-1, dims) @ flat_b).reshape(len(part), p, m, t)
        out[start:start + len(part)] = dots.max(axis=(1, 3))
    return out


#: Small windows at the same place are scored by the mean of the best ALIGNED_TOP of the 25
#: (a caption spoils some), averaged with the whole-image similarity, less ALIGNED_PENALTY:
#: windows alone cannot tell a caption from a look-alike (bench/duplicates.py, 240 originals:
#: concentric rings drawn in other colours reach 0.77 by windows alone, captioned copies
#: 0.63-1); averaged, look-alikes stay under 0.6 and 9 in 10 captioned copies reach it.
ALIGNED_TOP = 8
N_SMALL = CROP_GRID * CROP_GRID


def _aligned_dots(a: np.ndarray, b: np.ndarray, top: int = ALIGNED_TOP) -> np.ndarray:
    """a (n, v, w, BITS) (v versions), b (m, w, BITS) of ±1 -> (n, m): over versions, the best
    mean of the `top` best dot products of windows at the same place."""
    n, versions, windows, _ = a.shape
    m = len(b)
    out = np.empty((n, m), dtype=np.float32)
    rows = max(1, _BLOCK_CELLS // max(1, versions * windows * m))
    for start in range(0, n, rows):
        part = a[start:start + rows]
        dots = np.einsum("nvwk,mwk->wnvm", part, b, optimize=True)       # (9, rows, v, m)
        best = np.partition(dots, windows - top, axis=0)[windows - top:].mean(axis=0)
        out[start:start + len(part)] = best.max(axis=1)
    return out


#: What is taken off the rotated-centre and same-place-window scores: the rotated centre is one
#: window (bench/duplicates.py: up to 0.70 between distinct originals, against 0.54 for whole
#: images; rotated copies score 0.85-1).
ROTATED_PENALTY, ALIGNED_PENALTY = 0.15, 0.04
#: A crop is clustered with the record its sub-windows match best when that score is at least
#: the threshold less CROP_SLACK and beats every record outside that record's cluster by CROP_MARGIN
#: (a relative rule: the best of ~1,200 comparisons is high for many unrelated pairs, a clear
#: winner is not).
CROP_SLACK, CROP_MARGIN = 0.1, 0.1


def copy_scores(hashes: np.ndarray) -> np.ndarray:
    """(N, N) symmetric similarity of records as copies of each other (crops aside).

    Entry (i, j) is the better of record i hashed as a query (its copy side) against record
    j's stored part, and the reverse: whole images (plain and border-trimmed, and their
    mirrors), rotated centre windows against the centre window and small windows at the same
    place (mean of the best ALIGNED_TOP), less their penalties. Blocked matrix
    products of ±1 forms: O(N^2) arithmetic, no Python loop over records or pairs.
    """
    flip = np.where(MIRROR, -1.0, 1.0).astype(np.float32)
    plain = _signs(hashes[:, [0, CANON]])
    whole = _max_dots(np.concatenate([plain, plain * flip], axis=1), plain[:, :1]) / BITS
    rotated = _max_dots(_signs(hashes[:, ROTATED:COPY_CROPS]), _signs(hashes[:, CENTRE:CENTRE + 1]))
    best = np.maximum(whole, rotated / BITS - ROTATED_PENALTY)
    small = _signs(hashes[:, FIRST_CROP:N_STORED])
    windows = (_aligned_dots(small[:, None], small) / BITS + whole) / 2
    np.maximum(best, windows - ALIGNED_PENALTY, out=best)
    np.maximum(best, best.T, out=best)
    return best


def crop_edges(hashes: np.ndarray, labels: np.ndarray, limit: float) -> tuple[np.ndarray, np.ndarray]:
    """Edges (copy, original) for records whose crop sub-windows clearly match one record best.

    `labels` are the clusters found without crops: the runner-up is the best record outside
    the winner's cluster, so that other copies of the same original do not hide a crop.
    """
    n = len(hashes)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    crop = _max_dots(_signs(hashes[:, COPY_CROPS:]), _signs(hashes[:, FIRST_CROP:N_STORED])) / BITS - CROP_PENALTY
    crop[~has_copy_side(hashes)] = -1.0  # old fingerprints: no crop sub-windows
    np.fill_diagonal(crop, -1.0)
    best = crop.argmax(axis=1)
    top = crop[np.arange(n), best]
    others = np.where(labels[None, :] == labels[best][:, None], -1.0, crop)
    others[np.arange(n), np.arange(n)] = -1.0
    keep = (top >= limit - CROP_SLACK) & (top - others.max(axis=1) >= CROP_MARGIN)
    return np.flatnonzero(keep), best[keep]


#: A crop's dominant colours (`_colors`) must lie within this CIEDE2000 difference of one of
#: its original's colours, for at least COLOUR_COVER of their weight: greyscale hashes cannot
#: tell a zoomed-in green checkerboard from an orange one, colours can. bench/duplicates.py
#: (240 originals): true crops 1.0 at 25 (k-means centres of a crop shift), false pairs <= 0.81.
COLOUR_DELTA, COLOUR_COVER = 25.0, 0.9


def colours_cover(copies: list[dict | None], originals: list[dict | None]) -> np.ndarray:
    """Per (copy, original) record pair: are the copy's dominant colours found in the original?

    Pairs where either record has no colours (a `_vector` record) are not checked (True)."""

    def labs(doc: dict | None) -> tuple[np.ndarray, np.ndarray] | None:
        colours = (doc or {}).get("_colors") or []
        try:
            rgb = np.array([hex_to_rgb(c["color"]) for c in colours], dtype=np.float64)
            weights = np.array([float(c["weight"]) for c in colours])
        except (KeyError, TypeError, ValueError):
            return None
        return (srgb_to_lab(rgb), weights) if len(colours) else None

    out = np.ones(len(copies), dtype=bool)
    for n, (copy, original) in enumerate(zip(copies, originals)):  # one per crop edge: a few per collection
        a, b = labs(copy), labs(original)
        if a is None or b is None:
            continue
        near = ciede2000(a[0][:, None], b[0][None]).min(axis=1) <= COLOUR_DELTA
        out[n] = a[1][near].sum() >= COLOUR_COVER * a[1].sum()
    return out


def components(n: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Connected-component label of each of n nodes of the undirected graph with these edges."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def clusters(n: int, rows: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
    """Connected components of size >= 2 of the graph with these edges, as index arrays."""
    if n == 0 or len(rows) == 0:
        return []
    labels = components(n, rows, cols)
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels)
    groups = np.split(order, np.cumsum(sizes)[:-1])
    return [g for g in groups if len(g) > 1]


# -- match and duplicates ---------------------------------------------------------------------
class PerStore:
    """One object per collection store, made by `factory` when first asked for, dropped with
    the store (the fingerprint and feature caches)."""

    def __init__(self, factory) -> None:
        self._factory = factory
        self._items: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, store: CollectionStore):
        with self._lock:
            item = self._items.get(store)
            if item is None:
                item = self._items[store] = self._factory()
            return item


_CACHES = PerStore(FingerprintCache)


def _cache(store: CollectionStore) -> FingerprintCache:
    return _CACHES.get(store)


def check_threshold(value: object, default: float) -> float:
    if value is None:
        return default
    return check_number(value, 0, 1, f"'threshold' must be a number from 0 to 1, got {value!r}")


def stored_fingerprints(store: CollectionStore) -> tuple[np.ndarray, np.ndarray]:
    """(slots, uint64 hashes (N, N_HASHES, 4)) of every record with a fingerprint (dead slots too)."""
    return _cache(store).update(*store.postings(FINGERPRINT))


def _slots_with(store: CollectionStore, path: str, value: str) -> np.ndarray:
    rows, vids, keys = store.postings(path)
    try:
        vid = keys.index(("s", value))
    except ValueError:
        return np.empty(0, dtype=np.int64)
    return rows[vids == vid]


def _live_slots(store: CollectionStore) -> tuple[np.ndarray, list[str]]:
    """Slot of every live record (the latest slot written for an id still present) and its id."""
    rows, vids, keys = store.postings("_id")
    if not len(rows):
        return np.empty(0, dtype=np.int64), []
    latest = np.full(len(keys), -1, dtype=np.int64)
    np.maximum.at(latest, vids, rows)
    live = set(store.ids_where(MATCH_ALL))
    vid_live = np.array([key[1] in live for key in keys], dtype=bool) & (latest >= 0)
    chosen = np.flatnonzero(vid_live)
    return latest[chosen], [keys[v][1] for v in chosen]
