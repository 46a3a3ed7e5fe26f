"""Geometric and photometric verification of copy candidates (`match`, `duplicates`).

A candidate is a copy when enough of the query's ORB keypoints (models/keypoints.py), or its
mirror's, map onto the stored record's by one similarity transform (rotation, uniform scale,
shift) found by RANSAC, that transform is a plausible edit (scale, rotation, overlap), and the
query warped by it into the stored image looks like the stored image: the lightness of the
aligned 12 x 12 grid correlates, and the hues agree (another tint of the same picture is
another item; a grey picture agrees with any tint). Measured with bench/copybench.py; design
notes in docs/duplicates.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..index.faiss_lib import hamming_faiss, knn_hamming
from ..models.keypoints import Features, _cv2, mirrored as flipped

#: Keypoint pairs under this Hamming distance (of 256 bits) are tried, and the best must beat
#: the second best by RATIO (Lowe's test).
MAX_DISTANCE, RATIO = 64, 0.85
#: A copy needs this many RANSAC inliers (random look-alikes reach about 6-8 on the bench).
MIN_INLIERS = 10
#: ... and this share of the descriptor matches (repeated patterns, stripes or checks, give
#: many matches of which a dozen fit some transform by chance; bench/copybench.py: 0.2 drops
#: no copy).
MIN_INLIER_RATIO = 0.2
#: Scale (stored pixels per query pixel, both at SIDE) a copy may have: downscale to a fifth is
#: undone by the reduction to SIDE, crops of 50 % zoom in 2x.
SCALE_RANGE = (0.25, 4.0)
#: Copies are rotated by at most this many degrees (phones, scanners: up to 15, and two such
#: edits one after the other up to 30); a wilder rotation found by RANSAC is a coincidence of
#: look-alike details.
MAX_ANGLE = 31.0
#: The query must cover at least this share of each side of the stored image (as mapped: the
#: box); issue 16's crops keep 50 to 95 % of each side, found at 0.50 or more on
#: bench/copyset.py's draws, while a held-out icon drawn as a small part of a stored one (a
#: headset on a page, a padlock on a card) maps to 0.40-0.46; or FULL_SIDE of one side: a
#: wallpaper's edition cut for another screen spans most of the other edition's height (Plasma's
#: 9:16 editions in their 16:9 ones: 0.27-0.32 of the width, 0.84-1.0 of the height) ...
MIN_SIDE, FULL_SIDE = 0.47, 0.8
#: ... and the stored image at least this share of the query (letterboxing a 16:9 picture
#: to 9:16 leaves it 0.32, and a border around that 0.23; an icon drawn small inside a bigger
#: one is not its copy).
MIN_QUERY_COVER = 0.2
#: Photometric check: the Pearson correlation of the lightness of the aligned grid cells
#: (query warped into the stored frame against the stored colour grid) must reach MIN_NCC,
#: over the cells left when the TRIM share that disagree most are set aside (a caption or
#: logo covers up to a fifth; twice, the second time standardised without the first's outliers); cells whose lightness hardly varies (flat pictures) cannot
#: tell, so FLAT_L (std of 8-bit L) lets them through on the hue check alone. bench/copybench.py:
#: true copies' correlation has its 5th percentile at 0.84, look-alikes' median is 0.86 (most
#: are shared artwork of icon themes), and 0.6 keeps recall while dropping a tenth of them.
MIN_NCC, FLAT_L, TRIM = 0.6, 4.0, 0.25
#: Share of the stored grid's cells the warped query must cover for the photometric check to vote.
MIN_CELLS = 6
#: Colour check: cells with chroma (|a, b| in 8-bit CIELAB) over CHROMA on both sides vote;
#: their median hue difference must stay under HUE_LIMIT degrees. A query with less than
#: GREY_CHROMA mean chroma is grey and agrees with any tint, and so does a grey stored picture
#: but in the unaligned fallback (`check` with geometry False), where a coloured query agrees
#: with a grey picture only where its colour is an overlay's (OVERLAY_SHARE).
CHROMA, HUE_LIMIT, GREY_CHROMA = 10.0, 25.0, 3.0
#: Ranking: a verified copy's score loses up to COLOUR_RANK (a share) as the colour distance of
#: the aligned region grows to COLOUR_SCALE (8-bit CIELAB): a wallpaper's light edition and its
#: dark one verify alike (same drawing, lightness correlated), the query's own colours win.
COLOUR_RANK, COLOUR_SCALE = 0.1, 40.0
#: Fewer coloured query cells than this share of the aligned ones are an overlay's: no vote.
OVERLAY_SHARE = 0.25
#: ... unless FADED_SHARE of the cells reach FADED_CHROMA: a faded (saturation down) or dark
#: copy, whose hues still tell (bench/copyset.py's dark forest at a third of its saturation:
#: its own tint 3-6 degrees off, the others 38-175; a coloured caption over a grey picture
#: leaves the grey cells under it).
FADED_CHROMA, FADED_SHARE = 4.0, 0.5


#: A fit whose inliers' convex hull covers under ISLAND_HULL of the overlap (in the query's
#: frame) rests on an island: one shared detail, such as the small icons of two different
#: Oxygen panel applets or the pie of a chart and of a disk drawing. Such a fit must show the
#: aligned region agreeing: lightness correlation at least ISLAND_NCC or colour distance under
#: ISLAND_DISTANCE (8-bit CIELAB). bench/copybench.py set: such non-copies' fits had hulls
#: 0.002-0.066, correlations 0.65-0.89 and distances 11-36; of 1,478 verified copies, three
#: fail it (a symmetric clock's plain fit, whose mirrored fit then verifies, and a brightened
#: photo found by another fit): false matches 13 -> 9 of 132, no copy lost. `duplicates` does
#: not take it (clusters.py `pair_score`): it cost pairs of stored records recall 0.945 -> 0.864
#: on that set's 626 records (precision 1.000 either way).
ISLAND_HULL, ISLAND_NCC, ISLAND_DISTANCE = 0.1, 0.9, 12.0

#: RANSAC samples drawn at most (fewer when a fit with enough support turns up early).
RANSAC_ITERATIONS = 1000


@dataclass
class Estimate:
    """A RANSAC fit of query keypoints onto a stored record's: the transform and its support."""

    matches: int                # descriptor pairs passing the distance and ratio tests
    inliers: int
    matrix: np.ndarray          # 2 x 3, query pixels (at SIDE) -> stored pixels (at SIDE)
    mirrored: bool
    angle: float                # degrees the copy is turned counter-clockwise from the stored image
    scale: float                # query content size / stored content size
    box: list[float]            # region of the stored image covered, fractions [x0, y0, x1, y1]
    stored_cover: float         # share of the stored image the query covers
    query_cover: float          # share of the query the stored image covers
    min_ratio: float = MIN_INLIER_RATIO   # share of the matches the inliers must reach
    spread: float = 1.0         # share of the overlap (query frame) the inliers' convex hull covers

    @property
    def covers_enough(self) -> bool:
        """Does the box keep MIN_SIDE of each side of the stored image, or FULL_SIDE of one?"""
        sides = (self.box[2] - self.box[0], self.box[3] - self.box[1])
        return min(sides) >= MIN_SIDE or max(sides) >= FULL_SIDE

    @property
    def plausible(self) -> bool:
        """Is the transform an edit a copy goes through (scale, rotation, overlap)?"""
        return (self.inliers >= MIN_INLIERS and self.inliers >= self.min_ratio * self.matches and SCALE_RANGE[0] <= 1 / self.scale <= SCALE_RANGE[1]
                and abs(self.angle) <= MAX_ANGLE and self.covers_enough
                and self.query_cover >= MIN_QUERY_COVER)


