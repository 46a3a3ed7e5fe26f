"""Pixel check of a keypoint-verified copy against the stored record's kept thumbnail (`match`).

The keypoints and the 12 x 12 colour grid (models/keypoints.py) cannot tell a copy from a
different drawing that shares a large piece of artwork with it (Oxygen draws many icons from
one globe, one chalkboard): the fit holds and the coarse grid correlates. The record's kept
thumbnail (ingest/decode.py `make_thumbnail`, 160 px JPEG) can: aligned with the query by the
fitted transform, the two are compared pixel by pixel at ALIGN_SIDE (bench/copyhits.py
measures the statistics on the set's true and false hits; docs/duplicates.md). A collection
that keeps no thumbnails (`thumbnails` false), or a record without one, is not checked.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from ..models.keypoints import _cv2

#: Longest side the query's lightness is compared at: the kept thumbnail's (THUMBNAIL_SIZE).
ALIGN_SIDE = 160
#: Decoded thumbnails kept per collection (ALIGN_SIDE^2 bytes each), most recently used first.
THUMBNAIL_CACHE = 1024
#: A pixel has local detail where the 5 x 5 std of lightness (8-bit) exceeds DETAIL.
DETAIL = 8.0
#: A query is compared at the stored footprint's resolution where that is under COARSER
#: thumbnail pixels a query pixel.
COARSER = 0.9
#: The footprint needs this many pixels for the differing shares to be measured; the
#: lightness fit takes every FIT_STEP-th of them.
MIN_FOOTPRINT, FIT_STEP = 50, 3


@dataclass
class Aligned:
    """What the aligned comparison measured (shares of the query at ALIGN_SIDE)."""

    outside: float      # of the query outside the stored image's footprint
    out_detail: float   # of the query outside the footprint (eroded) with local detail
    dis24: float        # of the footprint differing by over 24 of 255 after the lightness fit
    dis48: float        # ... by over 48
    out_mask: np.ndarray | None = None   # bool, the eroded outside with detail (for measuring)


def query_grey(rgb: np.ndarray) -> np.ndarray:
    """The query's lightness (float32) at ALIGN_SIDE from its reduced RGB image."""
    cv2 = _cv2()
    h, w = rgb.shape[:2]
    scale = ALIGN_SIDE / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY).astype(np.float32)


def thumbnail_grey(data: bytes | None) -> np.ndarray | None:
    """The kept thumbnail's lightness (float32), None when absent or not decodable."""
    if not data:
        return None
    cv2 = _cv2()
    grey = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    return None if grey is None or grey.size == 0 else grey.astype(np.float32)


def _detail(grey: np.ndarray) -> np.ndarray:
    """Local lightness std (5 x 5) of the lightly blurred image."""
    cv2 = _cv2()
    g = cv2.GaussianBlur(grey, (3, 3), 0)
    mean = cv2.blur(g, (5, 5))
    return np.sqrt(np.maximum(cv2.blur(g * g, (5, 5)) - mean * mean, 0))


def _centred(scale_x: float, scale_y: float) -> np.ndarray:
    """3 x 3 map of pixel indices of an image to those of the same image resized by the
    factors (pixel centres kept: (i + 0.5) * s - 0.5)."""
    return np.array([[scale_x, 0, 0.5 * scale_x - 0.5], [0, scale_y, 0.5 * scale_y - 0.5], [0, 0, 1]])


def _fit(x: np.ndarray, y: np.ndarray, gain: float, offset: float) -> tuple[float, float]:
    """Least-squares gain and offset of y on x; those given where x is flat."""
    if x.std() <= 1.0:
        return gain, offset
    gain = float(np.mean((x - x.mean()) * (y - y.mean())) / x.var())
    return gain, float(y.mean() - gain * x.mean())


#: The lightness fit keeps the best FIT_KEEP of the pixels, refitted up to FIT_ROUNDS times.
FIT_KEEP, FIT_ROUNDS = 0.75, 5


