"""`duplicates`: groups of stored records that are copies of each other, verified like `match`.

Candidate pairs come from the fingerprints (query/duplicates.py: every pair whose copy score
reaches CANDIDATE_SCORE, and the crop edges of small collections) and from the embedding (each
record's NEIGHBOURS nearest records, at a cosine of NEIGHBOUR_FLOOR or more). Each candidate
pair is verified with the records' stored local features and colour grids (query/verify.py:
RANSAC similarity transform, photometric check of the aligned region), either way round;
pairs the keypoints cannot verify (flat, repetitive or mirrored pictures) are kept when their
fingerprint score reaches the fallback's and their unmoved (or mirrored) colour grids
correlate, and pairs of smooth pictures (few keypoints) by `match`'s colour-grid window search.
A portrait and a landscape record may be a quarter turn of each other; aligned coloured records
whose colours no brightness, contrast or saturation change explains are editions of one
drawing (a wallpaper's night version), not copies. Clusters are the connected components of
the verified pairs. `copy_edges` is the one definition of a copy between stored records:
`collapse` (query/collapse.py) uses it too.
Measured with bench/copybench.py --only-duplicates and --duplicates-scale N.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np

from ..index.faiss_lib import faiss_or_none
from ..models.fingerprint import BITS, MIRROR, PIXEL_HASH, _as_words
from ..models.keypoints import KEYPOINTS, Features, _cv2, decode_features, mirrored, self_distance
from ..store.base import CollectionStore
from . import aligned
from .duplicates import (CLUSTER_CROP_MAX, CLUSTER_FULL_MAX, _hamming, _live_slots, check_threshold, clusters,
                         colours_cover, components, copy_scores, crop_edges, similar_pairs, stored_fingerprints)
from .match import FINGERPRINT_SIMILARITY, FLAT_NCC, LOOK_SIDE, grid_look, look_of
from .smooth import (RELIT_DISTANCE, SMOOTH_DETAIL, SMOOTH_DISTANCE, SMOOTH_STORED, _relit_cells, _window_match,
                     detail)
from .verify import (CHROMA, MAX_ANGLE, MIN_CELLS, MIN_INLIERS, MIN_NCC, Estimate, QueryLook, aligned_cells, check,
                     colour_distance, descriptor_matches, fit, keypoint_coverage, photometric)

#: Default score (query/verify.py `score_of`, or the fingerprint score of the fallback) a
#: verified pair needs, as `match`'s.
DEFAULT_DUPLICATE_THRESHOLD = 0.5
#: Fingerprint copy scores from which a pair is a candidate (verification decides).
CANDIDATE_SCORE = 0.5
#: The fingerprint score the crop edges are looked for from (query/duplicates.py's default).
CROP_LIMIT = 0.6
#: Crop edges stand in for keypoints where keypoints cannot verify a crop: one of the two
#: pictures has under SMOOTH_STORED keypoints, or is a repeated pattern whose descriptors lie
#: within REPEATED_DISTANCE (median to the nearest other one, models/keypoints.py
#: `self_distance`) of each other: drawn stripes 3-6, a checkerboard 0; real wallpapers and
#: photos 11.5-56 (bench/copyset.py: two different dark-blue ukui backgrounds 35, whose crop
#: edge joined their copies' clusters, 16 wrong pairs on seed 1).
REPEATED_DISTANCE = 10.0
#: Records whose colour grid's mean chroma is under this are pale (grey, washed out): they
#: agree with any tint, so they keep one pair with a coloured record (`_one_tint_each`).
PALE_CHROMA = 8.0
#: Nearest records by embedding taken as candidates of each record ...
NEIGHBOURS = 5
#: ... when their cosine similarity reaches NEIGHBOUR_FLOOR (bench/copybench.py set: the copies
#: verified through the embedding alone are all at 0.77 or more, 99 % at 0.83 or more; a
#: wallpaper and its dark edition 0.8 and up). A floor bounds the pairs to verify in big
#: collections of unrelated pictures, where every record has NEIGHBOURS neighbours.
NEIGHBOUR_FLOOR = 0.75
#: Collections up to this many records get their neighbours by exact products (30k records
#: of 1,504 dimensions: 1.4e12 multiply-adds, 50 CPU seconds on the bench machine, growing
#: with the square of the collection); bigger ones through a graph searched with beam JOIN_BEAM.
EXACT_JOIN_MAX, JOIN_BEAM = 20_000, 64
#: RANSAC samples a stored pair's fit draws at most: a fit needs inliers in MIN_INLIER_RATIO
#: (0.2) of the matches, and 300 samples of 2 matches miss such an all-inlier sample with
#: probability 0.96^300 < 1e-5 (match's 1000 serve its dense pass's 0.1). A pair of unrelated
#: pictures with many matches draws them all: this is most of its cost.
PAIR_ITERATIONS = 300
#: A pair's keypoint fit must match this share of the keypoints either side detected where the
#: two overlap (query/verify.py `keypoint_coverage`): two drawings sharing one element (a
#: page template, a device on another device's icon) match that element's keypoints only.
#: bench/copybench.py --only-duplicates (621 records): at 0.15 the pair precision rose 0.909
#: -> 0.964 and recall fell 0.987 -> 0.981 (0.2: 0.974, 0.966; 0.25: 0.977, 0.959); the pairs
#: of two items left, 0.15-0.6, are tints of one folder and page templates; at 100k records
#: precision 0.903 -> 0.958, recall 0.969 -> 0.961. Not for `match`: a query's own edits
#: (blur, letterbox, a fifth of the size) lower it as far (5 % of its true first hits under
#: 0.12, its false ones at 0.09-0.28).
COVER_FLOOR = 0.15
#: Two aligned records whose cells coloured on both sides differ in hue by this median (degrees)
#: are tints of one picture (bench/copybench.py set: a pale wallpaper and its tints 88-155 each
#: way; copies up to 17 but a bordered copy against a letterboxed one, 152, their bars' colours).
TINT_CLASH = 60.0
#: The fingerprint fallback's unmoved grids must also lie within this median colour distance
#: (8-bit CIELAB, verify.py `colour_distance`): where one grid's lightness is (nearly) flat its
#: correlation cannot tell, and a near-black picture then passed for a light one on a chance
#: 0.7 fingerprint (bench/copybench.py --duplicates-scale 100000: the 20 pairs joined to
#: synthetic distractors, two of them, at 170-193). Copies the fallback keeps on that set's 626
#: records are at 42 or less; brightness 0.55-1.45 (issue 16) moves white at most ~107.
UNMOVED_DISTANCE = 120.0
#: Two aligned coloured records whose colours lie EDITION_DISTANCE apart (8-bit CIELAB median,
#: query/verify.py `colour_distance`) and still EDITION_RESIDUAL apart once one's lightness
#: and chroma gains are fitted to the other's (query/smooth.py `_relit_cells`, median) are
#: editions of one drawing, not copies: a wallpaper's night version repaints it, a
#: brightness, contrast or saturation edit scales it (bench/copybench.py set: Plasma's Flow
#: light and dark editions 25-31 apart, 12-26 relit; an edited copy and its original 1-3
#: relit, and over 10 only between two copies each edited another way).
EDITION_DISTANCE, EDITION_RESIDUAL = 20.0, 10.0
#: Candidate pairs verified a chunk (their records' features decoded once a chunk), and the
#: pairs from which chunks are verified in worker processes, one a CPU (0.8-2 CPU ms a pair:
#: 20,000 take 16-40 s on one core; starting the workers about a second).
VERIFY_CHUNK, PARALLEL_PAIRS = 2048, 20_000


def _fingerprint_pairs(hashes: np.ndarray, scores: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (i < j) from the fingerprints (`scores`: their copy scores, None for a
    collection too big for them)."""
    if scores is None:
        return similar_pairs(hashes[:, 0], CANDIDATE_SCORE)
    return np.nonzero(np.triu(scores >= CANDIDATE_SCORE, k=1))


