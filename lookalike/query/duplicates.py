"""Near-duplicate matching (`match`) and duplicate clustering (`duplicates`).

Why not the CNN embedding alone: its pooled features say *what* is in a picture, so two
different striped shirts can look more alike to it than a shirt and its greyscale or
framed copy, and its similarity has no threshold that separates copies from look-alikes.
Copies are found with perceptual fingerprints instead, kept per record at ingest
(computed fields, see `fingerprint`):

- `_pixel_hash`: BLAKE2b of the decoded, orientation-corrected RGB pixels (and their size).
  Equal pixel hashes (or equal source bytes) make a hit `"_match": "exact"`. JPEGs are
  decoded at the model's draft size, so a JPEG and a PNG of the same pixels count as "near".
- `_fingerprint`: base64 of 1 + 9 + 25 DCT hashes of 256 bits: the whole image, nine
  windows of 60 % x 60 % of it on a 3 x 3 grid, and 25 small windows of 40 % on a 5 x 5
  grid (a crop of about 60 % of the image contains one of those whole). Each hash is the sign of the 16 x 16 lowest DCT coefficients of a
  32 x 32 greyscale thumbnail (DC left out): greyscale and blur/recompression/downscaling
  barely change it, and a horizontal mirror flips exactly the odd-frequency bits.

A query image is hashed in 10 versions (as is, and with a uniform border trimmed; each
rotated by 0, ±5 and ±10 degrees), each also mirrored by flipping bits. Its similarity to
a record is the best `1 - 2 * hamming / 256` over those versions against the record's
hashes (a rotated version by its centre window, against the stored centre window, as the
corners are lost in rotation; the windows of the query, each against the stored window at
the same place, as a caption or logo spoils only some of them; and 9 x 9 sub-windows of the
query, of the size a stored 40 % window has in a 60 % crop, against the small windows, less
0.1 for the noise of those ~2,000 comparisons), 0 for unrelated images and 1 for identical
ones. The scan is a vectorised XOR + popcount over a per-collection NumPy
array of the packed hashes, built from the field index's postings (so it follows upserts
and deletes without extra bookkeeping): 1.1 KB of memory per record, plus the base64
string the field index holds.

`duplicates` compares the whole-image hashes of all records with blocked matrix products
of their ±1 forms (plus the mirrored forms), keeps pairs over the threshold and returns the
connected components (scipy.sparse.csgraph) of size two or more.
"""
from __future__ import annotations

import base64
import hashlib
import threading
import time
import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image
from scipy.fft import dctn

from ..errors import BadRequest, NotFound
from ..models.images import open_image
from ..records import digest
from ..store.base import CollectionStore, SearchRequest
from .filters import MATCH_ALL
from .search import MAX_K, check_int, check_query, project

if TYPE_CHECKING:
    from ..collection import Collection

FINGERPRINT = "_fingerprint"
PIXEL_HASH = "_pixel_hash"
#: Computed fields added at ingest: `_pixel_hash` is shown with the record, `_fingerprint`
#: stays internal (left out of hits and `get`, see `project` and `Collection.get`).
FIELDS = (FINGERPRINT, PIXEL_HASH)

HASH_SIDE = 16                  # 16 x 16 DCT coefficients -> 256 bits (DC bit always 0)
BITS = HASH_SIDE * HASH_SIDE
WORDS = BITS // 64
GRID = 3                        # 3 x 3 windows
WINDOW = 0.6                    # of the width and height
CENTRE = 1 + GRID * GRID // 2    # the centred window's position in a fingerprint
CROP_WINDOW, CROP_GRID = 0.4, 5  # small windows a crop of the image still contains whole
CROP_SCALE, CROP_QUERY_GRID = 0.6, 9  # crops found: about this share of each side; query positions
CROP_PENALTY = 0.1               # crop scores come from ~2000 comparisons: discount their noise
FIRST_CROP = 1 + GRID * GRID
#: Crops are looked for in collections of up to this many fingerprints (about 0.1 ms a record).
CROP_SCAN_MAX = 20_000
N_HASHES = FIRST_CROP + CROP_GRID * CROP_GRID
ROTATIONS = (0.0, -5.0, 5.0, -10.0, 10.0)
#: Default similarity over which a record is a near copy (tuned on bench/duplicates.py).
DEFAULT_MATCH_THRESHOLD = 0.55
DEFAULT_DUPLICATE_THRESHOLD = 0.6
_CANVAS = 128                   # side of the greyscale image everything is hashed from


