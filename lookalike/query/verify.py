"""Geometric and colour verification of copy candidates (`match`, `duplicates`).

A candidate is a copy when enough of the query's ORB keypoints (models/keypoints.py), or its
mirror's, map onto the stored record's by one similarity transform (rotation, uniform scale,
shift) found by RANSAC, and the colours of the aligned region agree (another tint of the same
picture is another item; a grey query agrees with any tint). Measured on bench/duplicates.py
--real; design notes in docs/duplicates.md.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..models.keypoints import Features, _cv2

#: Keypoint pairs under this Hamming distance (of 256 bits) are tried, and the best must beat
#: the second best by RATIO (Lowe's test) unless both lie on the same stored spot.
MAX_DISTANCE, RATIO = 64, 0.85
#: A copy needs this many RANSAC inliers (random look-alikes reach about 6-8 on the bench).
MIN_INLIERS = 10
#: Scale (stored pixels per query pixel, both at SIDE) a copy may have: downscale to a fifth is
#: undone by the reduction to SIDE, crops of 50 % zoom in 2x.
SCALE_RANGE = (0.25, 4.0)
#: Copies are rotated by at most this many degrees (phones, scanners: up to 15); a wilder
#: rotation found by RANSAC is a coincidence of look-alike details (bench: 30-125 degrees).
MAX_ANGLE = 20.0
#: The query must cover at least this share of the stored image's area (as mapped), and
#: the stored image this much of the query (else it is a shared logo or detail).
MIN_COVER = 0.15
#: ... and the stored image at least this share of the query (letterboxing a 16:9 picture
#: to 9:16 leaves it 0.32; an icon drawn inside a bigger one is not its copy).
MIN_QUERY_COVER = 0.3
#: Colour check: cells with chroma (|a, b| in 8-bit CIELAB) over CHROMA on both sides vote;
#: their median hue difference must stay under HUE_LIMIT degrees. A query with less than
#: GREY_CHROMA mean chroma is grey and agrees with any tint.
CHROMA, HUE_LIMIT, GREY_CHROMA = 10.0, 25.0, 3.0
#: Fewer coloured query cells than this share of the aligned ones are an overlay's: no vote.
OVERLAY_SHARE = 0.25


@dataclass
class Verified:
    """A verified copy: inliers, the similarity transform query -> stored, and what it means."""

    inliers: int
    matrix: np.ndarray          # 2 x 3, query pixels (at SIDE) -> stored pixels (at SIDE)
    mirrored: bool
    angle: float                # degrees the copy is turned counter-clockwise from the stored image
    scale: float                # query content size / stored content size
    box: list[float]            # region of the stored image covered, fractions [x0, y0, x1, y1]
    score: float


def _matches(q: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (query, stored) of descriptor matches passing the distance and ratio tests."""
    cv2 = _cv2()
    if len(q) < 2 or len(s) < 2:
        return np.empty(0, int), np.empty(0, int)
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(q, s, k=2)
    qi, si = [], []
    for pair in pairs:
        if len(pair) < 2:
            continue
        best, second = pair
        if best.distance <= MAX_DISTANCE and best.distance < RATIO * second.distance:
            qi.append(best.queryIdx)
            si.append(best.trainIdx)
    return np.array(qi, int), np.array(si, int)


def score_of(inliers: int) -> float:
    """A 0-1 score growing with the inliers: MIN_INLIERS gives 0.5, 30 about 0.75."""
    return round(inliers / (inliers + MIN_INLIERS), 6)


