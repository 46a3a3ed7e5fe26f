"""Search by colour: `{"color": "#c0392b"}` ranks records by how much of them shows that colour.

Design notes (how it works and why): docs/search.md, "Notes: `lookalike/query/colors.py`".
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from ..errors import BadRequest, LookalikeError
from ..models.colors import hex_to_rgb, srgb_to_lab
from ..store.base import CollectionStore

SIGMA = 12.0
COLOR_PATH, WEIGHT_PATH = "_colors.color", "_colors.weight"


def parse_color(value: object) -> np.ndarray:
    """'#c0392b' (or '#c32', 'c0392b') -> its CIELAB; BadRequest naming the value otherwise."""
    if not isinstance(value, str):
        raise BadRequest(f"'color' must be a hex colour such as '#c0392b', got {value!r}")
    try:
        rgb = hex_to_rgb(value)
    except ValueError:
        raise BadRequest(f"'color' must be a hex colour such as '#c0392b', got {value!r}") from None
    return srgb_to_lab(np.array(rgb, dtype=np.float64))


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), vectorised; shapes broadcast (..., 3)."""
    lab1, lab2 = np.asarray(lab1, dtype=np.float64), np.asarray(lab2, dtype=np.float64)
    l1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    l2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    c_bar = (np.hypot(a1, b1) + np.hypot(a2, b2)) / 2
    g = 0.5 * (1 - np.sqrt(c_bar ** 7 / (c_bar ** 7 + 25.0 ** 7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    chroma0 = (c1p * c2p) == 0
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(chroma0, 0.0, dh)
    d_l, d_c = l2 - l1, c2p - c1p
    d_h = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    l_bar, cp_bar = (l1 + l2) / 2, (c1p + c2p) / 2
    h_sum, h_diff = h1p + h2p, np.abs(h1p - h2p)
    h_bar = np.where(chroma0, h_sum, np.where(h_diff <= 180, h_sum / 2,
                                              np.where(h_sum < 360, (h_sum + 360) / 2, (h_sum - 360) / 2)))
    t = (1 - 0.17 * np.cos(np.radians(h_bar - 30)) + 0.24 * np.cos(np.radians(2 * h_bar))
         + 0.32 * np.cos(np.radians(3 * h_bar + 6)) - 0.20 * np.cos(np.radians(4 * h_bar - 63)))
    d_theta = 30 * np.exp(-(((h_bar - 275) / 25) ** 2))
    r_c = 2 * np.sqrt(cp_bar ** 7 / (cp_bar ** 7 + 25.0 ** 7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / np.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = -np.sin(np.radians(2 * d_theta)) * r_c
    return np.sqrt((d_l / s_l) ** 2 + (d_c / s_c) ** 2 + (d_h / s_h) ** 2 + r_t * (d_c / s_c) * (d_h / s_h))


class _Values:
    """Converted form of each distinct value of one path, grown as new values appear."""

    def __init__(self, convert) -> None:
        self._convert = convert
        self._keys: list | None = None
        self.table = np.empty(0)

    def update(self, keys: list) -> np.ndarray:
        if keys is not self._keys:  # a rebuilt field index (compaction): its value ids changed
            self._keys, self.table = keys, np.empty(0)
        if len(keys) > len(self.table):
            new = self._convert(keys[len(self.table):])
            self.table = np.concatenate([self.table, new]) if len(self.table) else new
        return self.table


def _labs(keys: list) -> np.ndarray:
    rgb = np.zeros((len(keys), 3))
    bad = np.zeros(len(keys), dtype=bool)
    for i, (tag, value) in enumerate(keys):
        try:
            rgb[i] = hex_to_rgb(value) if tag == "s" else (0, 0, 0)
            bad[i] = tag != "s"
        except ValueError:
            bad[i] = True
    lab = srgb_to_lab(rgb)
    lab[bad] = np.nan  # never close to anything
    return lab


def _numbers(keys: list) -> np.ndarray:
    return np.array([v if tag == "n" else 0.0 for tag, v in keys], dtype=np.float64)


class ColorIndex:
    """Per-collection view of the dominant colours, straight from the field index's postings."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._labs = _Values(_labs)
        self._weights = _Values(_numbers)

    def scores(self, store: CollectionStore, lab: np.ndarray) -> np.ndarray:
        """Score per slot for a query colour (Lab); -inf for slots without colours."""
        c_rows, c_vids, c_keys = store.postings(COLOR_PATH)
        w_rows, w_vids, w_keys = store.postings(WEIGHT_PATH)
        with self._lock:
            labs = self._labs.update(c_keys)
            weights = self._weights.update(w_keys)
        m = min(len(c_rows), len(w_rows))  # a write may be between the two paths' appends
        c_rows, c_vids, w_vids = c_rows[:m], c_vids[:m], w_vids[:m]
        if not np.array_equal(c_rows, w_rows[:m]):
            raise LookalikeError("the colour postings are out of step with their weights")
        if m == 0:
            return np.full(0, -np.inf, dtype=np.float32)
        near = np.exp(-((ciede2000(lab, labs[: int(c_vids.max()) + 1]) / SIGMA) ** 2))
        near = np.nan_to_num(near, nan=0.0)
        n = int(c_rows.max()) + 1
        total = np.bincount(c_rows, weights=weights[w_vids] * near[c_vids], minlength=n)
        has = np.bincount(c_rows, minlength=n) > 0
        return np.where(has, total, -np.inf).astype(np.float32)


_INDEXES: "weakref.WeakKeyDictionary[CollectionStore, ColorIndex]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


def color_scores(store: CollectionStore, value: object) -> np.ndarray:
    """Per-slot colour scores of the collection for the query colour `value` (for slot_scores)."""
    lab = parse_color(value)
    with _LOCK:
        index = _INDEXES.get(store)
        if index is None:
            index = _INDEXES[store] = ColorIndex()
    return index.scores(store, lab)


def color_query(store: CollectionStore, params) -> np.ndarray:
    """Slot scores for a search whose query is `{"color": ...}` (filters etc. apply as usual)."""
    if params.negative:
        raise BadRequest("'negative' anchors cannot be combined with a 'color' query")
    return color_scores(store, params.query["color"])