# -- fingerprints ---------------------------------------------------------------------------
def pixel_hash(image: Image.Image) -> str:
    """Identity of the decoded pixels: equal for byte-identical or losslessly re-encoded copies."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def _canvas(image: Image.Image) -> Image.Image:
    """The greyscale square (mode F, _CANVAS pixels a side) every hash is computed from."""
    grey = image.convert("L").resize((_CANVAS, _CANVAS), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return grey.convert("F")


def _boxes(fraction: float = WINDOW, grid: int = GRID) -> list[tuple[int, int, int, int]]:
    """Square windows of `fraction` of the canvas side, on a grid x grid lattice from corner to corner."""
    size = round(_CANVAS * fraction)
    starts = np.linspace(0, _CANVAS - size, grid).round().astype(int).tolist()
    return [(x, y, x + size, y + size) for y in starts for x in starts]


WHOLE = [(0, 0, _CANVAS, _CANVAS)]


def _dct_bits(canvas: Image.Image, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Per box, 256 sign bits of the lowest DCT coefficients of that part of the canvas."""
    side = 2 * HASH_SIDE
    thumbs = np.stack([np.asarray(canvas.crop(box).resize((side, side), Image.Resampling.BILINEAR, reducing_gap=2.0),
                                  dtype=np.float64) for box in boxes])
    coef = dctn(thumbs, axes=(1, 2), norm="ortho")[:, :HASH_SIDE, :HASH_SIDE]
    bits = coef > 0
    bits[:, 0, 0] = False  # DC: brightness, not structure
    return bits.reshape(len(boxes), BITS)


def fingerprint(image: Image.Image) -> dict:
    """The computed fields stored at ingest: `{"_fingerprint": base64, "_pixel_hash": hex}`."""
    bits = _dct_bits(_canvas(image), WHOLE + _boxes() + _boxes(CROP_WINDOW, CROP_GRID))
    return {FINGERPRINT: base64.b64encode(np.packbits(bits, axis=1).tobytes()).decode(),
            PIXEL_HASH: pixel_hash(image)}


def _mirror_mask() -> np.ndarray:
    """Bits whose DCT coefficient changes sign under a horizontal mirror (odd horizontal frequency)."""
    u = np.arange(HASH_SIDE)[None, :].repeat(HASH_SIDE, 0)
    return (u % 2 == 1).ravel()


MIRROR = _mirror_mask()


def _as_words(bits: np.ndarray) -> np.ndarray:
    """Bool (..., 256) -> uint64 (..., 4) for XOR/popcount."""
    packed = np.packbits(bits, axis=-1)
    return np.ascontiguousarray(packed).view(">u8").astype(np.uint64)