#: The whole-image hash's mirror mask (models/fingerprint.py MIRROR) as uint64 words.
_MIRROR_WORDS = _as_words(MIRROR)


def _pair_fingerprints(hashes: np.ndarray, pairs: np.ndarray, scores: np.ndarray | None) -> np.ndarray:
    """The fingerprint score of each candidate pair (2, P): its copy score, or in a collection
    too big for them (`scores` None) the better of the whole-image hashes' similarity as is
    and mirrored (`similar_pairs` finds mirrored pairs: their fallback needs the mirrored score)."""
    if scores is not None:
        return scores[pairs[0], pairs[1]].astype(np.float64)
    a, b = hashes[pairs[0], 0], hashes[pairs[1], 0]
    distance = np.minimum(_hamming(a, b), _hamming(a ^ _MIRROR_WORDS, b))
    return 1.0 - 2.0 * distance / BITS


def _crop_edges(hashes: np.ndarray, scores: np.ndarray, ids: list[str], store: CollectionStore,
                limit: float) -> tuple[np.ndarray, np.ndarray]:
    """The fingerprints' crop edges (query/duplicates.py `crop_edges`: a clear best original by
    sub-windows, with its colours) in collections of up to CLUSTER_CROP_MAX, where one of the
    two records' keypoints cannot verify a crop (`_unverifiable`: repeated patterns, such as
    stripes or checks) and the embedding finds the pair too (bench: alone, they chained a
    letterboxed photo to icons)."""
    if not 1 < len(hashes) <= CLUSTER_CROP_MAX:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    rows, cols = np.nonzero(np.triu(scores >= limit, k=1))
    crop_rows, crop_cols = crop_edges(hashes, components(len(hashes), rows, cols), limit)
    copies, originals = store.get([ids[i] for i in crop_rows]), store.get([ids[j] for j in crop_cols])
    same = colours_cover(copies, originals)
    unverifiable = np.array([_unverifiable(a) or _unverifiable(b) for a, b in zip(copies, originals)], dtype=bool)
    keep = same & unverifiable
    return crop_rows[keep], crop_cols[keep]


