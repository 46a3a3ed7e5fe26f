"""The beam from a recall target: the index measured against exact search on the collection's vectors.

A fixed efSearch / nprobe gives whatever recall the data allows: 0.98 on spread-out
embeddings, 0.89 on 300k clustered ones with many near-tied neighbours. So the index is
measured where it stands. The queries are rows of the collection that the index does not
hold yet (the newest rows, measured just before they are added): a stored vector searched
for itself is far easier than a new query, as its own links lead straight to its neighbours
(measured: width 1 "gives" 0.99 that way, 0.71 on held-out queries). Exact search over the
indexed rows is the truth; the width ladder is climbed while recall@10 (after the exact
re-scoring of candidates a search does) stays under CURVE_TOP, and the recall at every width
tried is kept, so a new `target_recall` only picks another width from the curve. Filters are
measured the same way with random masks keeping 1/2, 1/4, ... of the rows ("buckets"): a
filter keeping a share s gets the width of the bucket at or below s, never an easier one.
"""
from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import planning
from .base import AnnIndex
from .exact import plain
from .settings import exact_threshold

#: Queries per measurement; recall@10 over 300 of them is within about +-0.01. At least
#: MIN_QUERIES held-out rows are needed (fewer: measured at a later, bigger write).
QUERIES, MIN_QUERIES = 300, 50
#: Neighbours per query the target refers to.
K = 10
#: Filtered buckets measured at most: shares 1/2 ... 1/1024 (IVF answers rare filters too).
MAX_BUCKETS = 10
#: Widths tried, in order (HNSW efSearch; IVF nprobe uses the same ladder below its list count).
LADDER = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)
#: The ladder is climbed from the configured width until the recall clears the target and
#: this (so targets up to it need no new measurement; the widest searches cost the most).
CURVE_TOP = 0.99
#: Measure again once the index holds this many times the rows it was measured at.
GROWTH = 2.0
#: Best rows kept per query for the exact truth (`_exact_top`), and how many of them a mask
#: must be expected to allow, in multiples of K, to take its truth from them.
CANDIDATES, COMMON = 4096, 4
#: Queries per pass over the rows for the exact truth, and passes at once: their scores
#: (TRUTH_THREADS x TRUTH_CHUNK x rows float32) are the measurement's peak memory, 200 MB at 1M rows.
TRUTH_CHUNK, TRUTH_THREADS = 25, 2


@dataclass
class Bucket:
    """Recall by width for searches keeping `share` of the rows (1.0: unfiltered): (width,
    mean recall@10 over the queries, its standard error)."""
    share: float
    curve: list[tuple[int, float, float]]

    def pick(self, target: float, least: int = 0) -> tuple[int, float]:
        """(width, recall): the narrowest width at least `least` whose recall is above `target` by
        one standard error, else the widest tried. The margin: the first width whose noisy
        estimate crosses the target is more often lucky than not (measured on the test's data:
        0.95 measured, 0.93 on other queries, without it)."""
        for width, got, err in self.curve:
            if width >= least and got - err >= target:
                return width, got
        width, got, _ = self.curve[-1]
        return max(width, least), got