def _trimmed_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Gain and offset of y on x fitted to the FIT_KEEP of the pixels they fit best, so that an
    overlay does not bend them: least squares, then refitted to its best pixels until those
    stay the same (least trimmed squares' concentration steps; one step alone was left at
    gain 0.59 by a black caption band over a fifth of a white drawing, 1.01 once converged)."""
    gain, offset = _fit(x, y, 1.0, float(np.mean(y - x)))
    keep = None
    for _ in range(FIT_ROUNDS):
        residual = np.abs(gain * x + offset - y)
        best = residual <= np.quantile(residual, FIT_KEEP)
        if keep is not None and np.array_equal(best, keep):
            break
        keep = best
        gain, offset = _fit(x[keep], y[keep], gain, offset)
    return gain, offset


def compare(query: np.ndarray, qsize: tuple[int, int], thumb: np.ndarray, ssize: tuple[int, int],
            matrix: np.ndarray, keep_mask: bool = False) -> Aligned:
    """The query's lightness (`query_grey`, of an image `qsize` at SIDE, mirrored already when
    the fit is) against the thumbnail's (`thumbnail_grey`, of a stored image `ssize` at SIDE)
    through the fit's 2 x 3 `matrix` (query pixels -> stored pixels, both at SIDE)."""
    cv2 = _cv2()
    h, w = query.shape
    th, tw = thumb.shape
    to_thumb = (_centred(tw / ssize[0], th / ssize[1]) @ np.vstack([matrix, [0, 0, 1]])
                @ _centred(qsize[0] / w, qsize[1] / h))
    scale = float(np.sqrt(abs(np.linalg.det(to_thumb[:2, :2]))))  # thumbnail pixels a query pixel
    if scale < COARSER:
        # the stored footprint is coarser (a crop's, or a record query against a letterboxed
        # record): compared at its resolution, or every sharp edge would count as a difference
        small = (max(1, round(w * scale)), max(1, round(h * scale)))
        to_thumb = to_thumb @ _centred(w / small[0], h / small[1])
        query = cv2.resize(query, small, interpolation=cv2.INTER_AREA)
        h, w = query.shape
    to_thumb = to_thumb[:2]
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(thumb, to_thumb, (w, h), flags=flags, borderValue=0)
    inside = cv2.warpAffine(np.ones(thumb.shape, np.float32), to_thumb, (w, h), flags=flags, borderValue=0)
    kernel = np.ones((5, 5), np.uint8)
    ins = cv2.erode((inside > 0.99).astype(np.uint8), kernel).astype(bool)
    out = cv2.erode((inside < 0.01).astype(np.uint8), kernel).astype(bool)
    detailed = out & (_detail(query) > DETAIL) if out.any() else out
    row = Aligned(float((inside < 0.5).mean()), float(detailed.mean()), 0.0, 0.0, detailed if keep_mask else None)
    if ins.sum() > MIN_FOOTPRINT:
        a, b = warped[ins], query[ins]
        x, y = a[::FIT_STEP], b[::FIT_STEP]
        gain, offset = _trimmed_fit(x, y)
        residual = np.abs(gain * a + offset - b)
        row.dis24, row.dis48 = float((residual > 24).mean()), float((residual > 48).mean())
    return row


class ThumbnailCache:
    """Decoded thumbnails of recently verified records, by id (checked against the record's
    stored `_keypoints` string: an upsert of a new image decodes its new thumbnail)."""

    def __init__(self, size: int = THUMBNAIL_CACHE) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[object, np.ndarray | None]] = OrderedDict()
        self._size = size

    def get(self, rid: str, key: object, load) -> np.ndarray | None:
        """The decoded thumbnail of `rid`, `load()` giving its JPEG bytes when not cached."""
        with self._lock:
            hit = self._items.get(rid)
            if hit is not None and hit[0] == key:
                self._items.move_to_end(rid)
                return hit[1]
        grey = thumbnail_grey(load())
        with self._lock:
            self._items[rid] = (key, grey)
            self._items.move_to_end(rid)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return grey


#: A copy's footprint differs from the stored thumbnail in at most these shares of its pixels
#: by over 24 and over 48 of 255 after the lightness fit: bench/copyhits.py on
#: bench/copyset.py's set, 1,476 true first hits at most 0.36 and 0.23 (a caption over a
#: contrast edit; a crop with a border); a held-out globe in a browser window against the
#: globe on a page (x-mswinurl) 0.47-0.49, a chalkboard against the chalkboard on kformula's
#: page 0.25 at 48. Grey copies of a photo differ from its stored hue-turned tints by 0.41-0.61
#: (another tint's lightness): those hits, never first, are dropped.
MAX_DIS24, MAX_DIS48 = 0.40, 0.24
#: A query showing much the stored image does not explain: over OUTSIDE_SHARE of it outside
#: the footprint, over OUTSIDE_DETAIL of it detail there, and its footprint differing at 24
#: in over OUTSIDE_DIS24 (the globe in a browser window against the globe on a stand or on
#: its own: 0.52-0.76, 0.12-0.17, 0.16-0.20). True hits reach each alone: letterboxed,
#: bordered or rotated copies have detail outside (at most 0.135 in a first hit, all with
#: under 0.46 outside), other editions of a wallpaper (portrait crops of a landscape query)
#: 0.09-0.40 with 0.65-0.80 outside, but their footprint differs at 24 in at most 0.13.
OUTSIDE_SHARE, OUTSIDE_DETAIL, OUTSIDE_DIS24 = 0.48, 0.10, 0.15


def agrees(a: Aligned) -> bool:
    """Is the aligned comparison a copy's (thresholds above)?"""
    if a.dis24 > MAX_DIS24 or a.dis48 > MAX_DIS48:
        return False
    return not (a.outside > OUTSIDE_SHARE and a.out_detail > OUTSIDE_DETAIL and a.dis24 > OUTSIDE_DIS24)