def _unverifiable(doc: dict | None) -> bool:
    """Can a record's keypoints not verify its crops (too few, or a repeated pattern: REPEATED_DISTANCE)?"""
    f = decode_features((doc or {}).get(KEYPOINTS))
    return f is None or len(f.points) < SMOOTH_STORED or self_distance(f) <= REPEATED_DISTANCE


def _subset_neighbours(store: CollectionStore, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """`_neighbour_pairs` among `ids` alone (a result list): one product of their vectors."""
    found = store.vectors(ids)
    have = np.array([n for n, rid in enumerate(ids) if rid in found], dtype=np.int64)
    if len(have) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    vecs = np.stack([found[ids[n]] for n in have]).astype(np.float32)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    sims = vecs @ vecs.T
    np.fill_diagonal(sims, -np.inf)
    k = min(NEIGHBOURS, len(have) - 1)
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    rows = np.repeat(np.arange(len(have)), k)
    keep = sims[rows, top.ravel()] >= NEIGHBOUR_FLOOR
    r, c = have[rows[keep]], have[top.ravel()[keep]]
    return np.minimum(r, c), np.maximum(r, c)


def _neighbour_pairs(store: CollectionStore, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs from each record's NEIGHBOURS nearest records by embedding whose cosine
    similarity reaches NEIGHBOUR_FLOOR: a self-join of the collection's vectors, exact (blocked
    matrix products) up to EXACT_JOIN_MAX records, past it through a graph index built for the
    join (`_graph_top`). The collection's own graph index is tuned for ranked search: on the
    bench's 30k records its calibrated beam of 768 cost 12 ms a record."""
    found, vecs = store.all_vectors()
    position = {rid: n for n, rid in enumerate(ids)}
    keep = [k for k, rid in enumerate(found) if rid in position]
    if len(keep) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    index = np.array([position[found[k]] for k in keep], dtype=np.int64)
    vecs = np.ascontiguousarray(vecs[keep], dtype=np.float32)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    k = min(NEIGHBOURS, len(keep) - 1) + 1  # each record finds itself too
    if len(keep) <= EXACT_JOIN_MAX:
        sims, top = _exact_top(vecs, k)
    else:
        sims, top = _graph_top(vecs, k)
    rows = np.repeat(np.arange(len(keep)), top.shape[1])
    cols, sims = top.ravel(), sims.ravel()
    ok = (cols >= 0) & (cols != rows) & (sims >= NEIGHBOUR_FLOOR)
    r, c = index[rows[ok]], index[cols[ok]]
    return np.minimum(r, c), np.maximum(r, c)


def _exact_top(vecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, indices) of each row's k best rows (itself among them), by blocked
    products (at most 64 MB of similarities at once)."""
    n = len(vecs)
    block = max(1, min(1024, (1 << 24) // n))
    sims, top = np.empty((n, k), np.float32), np.empty((n, k), np.int64)
    for start in range(0, n, block):
        part = vecs[start:start + block] @ vecs.T
        best = np.argpartition(-part, k - 1, axis=1)[:, :k]
        top[start:start + len(part)] = best
        sims[start:start + len(part)] = np.take_along_axis(part, best, axis=1)
    return sims, top


def _graph_top(vecs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`_exact_top` approximately, through a FAISS HNSW graph of the rows built for the join
    (inner product, beam JOIN_BEAM; missing neighbours are -1), or exactly without FAISS (the
    `ann` extra)."""
    faiss = faiss_or_none()  # the `ann` extra
    if faiss is None:
        return _exact_top(vecs, k)
    graph = faiss.IndexHNSWFlat(vecs.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    graph.hnsw.efConstruction = 40
    graph.add(vecs)
    graph.hnsw.efSearch = max(JOIN_BEAM, k)
    sims, top = graph.search(vecs, k)
    return sims, top.astype(np.int64)


def _unmoved(a: Features, b: Features, mirrored: bool) -> float:
    """The lightness correlation of b's colours against a's unmoved (or mirrored) ones, or -1
    (also where their colours lie farther apart than UNMOVED_DISTANCE)."""
    sx, sy = b.size[0] / a.size[0], b.size[1] / a.size[1]
    matrix = np.array([[sx, 0, 0], [0, sy, 0]], dtype=np.float64)
    look = look_of(a)
    if mirrored:
        look = look.mirrored()
    e = Estimate(0, 0, matrix, mirrored, 0.0, 1.0, [0.0, 0.0, 1.0, 1.0], 1.0, 1.0)
    v = check(e, look, b, geometry=False)
    return -1.0 if v is None or v.distance > UNMOVED_DISTANCE else v.ncc


def _clash(e: Estimate, look: QueryLook, stored: Features) -> float:
    """Median hue difference (degrees) over the aligned cells coloured (chroma over CHROMA) on
    both sides, 0 where fewer than MIN_CELLS are."""
    cells, inside = aligned_cells(e, look, stored)
    qa, sa = cells[inside][:, 1:] - 128, stored.colours[inside][:, 1:].astype(np.float32) - 128
    vote = (np.hypot(qa[:, 0], qa[:, 1]) > CHROMA) & (np.hypot(sa[:, 0], sa[:, 1]) > CHROMA)
    if vote.sum() < MIN_CELLS:
        return 0.0
    diff = np.degrees(np.abs(np.arctan2(qa[vote, 1], qa[vote, 0]) - np.arctan2(sa[vote, 1], sa[vote, 0])))
    return float(np.median(np.minimum(diff, 360 - diff)))


#: Two records one portrait and one landscape, their aspect ratios (longer over shorter side)
#: both over this, may be a quarter turn of each other (a photo whose orientation tag was
#: lost; Plasma's portrait editions of a wallpaper are its landscape picture turned).
TURNED_ASPECT = 1.2


def _upright(e: Estimate | None, one: Features, other: Features) -> Estimate | None:
    """The fit with its angle taken modulo a quarter turn where the pictures' shapes turn too
    (one portrait, the other landscape, TURNED_ASPECT): plausibility then judges the turn left."""
    if e is None or abs(abs(e.angle) - 90.0) > MAX_ANGLE:
        return e
    (w1, h1), (w2, h2) = one.size, other.size
    if not (w1 > TURNED_ASPECT * h1 and h2 > TURNED_ASPECT * w2 or h1 > TURNED_ASPECT * w1 and w2 > TURNED_ASPECT * h2):
        return e
    return replace(e, angle=round(e.angle - math.copysign(90.0, e.angle), 2))


def _edition(e: Estimate, look: QueryLook, stored: Features) -> bool:
    """Are two aligned coloured records editions of one drawing (EDITION_DISTANCE and
    EDITION_RESIDUAL)? A grey one agrees with any colours."""
    if look.grey or look_of(stored).grey:
        return False
    cells, inside = aligned_cells(e, look, stored)
    q, s = cells[inside], stored.colours[inside].astype(np.float32)
    if not len(q) or colour_distance(q, s, False) < EDITION_DISTANCE:
        return False
    return float(np.median(_relit_cells(q, s))) >= EDITION_RESIDUAL


#: Two records' kept thumbnails as lightness arrays (query/aligned.py `thumbnail_grey`), None where absent.
Thumbs = tuple[np.ndarray | None, np.ndarray | None]


def _pair_pixels_agree(e: Estimate, one: Features, other: Features, thumbs: Thumbs) -> bool:
    """`match`'s pixel check (query/aligned.py `agrees`) of a keypoint fit of `one` onto
    `other`, by their kept thumbnails (`thumbs`: lightness arrays, `one`'s first); True when
    either record keeps none."""
    if thumbs[0] is None or thumbs[1] is None:
        return True
    grey = mirrored(thumbs[0]) if e.mirrored else thumbs[0]
    return aligned.agrees(aligned.compare(grey, one.size, thumbs[1], other.size, e.matrix))


def pair_score(a: Features, b: Features, fingerprint: float, thumbs: Callable[[], Thumbs] | None = None) -> float:
    """The verified copy score of two stored records (0 when not copies): keypoints either way
    round (a fit covering COVER_FLOOR of the overlap's keypoints, then query/verify.py
    `check`, as `match` verifies one against the other, then its pixel
    check with the kept thumbnails: `thumbs()` gives a's and b's lightness, or None), else the
    fingerprint fallback with the unmoved or mirrored colour grids. Two records that align
    (each way that aligns them) while the cells coloured in both clash in hue (TINT_CLASH) are
    tints of one picture, not copies: `check` lets a low-chroma tint through, its few coloured
    cells taken for an overlay's. A keypoint fit the pixels refute, either way round, refutes
    the pair: a copy's pixels agree both ways (a crop's, and the picture it was cut from where
    they overlap), while a different drawing sharing a large piece of artwork (a globe on a
    stand, the globe in a browser window) agrees only one way; the coarser tests below cannot
    overrule it."""
    best, lined_up, clashes, refuted = 0.0, 0, 0, False
    if len(a.descriptors) >= MIN_INLIERS and len(b.descriptors) >= MIN_INLIERS:
        for one, other, first in ((a, b, True), (b, a, False)):
            qi, si = descriptor_matches(one.descriptors, other.descriptors)
            e = _upright(fit(one, other, qi, si, False, iterations=PAIR_ITERATIONS), one, other)
            if e is None or not e.plausible:
                continue
            if keypoint_coverage(e, one, other) < COVER_FLOOR:
                continue
            look = look_of(one)
            v = check(e, look, other, islands=False)  # verify.py ISLAND_HULL: not for pairs
            pictures = thumbs() if v is not None and thumbs is not None else (None, None)
            if not _pair_pixels_agree(e, one, other, pictures if first else pictures[::-1]):
                v, refuted = None, True
            if v is not None:
                best = max(best, v.score)
            if v is not None or photometric(e, look, other)[0] >= MIN_NCC:
                lined_up += 1
                clashes += _clash(e, look, other) > TINT_CLASH or _edition(e, look, other)
    if lined_up and clashes == lined_up or refuted:
        return 0.0
    if best == 0.0 and fingerprint >= FINGERPRINT_SIMILARITY:
        # either way round: a grey record agrees with a coloured one as the query only
        if max(_unmoved(a, b, False), _unmoved(a, b, True), _unmoved(b, a, False), _unmoved(b, a, True)) >= FLAT_NCC:
            best = fingerprint
    if best == 0.0:
        best = _smooth_score(a, b)
    return best


def _smooth_look(f: Features) -> QueryLook:
    """A stored record's colour grid as a smooth query image (bilinear, LOOK_SIDE on its longer
    side), for query/smooth.py's window and rotation search: a smooth picture is its grid."""
    return grid_look(f, LOOK_SIDE, _cv2().INTER_LINEAR)


def _smooth_score(a: Features, b: Features) -> float:
    """The score of `match`'s smooth window search (query/smooth.py: the best grid window, as is
    and mirrored, then relit for a coloured query) of one record's grid as the query against
    the other's, either way round, 0 when neither verifies. Only where the stored side has
    fewer than SMOOTH_STORED keypoints and the query's grid is smooth (SMOOTH_DETAIL). Not
    `smooth_match`'s rotation search: it costs 20-100 ms a failing pair, and a smooth record's
    candidates include every picture whose embedding is near it (copybench --duplicates-scale
    20000: verify 96 -> 176 s with it); a turned copy of a smooth picture is left to its other
    copies' pairs."""
    for one, other in ((a, b), (b, a)):
        if len(other.points) >= SMOOTH_STORED:
            continue
        look = _smooth_look(one)
        if detail(look.lab) > SMOOTH_DETAIL:
            continue
        grid = other.colours.astype(np.float32)
        aspect = other.size[0] / other.size[1]
        found = _window_match(look, grid, aspect, False, SMOOTH_DISTANCE)
        if found is None and not look.grey:  # a gradient relit (brightness, contrast, saturation)
            found = _window_match(look, grid, aspect, True, RELIT_DISTANCE)
        if found is not None:
            return round(1.0 - 0.5 * found[0] / SMOOTH_DISTANCE, 6)
    return 0.0


def _chroma(f: Features) -> float:
    """Mean chroma of a record's colour grid (8-bit CIELAB)."""
    ab = f.colours[..., 1:].astype(np.float32) - 128
    return float(np.hypot(ab[..., 0], ab[..., 1]).mean())


def _one_tint_each(chroma: dict[int, float], rows: list[int], cols: list[int],
                   scores: list[float]) -> tuple[list[int], list[int]]:
    """Verified pairs, where a grey or washed-out record (`chroma`: of its colour grid) keeps
    only its best pair with a coloured one: it agrees with every tint of its picture, and
    clusters are connected components, so two of its edges would join tints that are different items."""
    grey = {n for n, c in chroma.items() if c < PALE_CHROMA}
    best: dict[int, tuple[float, int]] = {}
    for k, (i, j, score) in enumerate(zip(rows, cols, scores)):
        for pale, other in ((i, j), (j, i)):
            if pale in grey and other not in grey and score > best.get(pale, (-1.0, -1))[0]:
                best[pale] = (score, k)
    keep = [k for k, (i, j) in enumerate(zip(rows, cols))
            if not ((i in grey) != (j in grey)) or best.get(i if i in grey else j, (0, k))[1] == k]
    return [rows[k] for k in keep], [cols[k] for k in keep]


class _Stages:
    """Seconds and pair counts per stage of `duplicates`, into a caller's dict (the bench's)."""

    def __init__(self, out: dict | None) -> None:
        self.out = {} if out is None else out
        self._at = time.perf_counter()

    def done(self, stage: str, pairs: int | None = None) -> None:
        now = time.perf_counter()
        self.out[f"{stage} s"] = round(now - self._at, 3)
        if pairs is not None:
            self.out[f"{stage} pairs"] = int(pairs)
        self._at = now


def _verify_chunk(keypoints: dict[int, str | None], pixels: dict[int, str | None], thumbnails: dict[int, bytes | None],
                  pairs: np.ndarray, fingerprints: np.ndarray, limit: float,
                  joined: dict[int, int] | None = None) -> tuple[list[tuple[int, int, float]], dict[int, float]]:
    """The pairs of one chunk that verify at `limit`, with their scores, and the chroma of each
    record's colour grid (for the tint rule). Each record's stored features (`keypoints`, by
    record number) are decoded once a chunk, its kept thumbnail (`thumbnails`, JPEG bytes, for
    the pixel check) when a pair first needs it; a pure function of its arguments, so that worker
    processes can run it. A pair of coloured records already joined through verified pairs of
    coloured records (`joined`: union-find parents, carried from chunk to chunk) is not
    verified: the tint rule never cuts such pairs, so the clusters come out the same."""
    feats = {n: decode_features(value) for n, value in keypoints.items()}
    chroma = {n: _chroma(f) for n, f in feats.items() if f is not None}
    joined = {} if joined is None else joined
    greys: dict[int, np.ndarray | None] = {}

    def grey(n: int) -> np.ndarray | None:
        if n not in greys:
            greys[n] = aligned.thumbnail_grey(thumbnails.get(n))
        return greys[n]

    def root(n: int) -> int:
        while joined.get(n, n) != n:
            joined[n] = joined.get(joined[n], joined[n])
            n = joined[n]
        return n

    out = []
    for (i, j), fingerprint in zip(pairs.tolist(), fingerprints.tolist()):
        if feats[i] is None or feats[j] is None:
            continue
        coloured = chroma[i] >= PALE_CHROMA and chroma[j] >= PALE_CHROMA
        if coloured and root(i) == root(j):
            continue
        if pixels[i] and pixels[i] == pixels[j]:
            fingerprint = 1.0  # the very same pixels
        score = pair_score(feats[i], feats[j], fingerprint, lambda: (grey(i), grey(j)))
        if score >= limit:
            out.append((i, j, score))
            if coloured:
                joined[root(i)] = root(j)
    return out, chroma


def _chunks(store: CollectionStore, ids: list[str], pairs: np.ndarray, fingerprints: np.ndarray):
    """`_verify_chunk`'s arguments, VERIFY_CHUNK pairs at a time in (i, j) order (so a record's
    features travel and are decoded about once), read from the store when needed (thumbnails
    where the store keeps them)."""
    order = np.lexsort((pairs[1], pairs[0]))
    pairs, fingerprints = pairs[:, order], fingerprints[order]
    for s in range(0, pairs.shape[1], VERIFY_CHUNK):
        part = pairs[:, s:s + VERIFY_CHUNK]
        need = np.unique(part).tolist()
        docs = [d or {} for d in store.get([ids[n] for n in need])]
        kept = store.thumbnails([ids[n] for n in need]) if store.capabilities.thumbnails else {}
        thumbs = {n: kept.get(ids[n]) for n in need}
        yield ({n: d.get(KEYPOINTS) for n, d in zip(need, docs)}, {n: d.get(PIXEL_HASH) for n, d in zip(need, docs)},
               thumbs, part.T, fingerprints[s:s + VERIFY_CHUNK])


def workers() -> int:
    """Processes `duplicates` verifies on when it has many pairs: the CPUs this process may use."""
    return max(1, len(os.sched_getaffinity(0)))


def _verify(store: CollectionStore, ids: list[str], pairs: np.ndarray, fingerprints: np.ndarray,
            limit: float) -> tuple[list[tuple[int, int, float]], dict[int, float], int]:
    """Verified pairs and chroma by record (`_verify_chunk`) of all the pairs, and the worker
    processes used: none under PARALLEL_PAIRS pairs (starting one costs about a second), else
    one a CPU, at most two chunks each in flight."""
    found: list[tuple[int, int, float]] = []
    chroma: dict[int, float] = {}
    chunks = _chunks(store, ids, pairs, fingerprints)
    procs = workers() if pairs.shape[1] >= PARALLEL_PAIRS and "fork" in multiprocessing.get_all_start_methods() else 1
    if procs <= 1:
        joined: dict[int, int] = {}
        for args in chunks:
            part, tints = _verify_chunk(*args, limit, joined)
            found += part
            chroma.update(tints)
        return found, chroma, 0
    _cv2()  # imported before forking: the workers run only numpy and OpenCV, already loaded
    # forked, not spawned: a spawned worker imports the caller's main module again, which a
    # script without a `__main__` guard cannot survive
    with ProcessPoolExecutor(procs, mp_context=multiprocessing.get_context("fork")) as pool:
        pending: deque = deque()
        for args in chunks:
            pending.append(pool.submit(_verify_chunk, *args, limit))
            while len(pending) >= 2 * procs or (pending and pending[0].done()):
                part, tints = pending.popleft().result()
                found += part
                chroma.update(tints)
        for future in pending:
            part, tints = future.result()
            found += part
            chroma.update(tints)
    return found, chroma, procs


def copy_edges(store: CollectionStore, ids: list[str], hashes: np.ndarray, limit: float, *, subset: bool = False,
               stats: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Edges (i, j) between records (`ids`, their fingerprints `hashes`) that are copies of each
    other: the candidate pairs (fingerprints; embedding neighbours, among `ids` alone when they
    are a `subset` of the collection, such as a result list) verified at `limit` (`pair_score`),
    a pale record's edges to coloured ones cut to its best (`_one_tint_each`), and in small sets
    the fingerprint crop edges of embedding neighbours. `duplicates` and `collapse` both decide
    copies here."""
    stage = _Stages(stats)
    scores = copy_scores(hashes) if len(hashes) <= CLUSTER_FULL_MAX else None
    rows, cols = _fingerprint_pairs(hashes, scores)
    stage.done("fingerprint pairs", len(rows))
    more_rows, more_cols = (_subset_neighbours if subset else _neighbour_pairs)(store, ids)
    stage.done("neighbours", len(more_rows))
    pairs = np.unique(np.stack([np.concatenate([rows, more_rows]), np.concatenate([cols, more_cols])]), axis=1)
    fingerprints = _pair_fingerprints(hashes, pairs, scores)
    stage.done("cheap tests", pairs.shape[1])
    found, chroma, procs = _verify(store, ids, pairs, fingerprints, limit) if pairs.size else ([], {}, 0)
    stage.out["workers"] = procs
    stage.done("verify", len(found))
    keep_rows, keep_cols = _one_tint_each(chroma, [f[0] for f in found], [f[1] for f in found],
                                          [f[2] for f in found])
    if scores is not None:  # crop edges of pictures that are embedding neighbours too
        near = set(zip(more_rows.tolist(), more_cols.tolist()))
        for i, j in zip(*_crop_edges(hashes, scores, ids, store, CROP_LIMIT)):
            if (min(i, j), max(i, j)) in near:
                keep_rows.append(int(i))
                keep_cols.append(int(j))
    stage.done("crop edges")
    return np.array(keep_rows, np.int64), np.array(keep_cols, np.int64)


def duplicates(store: CollectionStore, threshold: float | None = None, stats: dict | None = None) -> dict:
    """Groups of records that are copies of each other: `{"clusters": [[id, ...], ...]}`.

    `stats`, when given, gets each stage's seconds and pair counts (bench/copybench.py
    --duplicates-scale)."""
    start = time.perf_counter()
    stage = _Stages(stats)
    limit = check_threshold(threshold, DEFAULT_DUPLICATE_THRESHOLD)
    live_slots, live_ids = _live_slots(store)
    slots, hashes = stored_fingerprints(store)
    position = np.full(int(max(slots.max(initial=-1), live_slots.max(initial=-1))) + 1, -1, dtype=np.int64)
    position[slots] = np.arange(len(slots))
    have = position[live_slots] >= 0
    ids = [i for i, ok in zip(live_ids, have) if ok]
    chosen = hashes[position[live_slots[have]]]
    stage.done("fingerprints")
    rows, cols = copy_edges(store, ids, chosen, limit, stats=stage.out)
    stage = _Stages(stage.out)
    groups = [sorted(ids[i] for i in group) for group in clusters(len(ids), rows, cols)]
    groups.sort(key=lambda g: (-len(g), g[0]))
    stage.done("clusters", len(rows))
    return {"clusters": groups, "took_ms": round((time.perf_counter() - start) * 1000, 3)}