@dataclass
class Verified:
    """A verified copy: the fit, its photometric agreement and the score it earns."""

    estimate: Estimate
    ncc: float
    score: float                # what the threshold applies to
    distance: float = 0.0       # colour distance of the aligned region (`photometric`)

    @property
    def ranked(self) -> float:
        """The hit's `_score`: the score less a little for the colour distance (`ranked_score`)."""
        return ranked_score(self.score, self.distance)

    def info(self) -> dict:
        """The `_match` object of a near copy."""
        e = self.estimate
        return {"kind": "near", "box": e.box, "angle": e.angle, "scale": e.scale, "mirrored": e.mirrored,
                "inliers": e.inliers}


_UNSET = object()
_faiss_module: object = _UNSET


def _faiss():
    """The faiss module (index/faiss_lib.py), None where it is not installed or too old to have
    `knn_hamming` (looked up once)."""
    global _faiss_module
    if _faiss_module is _UNSET:
        _faiss_module = hamming_faiss()
    return _faiss_module


def use_faiss(enabled: bool) -> None:
    """Match descriptors by FAISS where installed (the default), or by OpenCV alone: for
    benchmarks comparing the two (a forked `duplicates` worker inherits the choice)."""
    global _faiss_module
    _faiss_module = _UNSET if enabled else None