def decode_fingerprint(value: str) -> np.ndarray | None:
    """Base64 fingerprint -> uint64 (N_HASHES, 4); None if it is not one of ours."""
    try:
        raw = np.frombuffer(base64.b64decode(value, validate=True), dtype=np.uint8)
    except (ValueError, TypeError):
        return None
    if raw.size != N_HASHES * BITS // 8:
        return None
    return raw.reshape(N_HASHES, BITS // 8).view(">u8").astype(np.uint64)


def trim_border(image: Image.Image, tolerance: int = 24) -> Image.Image | None:
    """The image without a uniform frame of its corner colour; None when there is none."""
    arr = np.asarray(image.convert("RGB"), dtype=np.int16)
    h, w = arr.shape[:2]
    content = np.abs(arr - arr[0, 0]).max(axis=-1) > tolerance
    rows, cols = np.flatnonzero(content.any(1)), np.flatnonzero(content.any(0))
    if not len(rows):
        return None
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    if (box[2] - box[0]) * (box[3] - box[1]) > 0.95 * w * h:
        return None
    return image.crop(box)


@dataclass
class QueryHashes:
    """A query's hash versions: `plain` (as is, trimmed; plus mirrors) and `rotated` (plus mirrors)."""

    plain: np.ndarray    # uint64 (P, 4): compared with every stored hash
    rotated: np.ndarray  # uint64 (R, 4): centre windows of rotated versions, vs the stored centre window
    aligned: np.ndarray  # uint64 (B, GRID*GRID, 4): windows, each vs the stored window at its place
    crop: np.ndarray     # uint64 (C, 4): sub-windows the size a stored crop window has in a crop


def query_hashes(image: Image.Image) -> QueryHashes:
    """Hash versions of a query image, undoing the edits a copy typically went through."""
    bases = [image]
    trimmed = trim_border(image)
    if trimmed is not None:
        bases.append(trimmed)
    plain, rotated, aligned = [], [], []
    # if the query is a crop of CROP_SCALE of a stored image, some of these sub-windows are
    # (nearly) one of its stored CROP_WINDOW windows
    crop = _dct_bits(_canvas(image), _boxes(CROP_WINDOW / CROP_SCALE, CROP_QUERY_GRID))
    centre = [_boxes()[CENTRE - 1]]
    for base in bases:
        canvas = _canvas(base)
        aligned.append(_dct_bits(canvas, _boxes()))  # survives a caption over one part
        whole = _dct_bits(canvas, WHOLE)[0]
        plain.extend([whole, whole ^ MIRROR])
        for angle in ROTATIONS[1:]:  # rotate back and keep the centre window, which has no lost corners
            bits = _dct_bits(canvas.rotate(angle, Image.Resampling.BILINEAR), centre)[0]
            rotated.extend([bits, bits ^ MIRROR])
    return QueryHashes(_as_words(np.array(plain)), _as_words(np.array(rotated)), _as_words(np.array(aligned)),
                       _as_words(np.array(crop)))


def stored_query_hashes(fp: np.ndarray) -> QueryHashes:
    """For a query by a stored record's id: its whole-image hash and its mirror."""
    bits = np.unpackbits(fp[:1].astype(">u8").view(np.uint8), axis=-1).astype(bool)[:, :BITS]
    none = np.zeros((0, WORDS), dtype=np.uint64)
    return QueryHashes(_as_words(np.concatenate([bits, bits ^ MIRROR])), none, none.reshape(0, GRID * GRID, WORDS),
                       none)


# -- scanning ---------------------------------------------------------------------------------
def _hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Popcount of XOR over the last axis (uint64 words), broadcasting."""
    return np.bitwise_count(a ^ b).sum(axis=-1, dtype=np.int32)


def similarities(stored: np.ndarray, query: QueryHashes, chunk: int = 2_000) -> np.ndarray:
    """Best similarity of each stored fingerprint (N, N_HASHES, 4) to the query versions."""
    out = np.empty(len(stored), dtype=np.float32)
    crop = _signs(query.crop).T.copy()  # (256, C)
    for start in range(0, len(stored), chunk):
        part = stored[start:start + chunk]
        best = _hamming(part[:, :FIRST_CROP, None, :], query.plain[None, None]).min(axis=(1, 2))
        if len(query.rotated):
            centre = part[:, CENTRE:CENTRE + 1, None, :]
            best = np.minimum(best, _hamming(centre, query.rotated[None, None]).min(axis=(1, 2)))
        if len(query.aligned):
            best = np.minimum(best, _hamming(part[:, None, 1:FIRST_CROP], query.aligned[None]).min(axis=(1, 2)))
        sims = 1.0 - 2.0 * best / BITS
        if crop.size:  # ~2000 pairs per record: one BLAS product of ±1 forms (a.b / 256 = 1 - 2 h / 256)
            dots = _signs(part[:, FIRST_CROP:]).reshape(-1, BITS) @ crop
            sims = np.maximum(sims, dots.reshape(len(part), -1).max(axis=1) / BITS - CROP_PENALTY)
        out[start:start + len(part)] = sims
    return out


class FingerprintCache:
    """Per-collection packed fingerprints by slot, grown from the field index's postings.

    Postings only grow, so each update decodes just the new ones; a rebuilt field index
    (compaction, reopening) is recognised by its new list of distinct values, and read anew.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset(None)

    def _reset(self, keys: list | None) -> None:
        self._keys = keys      # the field index's distinct values list these postings index into
        self._seen = 0         # postings consumed
        self.slots = np.empty(0, dtype=np.int64)
        self.hashes = np.empty((0, N_HASHES, WORDS), dtype=np.uint64)

    def update(self, rows: np.ndarray, vids: np.ndarray, keys: list) -> tuple[np.ndarray, np.ndarray]:
        """(slots, hashes) of every posting so far; only new postings are decoded."""
        with self._lock:
            if keys is not self._keys or len(rows) < self._seen:
                self._reset(keys)
            if len(rows) > self._seen:
                new_rows = rows[self._seen:]
                decoded = [decode_fingerprint(keys[v][1]) if keys[v][0] == "s" else None
                           for v in vids[self._seen:len(rows)].tolist()]
                keep = [i for i, fp in enumerate(decoded) if fp is not None]
                if keep:
                    self.slots = np.concatenate([self.slots, new_rows[keep]])
                    self.hashes = np.concatenate([self.hashes, np.stack([decoded[i] for i in keep])])
                self._seen = len(rows)
            return self.slots, self.hashes


# -- duplicates ---------------------------------------------------------------------------------
def _signs(words: np.ndarray) -> np.ndarray:
    """uint64 (..., 4) -> float32 (..., 256) of ±1."""
    bits = np.unpackbits(np.ascontiguousarray(words.astype(">u8")).view(np.uint8), axis=-1)
    return bits.astype(np.float32) * 2 - 1


def similar_pairs(words: np.ndarray, threshold: float, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (i < j) whose whole-image hashes (or one's mirror) have similarity >= threshold.

    With ±1 vectors, a.b = BITS - 2 * hamming, so similarity = a.b / BITS: one matrix
    product per block pair, no Python loop over records.
    """
    signs = _signs(words)
    mirrored = signs * np.where(MIRROR, -1.0, 1.0).astype(np.float32)
    limit = threshold * BITS - 1e-3
    rows, cols = [], []
    n = len(signs)
    for start in range(0, n, block):
        a = signs[start:start + block]
        for other in range(start, n, block):
            b, bm = signs[other:other + block], mirrored[other:other + block]
            sims = np.maximum(a @ b.T, a @ bm.T)
            i, j = np.nonzero(sims >= limit)
            i, j = i + start, j + other
            keep = i < j
            rows.append(i[keep])
            cols.append(j[keep])
    return (np.concatenate(rows) if rows else np.empty(0, np.int64),
            np.concatenate(cols) if cols else np.empty(0, np.int64))


def clusters(n: int, rows: np.ndarray, cols: np.ndarray) -> list[np.ndarray]:
    """Connected components of size >= 2 of the graph with these edges, as index arrays."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if n == 0 or len(rows) == 0:
        return []
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    order = np.argsort(labels, kind="stable")
    sizes = np.bincount(labels)
    groups = np.split(order, np.cumsum(sizes)[:-1])
    return [g for g in groups if len(g) > 1]


# -- the operations behind Collection.match / Collection.duplicates ----------------------------
_CACHES: "weakref.WeakKeyDictionary[object, FingerprintCache]" = weakref.WeakKeyDictionary()
_CACHES_LOCK = threading.Lock()
IMAGE_KINDS = ("url", "base64", "file", "image")


def _cache(store: CollectionStore) -> FingerprintCache:
    with _CACHES_LOCK:
        cache = _CACHES.get(store)
        if cache is None:
            cache = _CACHES[store] = FingerprintCache()
        return cache


def check_threshold(value: object, default: float) -> float:
    if value is None:
        return default
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value <= 1:
        raise BadRequest(f"'threshold' must be a number from 0 to 1, got {value!r}")
    return float(value)


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


def match(col: "Collection", query: dict, threshold: float | None = None, k: int = 10,
          fields: list[str] | None = None) -> dict:
    """Records that are copies of the query image (or of a stored record, `{"id": ...}`)."""
    start = time.perf_counter()
    check_query(query)
    limit = check_threshold(threshold, DEFAULT_MATCH_THRESHOLD)
    k = check_int("k", k, 1, MAX_K)
    kind, value = next(iter(query.items()))
    store = col._store
    exclude: list[str] = []
    source = None
    if kind == "id":
        if not isinstance(value, str):
            raise BadRequest("'id' must be a string")
        doc = store.get([value])[0]
        if doc is None:
            raise NotFound(f"record {value!r} not found in collection {col.name!r}")
        fp = decode_fingerprint(doc.get(FINGERPRINT, ""))
        if fp is None:
            raise BadRequest(f"record {value!r} has no image fingerprint (a '_vector' record, or ingested "
                             "before fingerprints existed: upsert its image again)")
        qhashes, pix, exclude = stored_query_hashes(fp), doc.get(PIXEL_HASH), [value]
    elif kind in IMAGE_KINDS:
        data = col._image_bytes(kind, value)
        encoder = col.encoder
        image = open_image(data, max_pixels=col.max_pixels, draft_size=encoder.input_size if encoder else None)
        qhashes, pix, source = query_hashes(image), pixel_hash(image), digest(data)
    else:
        raise BadRequest(f"match takes an image (url, base64, file) or a record id, not '{kind}'")
    slots, hashes = stored_fingerprints(store)
    exact_slots = _slots_with(store, PIXEL_HASH, pix) if pix else np.empty(0, dtype=np.int64)
    size = int(max(slots.max(initial=-1), exact_slots.max(initial=-1))) + 1
    scores = np.full(size, -np.inf, dtype=np.float32)
    if len(slots) > CROP_SCAN_MAX:  # the crop check costs ~2000 comparisons a record: bounded
        qhashes.crop = qhashes.crop[:0]
    if len(slots):
        sims = similarities(hashes, qhashes)
        scores[slots] = np.where(sims >= limit, sims, -np.inf)
    scores[exact_slots] = 1.0
    hits = store.search(SearchRequest(vector=np.zeros(1, dtype=np.float32), k=k, slot_scores=scores,
                                      exclude=exclude))
    docs = store.get([h.id for h in hits])
    sources = store.hashes([h.id for h in hits]) if source else {}
    out = []
    for hit, doc in zip(hits, docs):
        doc = doc or {}
        same = (pix is not None and doc.get(PIXEL_HASH) == pix) or (
            source is not None and sources.get(hit.id, ("", ""))[1] == source)
        out.append({"_id": hit.id, "_score": round(1.0 if same else hit.score, 6),
                    "_match": "exact" if same else "near", **project(doc, fields)})
    out.sort(key=lambda h: (h["_match"] != "exact", -h["_score"]))
    return {"hits": out, "took_ms": round((time.perf_counter() - start) * 1000, 3)}


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


def duplicates(col: "Collection", threshold: float | None = None) -> dict:
    """Groups of records that are copies of each other: `{"clusters": [[id, ...], ...]}`."""
    start = time.perf_counter()
    limit = check_threshold(threshold, DEFAULT_DUPLICATE_THRESHOLD)
    store = col._store
    live_slots, live_ids = _live_slots(store)
    slots, hashes = stored_fingerprints(store)
    position = np.full(int(max(slots.max(initial=-1), live_slots.max(initial=-1))) + 1, -1, dtype=np.int64)
    position[slots] = np.arange(len(slots))
    have = position[live_slots] >= 0
    ids = [i for i, ok in zip(live_ids, have) if ok]
    words = hashes[position[live_slots[have]], 0]
    rows, cols = similar_pairs(words, limit)
    groups = [sorted(ids[i] for i in group) for group in clusters(len(ids), rows, cols)]
    groups.sort(key=lambda g: (-len(g), g[0]))
    return {"clusters": groups, "took_ms": round((time.perf_counter() - start) * 1000, 3)}