@dataclass
class Calibration:
    """Recall curves per filter bucket measured at `rows` indexed rows, and the widths they
    give for `target` (`beams`: [unfiltered, share 1/2, 1/4, ...], never narrowing, never
    under `floor`: the configured width, since queries unlike the stored vectors (measured: a
    test's queries drawn around other centres) need more than the collection's own rows do)."""
    target: float
    rows: int
    queries: int
    buckets: list[Bucket] = field(default_factory=list)
    floor: int = 0
    beams: list[tuple[float, int, float]] = field(default_factory=list)  # (share, width, recall)

    def __post_init__(self) -> None:
        self.retarget(self.target, self.floor)

    def retarget(self, target: float, floor: int) -> None:
        """Choose the widths for another target or floor from the measured curves."""
        self.target, self.floor, self.beams, least = target, floor, [], floor
        for bucket in self.buckets:
            width, got = bucket.pick(target, least)
            self.beams.append((bucket.share, width, got))
            least = width

    def wide(self, in_count: int, total: int) -> int:
        """The width for a search where `in_count` of `total` indexed rows may be returned."""
        if in_count >= total or len(self.beams) == 1:
            return self.beams[0][1]
        bucket = min(int(math.log2(total / max(in_count, 1))), MAX_BUCKETS)  # share in (2^-(b+1), 2^-b]
        if bucket < len(self.beams) - 1:
            return self.beams[bucket + 1][1]
        share, width, _ = self.beams[-1]  # rarer than measured: widen as the plain rule does
        return int(width * min(8.0, (share * total / max(in_count, 1)) ** 0.5))

    def summary(self) -> dict:
        """What `info` reports: the target, when measured, and per filter share the width and its recall."""
        return {"target": self.target, "rows": self.rows, "queries": self.queries, "k": K, "floor": self.floor,
                "beams": [{"share": s, "width": w, "recall": r} for s, w, r in self.beams]}

    def to_dict(self) -> dict:
        """The summary plus the recall curves (kept in the index's meta file)."""
        return {**self.summary(),
                "curves": [{"share": b.share, "curve": [list(p) for p in b.curve]} for b in self.buckets]}

    @classmethod
    def from_dict(cls, data: dict, target: float, floor: int) -> "Calibration":
        buckets = [Bucket(float(b["share"]), [(int(w), float(r), float(e)) for w, r, e in b["curve"]])
                   for b in data["curves"]]
        return cls(target, int(data["rows"]), int(data["queries"]), buckets, floor)


def _exact_top(matrix: np.ndarray, queries: np.ndarray, masks: list[np.ndarray | None], k: int) -> list[list]:
    """Per mask, the exact top-k indexed rows of each query among those it allows.

    One partition of each query's scores keeps its CANDIDATES best rows, sorted; a mask common
    enough to leave at least k of them in a query's list takes its top-k from there (a filter
    keeping 1/2 ... 1/64 of 1M rows: no pass over its columns). A rarer mask, or a query its
    mask leaves short, is ranked among the mask's own columns. Measured at 640k rows, 300
    queries, 8 masks: 12.5 CPU s with one partition per mask, 5.6 with the shared candidates.
    Chunks of TRUTH_CHUNK queries go to TRUTH_THREADS threads (NumPy's partitions and sorts
    release the GIL, and the index waits for this: the adds stop while it is measured)."""
    n = len(matrix)
    columns = [np.flatnonzero(mask) if mask is not None else None for mask in masks]
    keep = min(CANDIDATES, n)

    def chunk(start: int) -> list[list[np.ndarray]]:
        out: list[list[np.ndarray]] = [[] for _ in masks]
        scores = queries[start:start + TRUTH_CHUNK] @ matrix.T  # one pass over the rows for the chunk
        cand = np.argpartition(scores, n - keep, axis=1)[:, n - keep:] if keep < n \
            else np.broadcast_to(np.arange(n), scores.shape)
        order = np.argsort(-np.take_along_axis(scores, cand, axis=1), axis=1, kind="stable")
        cand = np.take_along_axis(cand, order, axis=1)  # each query's best rows, best first
        for i, (mask, cols) in enumerate(zip(masks, columns)):
            if mask is None:
                out[i] += list(cand[:, :k])
                continue
            want = min(k, len(cols))
            short = np.arange(len(cand))
            top: list[np.ndarray | None] = [None] * len(cand)
            if want and len(cols) * keep >= COMMON * k * n:  # expected members among the candidates
                hit = mask[cand]
                first = np.argsort(~hit, axis=1, kind="stable")[:, :want]  # the first `want` members, in order
                found = np.take_along_axis(cand, first, axis=1)
                full = hit.sum(axis=1) >= want
                for row in np.flatnonzero(full):
                    top[row] = found[row]
                short = np.flatnonzero(~full)
            for row in short:
                part = scores[row, cols]
                top[row] = cols[np.argpartition(-part, k - 1)[:k]] if len(part) > k else cols
            out[i] += top
        return out

    starts = range(0, len(queries), TRUTH_CHUNK)
    with ThreadPoolExecutor(max(1, min(TRUTH_THREADS, len(starts))), thread_name_prefix="calibrate") as pool:
        parts = list(pool.map(chunk, starts))
    return [[top for part in parts for top in part[i]] for i in range(len(masks))]