def two_nearest(q: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hamming distances and indices (int arrays (len(q), 2)) of each query descriptor's two
    nearest stored ones: FAISS's binary k-NN where installed (the `ann` extra), on one thread a
    call as OpenCV runs (the match workers and `duplicates`' processes are the parallelism;
    OpenMP's thread count is each thread's own), else OpenCV's batchDistance, which keeps its
    two best through a generic top-K. The same distances; measured side by side at 100,000
    records (bench/README.md): `match` spends 5.7 ms a query matching against 9.8, `duplicates`
    121 s wall against 171."""
    faiss = _faiss()
    if faiss is None:
        cv2 = _cv2()
        return cv2.batchDistance(q, s, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    return knn_hamming(faiss, q, s, 2)


def descriptor_matches(q: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (query, stored) of descriptor matches passing the distance and ratio tests
    (which no tie passes: the pairs do not depend on how `two_nearest` orders equal distances)."""
    if len(q) < 2 or len(s) < 2:
        return np.empty(0, int), np.empty(0, int)
    dist, nearest = two_nearest(q, s)
    best, second = dist[:, 0], dist[:, 1]
    ok = (best <= MAX_DISTANCE) & (best < RATIO * second)
    return np.nonzero(ok)[0], nearest[ok, 0].astype(int)


def score_of(inliers: int) -> float:
    """A 0-1 score growing with the inliers: MIN_INLIERS gives 0.5, 30 about 0.75."""
    return round(inliers / (inliers + MIN_INLIERS), 6)


def estimate(query: Features, stored: Features, mirrored: bool, min_ratio: float = MIN_INLIER_RATIO) -> Estimate | None:
    """The similarity transform best mapping the query's keypoints onto the stored ones
    (`min_ratio`: the share of the matches its inliers must reach to be plausible)."""
    qi, si = descriptor_matches(query.descriptors, stored.descriptors)
    return fit(query, stored, qi, si, mirrored, min_ratio)


def fit(query: Features, stored: Features, qi: np.ndarray, si: np.ndarray, mirrored: bool,
        min_ratio: float = MIN_INLIER_RATIO, iterations: int = RANSAC_ITERATIONS) -> Estimate | None:
    """`estimate` from given descriptor matches (query index, stored index), with at most
    `iterations` RANSAC samples."""
    cv2 = _cv2()
    if len(qi) < MIN_INLIERS:
        return None
    src, dst = query.points[qi], stored.points[si]
    matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0,
                                               maxIters=iterations, confidence=0.995, refineIters=10)
    if matrix is None:
        return None
    scale = float(math.hypot(matrix[0, 0], matrix[1, 0]))
    if scale <= 1e-6:
        return None
    box = _covered(matrix, query.size, stored.size)
    stored_area = (box[2] - box[0]) * (box[3] - box[1])
    query_area = stored.size[0] * stored.size[1] * stored_area / (scale * scale) / (query.size[0] * query.size[1])
    angle = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))  # counter-clockwise, as PIL rotates
    return Estimate(len(qi), int(mask.sum()), matrix, mirrored, round(angle, 2), round(1 / scale, 4), box,
                    stored_area, query_area, min_ratio, inlier_spread(src[mask.ravel() > 0], matrix, query.size,
                                                                      stored.size))


def inlier_spread(points: np.ndarray, matrix: np.ndarray, qsize: tuple[int, int], ssize: tuple[int, int]) -> float:
    """Share of the overlap of query and stored image (in the query's frame) that the convex
    hull of the inlier query `points` covers."""
    cv2 = _cv2()
    if len(points) < 3:
        return 0.0
    back = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2]
    sw, sh = ssize
    outline = (np.array([[0, 0, 1], [sw, 0, 1], [sw, sh, 1], [0, sh, 1]], dtype=np.float64) @ back.T).astype(np.float32)
    qw, qh = qsize
    frame = np.array([[0, 0], [qw, 0], [qw, qh], [0, qh]], dtype=np.float32)
    if cv2.contourArea(outline, oriented=True) < 0:  # a mirrored outline: same orientation as the frame
        outline = outline[::-1].copy()
    overlap, _ = cv2.intersectConvexConvex(frame, outline)
    hull = cv2.contourArea(cv2.convexHull(points.astype(np.float32)))
    return float(min(1.0, hull / overlap)) if overlap > 0 else 0.0