def geometric(query: Features, stored: Features, mirrored: bool) -> Verified | None:
    """The similarity transform mapping the query's keypoints onto the stored ones, if a copy."""
    cv2 = _cv2()
    qi, si = _matches(query.descriptors, stored.descriptors)
    if len(qi) < MIN_INLIERS:
        return None
    src, dst = query.points[qi], stored.points[si]
    matrix, mask = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0,
                                               maxIters=1000, confidence=0.995, refineIters=10)
    if matrix is None:
        return None
    inliers = int(mask.sum())
    if inliers < MIN_INLIERS:
        return None
    scale = float(math.hypot(matrix[0, 0], matrix[1, 0]))
    if not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        return None
    box = _covered(matrix, query.size, stored.size)
    stored_area = (box[2] - box[0]) * (box[3] - box[1])
    query_area = stored.size[0] * stored.size[1] * stored_area / (scale * scale) / (query.size[0] * query.size[1])
    if stored_area < MIN_COVER or query_area < MIN_QUERY_COVER:
        return None
    angle = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))  # counter-clockwise, as PIL rotates
    if abs(angle) > MAX_ANGLE:
        return None
    return Verified(inliers, matrix, mirrored, round(angle, 2), round(1 / scale, 4), box, score_of(inliers))


def _covered(matrix: np.ndarray, qsize: tuple[int, int], ssize: tuple[int, int]) -> list[float]:
    """Bounding box of the query's mapped outline in the stored image, clipped, as fractions."""
    w, h = qsize
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64) @ matrix.T
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    sw, sh = ssize
    return [round(float(np.clip(v, 0, 1)), 4) for v in (x0 / sw, y0 / sh, x1 / sw, y1 / sh)]


def colours_agree(v: Verified, query_lab: np.ndarray, query_size: tuple[int, int], stored: Features) -> bool:
    """Do the query's colours at the stored colour grid's cells (mapped back through the
    transform) have the stored hues? Grey queries (and grey records) always agree."""
    qa = query_lab[..., 1:].astype(np.float32) - 128
    if np.hypot(qa[..., 0], qa[..., 1]).mean() < GREY_CHROMA:
        return True
    grid = stored.colours.shape[0]
    sw, sh = stored.size
    ys, xs = np.mgrid[0:grid, 0:grid]
    centres = np.stack([(xs.ravel() + 0.5) * sw / grid, (ys.ravel() + 0.5) * sh / grid, np.ones(grid * grid)], 1)
    inverse = np.linalg.inv(np.vstack([v.matrix, [0, 0, 1]]))[:2]
    back = centres @ inverse.T                        # query pixels at SIDE
    lh, lw = query_lab.shape[:2]
    qx = back[:, 0] * lw / query_size[0]
    qy = back[:, 1] * lh / query_size[1]
    if v.mirrored:  # the features were of the mirrored query
        qx = lw - 1 - qx
    inside = (qx >= 0.5) & (qx <= lw - 1.5) & (qy >= 0.5) & (qy <= lh - 1.5)
    if inside.sum() < 3:
        return True
    q = qa[np.round(qy[inside]).astype(int), np.round(qx[inside]).astype(int)]
    s = stored.colours.reshape(-1, 3)[inside, 1:].astype(np.float32) - 128
    qc, sc = np.hypot(q[:, 0], q[:, 1]), np.hypot(s[:, 0], s[:, 1])
    vote = qc > CHROMA  # a copy may lose colour (grey, desaturated), never gain it, but for overlays:
    if vote.sum() < max(3, OVERLAY_SHARE * len(vote)):  # a coloured caption over a grey picture
        return True
    diff = np.degrees(np.abs(np.arctan2(q[vote, 1], q[vote, 0]) - np.arctan2(s[vote, 1], s[vote, 0])))
    diff = np.where(sc[vote] > CHROMA / 2, np.minimum(diff, 360 - diff), 180.0)
    return float(np.median(diff)) <= HUE_LIMIT


def verify(queries: list[tuple[Features, bool]], query_lab: np.ndarray, stored: Features) -> Verified | None:
    """The best verified transform of any query version (plain, mirrored) onto `stored` whose
    colours agree; None when none is a copy."""
    best = None
    for feats, is_mirror in queries:
        v = geometric(feats, stored, is_mirror)
        if v is not None and (best is None or v.inliers > best.inliers):
            if colours_agree(v, query_lab, feats.size, stored):
                best = v
    return best