def _recall(ann: AnnIndex, matrix: np.ndarray, queries: np.ndarray, truth: list, width: int, selector,
            pool: int) -> tuple[float, float]:
    """recall@K of the index at this width (mean over the queries, and its standard error),
    candidates re-scored exactly as a search does."""
    rows = queries @ ann.pca.components.T if ann.pca is not None else queries  # as PCA.query, for many
    params = ann.params(pool, width, selector)
    _, ids = ann.raw.search(np.ascontiguousarray(rows, dtype=np.float32), pool, params=params)
    each = []
    for q, found, best in zip(queries, ids, truth):
        found = found[(found >= 0) & (found < len(matrix))]
        if not len(best):
            continue
        top = found[np.argsort(-(matrix[found] @ q), kind="stable")[:K]] if len(found) else found
        each.append(len(np.intersect1d(top, best)) / len(best))
    if not each:
        return 1.0, 0.0
    return float(np.mean(each)), float(np.std(each) / np.sqrt(len(each)))


def calibrate(ann: AnnIndex, matrix: np.ndarray, queries: np.ndarray, settings: dict, target: float, *,
              seed: int = 0) -> Calibration:
    """Measure `ann` (over rows 0..ntotal-1 of `matrix`) with `queries` it does not hold, and
    choose the narrowest width per bucket meeting `target`. Only searches the index: the
    caller keeps it from growing meanwhile."""
    import faiss

    rows = ann.ntotal
    matrix = plain(matrix)[:rows]
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    rng = np.random.default_rng(seed)
    pool = planning.pool(ann, K)
    limit = min(exact_threshold(settings, ann.dim), settings["filter_threshold"])
    shares = [1.0]
    for bucket in range(1, MAX_BUCKETS + 1):
        count = int(rows * 2.0 ** -bucket)
        if count <= max(limit, K) or not ann.worth(count, ann.base_width(settings)):
            break  # a filter this rare is searched exactly: nothing to calibrate
        shares.append(2.0 ** -bucket)
    masks: list[np.ndarray | None] = [None] + [rng.random(rows) < s for s in shares[1:]]
    truths = _exact_top(matrix, queries, masks, K)
    least = floor(ann, settings)  # narrower widths are never used: not measured
    ladder = [w for w in LADDER if least <= w <= ann.max_width] or [min(least, ann.max_width)]
    buckets: list[Bucket] = []
    step = 0
    for share, mask, truth in zip(shares, masks, truths):
        bits = np.packbits(mask, bitorder="little") if mask is not None else None
        selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)) if bits is not None else None
        in_count = int(mask.sum()) if mask is not None else rows
        curve: list[tuple[int, float, float]] = []
        first = None
        for i in range(step, len(ladder)):  # from where the commoner bucket reached 0.8 (or the floor)
            width = min(ann.fit_width(ladder[i], in_count, pool), ann.max_width)
            got, err = _recall(ann, matrix, queries, truth, width, selector, pool)
            curve.append((ladder[i], round(got, 4), round(err, 4)))
            if first is None and got >= 0.8:
                first = i
            if got - err >= max(target, CURVE_TOP) or width >= ann.max_width:
                break
        step = first if first is not None else step
        buckets.append(Bucket(share, curve))
    return Calibration(target, rows, len(queries), buckets, floor(ann, settings))


def floor(ann: AnnIndex, settings: dict) -> int:
    """The configured width (`expansion_search` or `nprobe`): calibration only ever widens it."""
    return settings["nprobe"] if ann.kind == "ivf" else settings["expansion_search"]