def keypoint_coverage(e: Estimate, query: Features, stored: Features) -> float:
    """Inliers over the keypoints either side detected where the two pictures overlap (the
    fewer of: query keypoints mapped inside the stored image, stored keypoints inside the
    query's mapped outline). A copy re-detects most of its overlap's keypoints; a different
    drawing sharing one element matches that element's only."""
    m = np.vstack([e.matrix, [0, 0, 1]])
    qp = query.points @ m[:2, :2].T + m[:2, 2]
    sw, sh = stored.size
    inside_stored = int(((qp[:, 0] >= 0) & (qp[:, 0] <= sw) & (qp[:, 1] >= 0) & (qp[:, 1] <= sh)).sum())
    back = np.linalg.inv(m)
    sp = stored.points @ back[:2, :2].T + back[:2, 2]
    qw, qh = query.size
    inside_query = int(((sp[:, 0] >= 0) & (sp[:, 0] <= qw) & (sp[:, 1] >= 0) & (sp[:, 1] <= qh)).sum())
    return e.inliers / max(1, min(inside_stored, inside_query))


def _covered(matrix: np.ndarray, qsize: tuple[int, int], ssize: tuple[int, int]) -> list[float]:
    """Bounding box of the query's mapped outline in the stored image, clipped, as fractions."""
    w, h = qsize
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64) @ matrix.T
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    sw, sh = ssize
    return [round(float(np.clip(v, 0, 1)), 4) for v in (x0 / sw, y0 / sh, x1 / sw, y1 / sh)]


@dataclass
class QueryLook:
    """The query's colours for the photometric check: a small CIELAB image (float32, the
    size of the features' image scaled by `factor`) and whether it is grey."""

    lab: np.ndarray
    factor: float
    grey: bool

    @classmethod
    def of(cls, lab: np.ndarray, size: tuple[int, int]) -> "QueryLook":
        lab = lab.astype(np.float32)
        chroma = np.hypot(lab[..., 1] - 128, lab[..., 2] - 128)
        return cls(lab, lab.shape[1] / size[0], float(chroma.mean()) < GREY_CHROMA)

    def mirrored(self) -> "QueryLook":
        return QueryLook(flipped(self.lab), self.factor, self.grey)


def aligned_cells(e: Estimate, look: QueryLook, stored: Features) -> tuple[np.ndarray, np.ndarray]:
    """The query's mean CIELAB over each cell of the stored colour grid, through the transform,
    and which cells it covers whole (float32 (g, g, 3), bool (g, g))."""
    cv2 = _cv2()
    grid = stored.colours.shape[0]
    out = grid * 4                                     # the stored frame, 4 x 4 pixels a cell
    sx, sy = out / stored.size[0], out / stored.size[1]
    to_small = np.array([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], dtype=np.float64)
    from_query = np.array([[1 / look.factor, 0, 0], [0, 1 / look.factor, 0], [0, 0, 1]], dtype=np.float64)
    m = (to_small @ np.vstack([e.matrix, [0, 0, 1]]) @ from_query)[:2]
    warped = cv2.warpAffine(look.lab, m, (out, out), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))
    inside = cv2.warpAffine(np.ones(look.lab.shape[:2], np.float32), m, (out, out), flags=cv2.INTER_LINEAR,
                            borderValue=0)
    cells = cv2.resize(warped, (grid, grid), interpolation=cv2.INTER_AREA)
    cover = cv2.resize(inside, (grid, grid), interpolation=cv2.INTER_AREA)
    return cells, cover > 0.95


def photometric(e: Estimate, look: QueryLook, stored: Features,
                strict_grey: bool = False) -> tuple[float, float, float]:
    """(lightness correlation, median hue difference in degrees, median colour distance) of
    the aligned region, all over the cells left when the TRIM share that disagree most (an
    overlay's) are set aside; a correlation of 1 where the region is flat, a hue difference of
    0 where the colours cannot tell (a grey query, too few coloured cells, an overlay's
    colours). The distance (8-bit CIELAB, lightness alone for a grey query) ranks versions
    of one picture (a wallpaper's light and dark editions) that both verify."""
    cells, inside = aligned_cells(e, look, stored)
    if inside.sum() < MIN_CELLS:
        return 1.0, 0.0, 0.0
    q = cells[inside]
    s = stored.colours[inside].astype(np.float32)
    ql, sl = q[:, 0], s[:, 0]
    if ql.std() < FLAT_L or sl.std() < FLAT_L:
        return 1.0, _hue_difference(q, s, look.grey, strict_grey), colour_distance(q, s, look.grey)
    keep = np.ones(len(ql), dtype=bool)
    for _ in range(2):  # the second pass standardises by the first's kept cells, free of the overlay
        a, b = ql[keep], sl[keep]
        if a.std() <= 1e-3 or b.std() <= 1e-3:
            break
        gap = np.abs((ql - a.mean()) / a.std() - (sl - b.mean()) / b.std())
        keep = gap <= np.quantile(gap, 1 - TRIM)
    a, b = ql[keep], sl[keep]
    ncc = float(np.corrcoef(a, b)[0, 1]) if a.std() > 1e-3 and b.std() > 1e-3 else 1.0
    return (ncc, _hue_difference(q[keep], s[keep], look.grey, strict_grey),
            colour_distance(q[keep], s[keep], look.grey))


def colour_distance(q: np.ndarray, s: np.ndarray, grey_query: bool) -> float:
    """Median CIELAB distance (8-bit units) of aligned cells; lightness alone for a grey query."""
    d = np.abs(q[:, 0] - s[:, 0]) if grey_query else np.linalg.norm(q - s, axis=1)
    return float(np.median(d)) if len(d) else 0.0


def ranked_score(score: float, distance: float) -> float:
    """A verified score less up to COLOUR_RANK for the colour distance of the aligned region:
    of two versions of one picture that both verify, the one in the query's colours first."""
    return round(score * (1.0 - COLOUR_RANK * min(1.0, distance / COLOUR_SCALE)), 6)


def _hue_difference(q: np.ndarray, s: np.ndarray, grey_query: bool, strict_grey: bool = False) -> float:
    """Median hue difference (degrees) of the cells coloured on the query side; 0 when no vote
    (a grey query; a grey stored picture, unless `strict_grey`: a verified drawing in colour
    and in grey are one picture, but colours alone, unaligned, must agree)."""
    qa, sa = q[:, 1:] - 128, s[:, 1:] - 128
    qc, sc = np.hypot(qa[:, 0], qa[:, 1]), np.hypot(sa[:, 0], sa[:, 1])
    if grey_query or not strict_grey and sc.mean() < GREY_CHROMA:
        return 0.0
    chroma = CHROMA  # a copy may lose colour (grey, desaturated), never gain it, but for overlays:
    vote = qc > chroma
    if vote.sum() < max(3, OVERLAY_SHARE * len(vote)):  # a coloured caption over a grey picture
        chroma = FADED_CHROMA
        vote = qc > chroma
        if vote.sum() < max(3, FADED_SHARE * len(vote)):
            return 0.0
    diff = np.degrees(np.abs(np.arctan2(qa[vote, 1], qa[vote, 0]) - np.arctan2(sa[vote, 1], sa[vote, 0])))
    diff = np.where(sc[vote] > chroma / 2, np.minimum(diff, 360 - diff), 180.0)
    return float(np.median(diff))


def check(e: Estimate | None, look: QueryLook, stored: Features, geometry: bool = True,
          islands: bool = True) -> Verified | None:
    """The verified copy an estimate makes, or None: plausible (unless `geometry` is False: an
    alignment given, not fitted, where a coloured query does not match a grey picture),
    lightness correlated, hues agreeing, and (`islands`) not resting on an island (`island`)."""
    if e is None or geometry and not e.plausible:
        return None
    ncc, hue, distance = photometric(e, look, stored, strict_grey=not geometry)
    if ncc < MIN_NCC or hue > HUE_LIMIT or islands and island(e, ncc, distance):
        return None
    return Verified(e, ncc, score_of(e.inliers), distance)


def island(e: Estimate, ncc: float, distance: float) -> bool:
    """Does the fit rest on a small island of shared detail (ISLAND_HULL) while the aligned
    region does not agree closely (ISLAND_NCC, ISLAND_DISTANCE)?"""
    return e.spread < ISLAND_HULL and ncc < ISLAND_NCC and distance >= ISLAND_DISTANCE


def verify(query: Features, look: QueryLook, stored: Features,
           mirror: Callable[[], tuple[Features | None, QueryLook | None]] | None = None,
           min_ratio: float = MIN_INLIER_RATIO) -> Verified | None:
    """The query verified as a copy of `stored`, as is or else mirrored (`mirror` makes the
    mirrored query's features and look, when first needed); None when neither."""
    found = check(estimate(query, stored, False, min_ratio), look, stored)
    if found is None and mirror is not None:
        feats, mirror_look = mirror()
        if feats is not None and mirror_look is not None:
            found = check(estimate(feats, stored, True, min_ratio), mirror_look, stored)
    return found
