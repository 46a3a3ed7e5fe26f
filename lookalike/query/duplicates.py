"""Near-duplicate matching (`match`) and duplicate clustering (`duplicates`).

Why not the CNN embedding alone: its pooled features say *what* is in a picture, so two
different striped shirts can look more alike to it than a shirt and its greyscale or
framed copy, and its similarity has no threshold that separates copies from look-alikes.
Copies are found with perceptual fingerprints instead, kept per record at ingest
(computed fields, see `fingerprint`):

- `_pixel_hash`: BLAKE2b of the decoded, orientation-corrected RGB pixels (and their size).
  Equal pixel hashes (or equal source bytes) make a hit `"_match": "exact"`. JPEGs are
  decoded at the model's draft size, so a JPEG and a PNG of the same pixels count as "near".
- `_fingerprint`: base64 of 121 DCT hashes of 256 bits (3.9 KB). The stored part (35): the
  whole image, nine windows of 60 % x 60 % of it on a 3 x 3 grid, and 25 small windows of
  40 % on a 5 x 5 grid (a crop of about 60 % of the image contains one of those whole). The
  copy side (86): the record hashed as a query would be, so that stored records can be
  compared with each other (`duplicates`, `match` by id) without their images: the whole
  image with a uniform border trimmed, its centre window rotated back by ±5 and ±10 degrees,
  and 9 x 9 sub-windows of 2/3 of its side (a stored 40 % window's size in a 60 % crop).
  Each hash is the sign of the 16 x 16 lowest DCT coefficients of a 32 x 32 greyscale
  thumbnail (DC left out): greyscale and blur/recompression/downscaling barely change it,
  and a horizontal mirror flips exactly the odd-frequency bits; a flat window gets random
  bits (see FLAT_STD). Resizing and DCT are one
  precomputed matrix per window size (`_hash_operator`), applied to the shared rows of a grid's
  windows once (`_dct_coefficients`): about 1.5 ms an image with the pixel hash (3.1 ms before,
  same bits: bench/decode_stage.py). Fingerprints
  written before the copy side existed (35 hashes) are still read.

A query image is hashed in 10 versions (as is, and with a uniform border trimmed; each
rotated by 0, ±5 and ±10 degrees), each also mirrored by flipping bits. Its similarity to
a record is the best `1 - 2 * hamming / 256` of: its whole-image versions against the
record's whole image and 60 % windows; rotated versions by their centre window against the
stored centre window (the corners are lost in rotation), less ROTATED_PENALTY as one window
says less than the whole image; its 25 small windows against the stored small windows at
the same place, as the mean of the best ALIGNED_TOP (8) of them (a caption spoils some),
averaged with the whole-image similarity (windows alone match look-alikes); and its 9 x 9
sub-windows against the stored small windows (crops), less 0.1 for the noise of those ~2,000
comparisons, refined for the best few candidates (`refine_crops`). 0 for unrelated
images and 1 for identical ones. The scan is a vectorised XOR + popcount over a
per-collection NumPy array of the packed hashes, built from the field index's postings (so
it follows upserts and deletes without extra bookkeeping): 3.9 KB of memory per record, plus
the base64 string the field index holds.

`duplicates` scores every pair of records the same way from their fingerprints alone (record
i's copy side against record j's stored part, and the reverse) with blocked matrix products
of the ±1 forms, keeps pairs over the threshold as edges, and adds crop edges by a relative
rule: a record whose crop sub-windows match one record best, by CROP_MARGIN over every
record outside that one's cluster, and whose dominant colours that record has too
(greyscale hashes alone take a zoomed-in checkerboard for a crop of another). Clusters are
the connected components (scipy.sparse.csgraph) of size two or more. No Python loop over
records or pairs; the arithmetic is O(N^2), so rotated/captioned copies are compared in
collections of up to CLUSTER_FULL_MAX records and crops up to CLUSTER_CROP_MAX.
"""
from __future__ import annotations

import base64
import hashlib
import math
import threading
import time
import weakref
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image
from scipy.fft import dct

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
ROTATIONS = (0.0, -5.0, 5.0, -10.0, 10.0)
#: Stored part (what a query is compared with): whole image, 3 x 3 windows, 5 x 5 small windows.
N_STORED = FIRST_CROP + CROP_GRID * CROP_GRID
#: Copy side (the record hashed as a query would be, so that records can be compared with each
#: other in `duplicates` and `match` by id): border-trimmed whole image, the centre window of
#: that rotated back by ±5 and ±10 degrees, and COPY_GRID x COPY_GRID sub-windows
#: of the size a stored small window has in a 60 % crop. Fingerprints written before it existed
#: have only the stored part (N_STORED hashes) and are still read.
COPY_GRID = 9
CANON = N_STORED                               # trimmed whole image (the whole one if no border)
ROTATED = CANON + 1                            # centre window rotated back, one per ROTATIONS[1:]
COPY_CROPS = ROTATED + len(ROTATIONS) - 1      # crop sub-windows
N_HASHES = COPY_CROPS + COPY_GRID * COPY_GRID
#: Default similarity over which a record is a near copy (tuned on bench/duplicates.py).
DEFAULT_MATCH_THRESHOLD = 0.55
DEFAULT_DUPLICATE_THRESHOLD = 0.6
_CANVAS = 128                   # side of the greyscale image everything is hashed from


# -- fingerprints ---------------------------------------------------------------------------
def pixel_hash(image: Image.Image, data: bytes | None = None) -> str:
    """Identity of the decoded pixels: equal for byte-identical or losslessly re-encoded copies.

    `data`: `image.tobytes()` when the caller already has it (hashed without another copy)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes() if data is None else data)
    return h.hexdigest()


def _canvas(image: Image.Image) -> Image.Image:
    """The greyscale square (mode F, _CANVAS pixels a side) every hash is computed from."""
    grey = image.convert("L").resize((_CANVAS, _CANVAS), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return grey.convert("F")


def _boxes(fraction: float = WINDOW, grid: int = GRID) -> list[tuple[int, int, int, int]]:
    """Square windows of `fraction` of the canvas side, on a grid x grid lattice from corner to corner."""
    return list(_grid_boxes(fraction, grid))


@lru_cache(maxsize=32)
def _grid_boxes(fraction: float, grid: int) -> tuple[tuple[int, int, int, int], ...]:
    size = round(_CANVAS * fraction)
    starts = np.linspace(0, _CANVAS - size, grid).round().astype(int).tolist()
    return tuple((x, y, x + size, y + size) for y in starts for x in starts)


WHOLE = [(0, 0, _CANVAS, _CANVAS)]


@lru_cache(maxsize=16)
def _hash_operator(size: int) -> np.ndarray:
    """(HASH_SIDE, size): lowest DCT rows of the thumbnail of a size x size square, as one matrix.

    Pillow's BILINEAR resize (reducing_gap=2.0) of a float image is linear and separable, so
    thumbnail = A @ window @ A.T with A read off Pillow itself (resizing one bright row at a
    time); folded into the orthonormal DCT, hashing a stack of windows is two matrix products
    (the same bits as resizing each window with Pillow, up to float rounding)."""
    side = 2 * HASH_SIDE
    resize = np.empty((side, size))
    for j in range(size):
        row = np.zeros((size, size), dtype=np.float32)
        row[j] = 1.0
        resize[:, j] = np.asarray(Image.fromarray(row, "F").resize(
            (side, side), Image.Resampling.BILINEAR, reducing_gap=2.0))[:, 0]
    return dct(np.eye(side), norm="ortho", axis=0)[:HASH_SIDE] @ resize


#: A window whose thumbnail varies by less than this (grey levels, standard deviation of its
#: low frequencies) is flat: its sign bits are rounding noise, equal for any two flat windows.
#: It gets random bits instead, seeded by the whole canvas, so that flat windows (a plain
#: background) match nothing: two small products on the same white background are not copies.
FLAT_STD = 1.0


def _dct_bits(canvas: Image.Image | np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Per square box, 256 sign bits of the lowest DCT coefficients of that part of the canvas."""
    pixels = np.asarray(canvas, dtype=np.float64)
    return _sign_bits(_dct_coefficients(pixels, boxes), lambda: pixels)


def _dct_coefficients(pixels: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """(len(boxes), HASH_SIDE, HASH_SIDE): `op @ window @ op.T` of each square box, separably.

    Boxes of one size lie on a grid (few distinct row and column starts), so `op` is applied to
    each distinct band of rows once (`op @ pixels[y:y + size]`, full width) and `op.T` to each
    column range of all bands at once: a 9 x 9 grid costs 9 + 9 small products instead of 81 of
    81 stacked window copies (about 3x fewer flops). Each coefficient sums the same products
    as before; BLAS may add them in another order for another matrix shape, so a coefficient
    can differ in its last bit (a sign only where it is rounding noise around zero)."""
    coef = np.empty((len(boxes), HASH_SIDE, HASH_SIDE))
    for size, at, ys, xs, row, col in _grid_plan(tuple(boxes)):
        op = _hash_operator(size)
        bands = np.empty((len(ys), HASH_SIDE, pixels.shape[1]))
        for n, y in enumerate(ys):
            np.matmul(op, pixels[y:y + size], out=bands[n])
        dense = isinstance(at, slice)  # the boxes are the whole grid, row by row: write in place
        grid = coef[at].reshape(len(ys), len(xs), HASH_SIDE, HASH_SIDE) if dense else \
            np.empty((len(ys), len(xs), HASH_SIDE, HASH_SIDE))
        for n, x in enumerate(xs):
            np.matmul(bands[:, :, x:x + size], op.T, out=grid[:, n])
        if not dense:
            coef[at] = grid[row, col]
    return coef


@lru_cache(maxsize=64)
def _grid_plan(boxes: tuple[tuple[int, int, int, int], ...]) -> list[tuple]:
    """Per box size: (size, box positions, distinct row starts, distinct column starts, and each
    box's index into those two), worked out once per list of boxes. The positions are a slice
    when the boxes of that size are their whole grid in row-major order (then `coef` is written
    in place)."""
    plan = []
    for size in sorted({x1 - x0 for x0, _, x1, _ in boxes}):
        at = [i for i, box in enumerate(boxes) if box[2] - box[0] == size]
        ys = sorted({boxes[i][1] for i in at})
        xs = sorted({boxes[i][0] for i in at})
        row = np.array([ys.index(boxes[i][1]) for i in at])
        col = np.array([xs.index(boxes[i][0]) for i in at])
        dense = at == list(range(at[0], at[0] + len(ys) * len(xs))) and \
            np.array_equal(row * len(xs) + col, np.arange(len(at)))
        plan.append((size, slice(at[0], at[-1] + 1) if dense else np.array(at), ys, xs, row, col))
    return plan


def _sign_bits(coef: np.ndarray, pixels: Callable[[], np.ndarray]) -> np.ndarray:
    """(N, BITS) signs of DCT coefficients (N, 16, 16), DC left out; flat windows get random bits
    seeded by the canvas they come from (`pixels()`, float64: asked for only when one is flat)."""
    coef[:, 0, 0] = 0.0  # DC: brightness, not structure
    bits = coef > 0
    flat = _flat(coef)
    if flat.any():
        seed = int.from_bytes(hashlib.blake2b(pixels().tobytes(), digest_size=8).digest(), "little")
        bits[flat] = np.random.default_rng(seed).random((int(flat.sum()), HASH_SIDE, HASH_SIDE)) < 0.5
        bits[flat, 0, 0] = False
    return bits.reshape(len(coef), BITS)


def _flat(coef: np.ndarray) -> np.ndarray:
    """Per window (coefficients (N, 16, 16), DC zeroed): is it flat (see FLAT_STD)?"""
    return np.sqrt((coef ** 2).sum(axis=(1, 2))) / (2 * HASH_SIDE) < FLAT_STD


def fingerprint(image: Image.Image) -> dict:
    """The computed fields stored at ingest: `{"_fingerprint": base64, "_pixel_hash": hex}`.

    The fingerprint holds N_HASHES hashes: the stored part a query is compared with, then the
    copy side (the record hashed as a query would be, see N_STORED)."""
    data = image.tobytes()  # once: hashed, and searched for a frame
    canvas = _canvas(image)
    trimmed = trim_border(image, data=data)
    canon = canvas if trimmed is None else _canvas(trimmed)
    pixels = np.asarray(canvas, dtype=np.float64)  # what _dct_bits hashes, converted once for both calls
    stored = _dct_bits(pixels, WHOLE + _boxes() + _boxes(CROP_WINDOW, CROP_GRID))
    bits = np.concatenate([
        stored,
        stored[:1] if trimmed is None else _dct_bits(canon, WHOLE),  # no frame: the same canvas and box
        _rotated_centres(canon),
        _dct_bits(pixels, _boxes(CROP_WINDOW / CROP_SCALE, COPY_GRID))])
    return {FINGERPRINT: base64.b64encode(np.packbits(bits, axis=1).tobytes()).decode(),
            PIXEL_HASH: pixel_hash(image, data)}


def _rotated_centres(canvas: Image.Image) -> np.ndarray:
    """The centre window of the canvas rotated by each of ROTATIONS[1:] (the corners are lost).

    Only the window is rotated (`_rotated_window`: 36 % of the canvas's pixels); the whole
    canvas is rotated only to seed a flat window's random bits, as the hash always was."""
    box = _boxes()[CENTRE - 1]
    op = _hash_operator(box[2] - box[0])
    angles = ROTATIONS[1:]
    windows = np.stack([np.asarray(_rotated_window(canvas, angle, box)) for angle in angles])
    coef = op @ windows.astype(np.float64) @ op.T
    coef[:, 0, 0] = 0.0
    if not _flat(coef).any():  # the usual case: just the signs, as _sign_bits gives them
        return (coef > 0).reshape(len(angles), BITS)
    return np.concatenate([_sign_bits(coef[n:n + 1], lambda angle=angle: np.asarray(
        canvas.rotate(angle, Image.Resampling.BILINEAR), dtype=np.float64)) for n, angle in enumerate(angles)])


def _rotated_window(canvas: Image.Image, angle: float, box: tuple[int, int, int, int]) -> Image.Image:
    """`canvas.rotate(angle, BILINEAR).crop(box)`, computing only the box's pixels (for an angle
    that is not a multiple of 90 degrees: Pillow turns those into exact transposes).

    The same affine map as Pillow's `rotate` (about the canvas centre, coefficients rounded the
    same way), moved to start at the box's corner; the moved offset is rounded once more, so a
    pixel could differ from the whole rotation's in its last float bit (none has in the tests)."""
    w, h = canvas.size
    cx, cy = w / 2, h / 2
    theta = -math.radians(angle % 360.0)
    a, b = round(math.cos(theta), 15), round(math.sin(theta), 15)
    d, e = round(-math.sin(theta), 15), round(math.cos(theta), 15)
    c = a * -cx + b * -cy + cx
    f = d * -cx + e * -cy + cy
    x0, y0, x1, y1 = box
    matrix = (a, b, a * x0 + b * y0 + c, d, e, d * x0 + e * y0 + f)
    return canvas.transform((x1 - x0, y1 - y0), Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR)


def _mirror_mask() -> np.ndarray:
    """Bits whose DCT coefficient changes sign under a horizontal mirror (odd horizontal frequency)."""
    u = np.arange(HASH_SIDE)[None, :].repeat(HASH_SIDE, 0)
    return (u % 2 == 1).ravel()


MIRROR = _mirror_mask()
_MIRROR_BYTES = np.packbits(MIRROR)  # the same bits, packed as hashes are stored


def _as_words(bits: np.ndarray) -> np.ndarray:
    """Bool (..., 256) -> uint64 (..., 4) for XOR/popcount."""
    packed = np.packbits(bits, axis=-1)
    return np.ascontiguousarray(packed).view(">u8").astype(np.uint64)


def decode_fingerprint(value: str) -> np.ndarray | None:
    """Base64 fingerprint -> uint64 (N_STORED or N_HASHES, 4); None if it is not one of ours."""
    try:
        raw = np.frombuffer(base64.b64decode(value, validate=True), dtype=np.uint8)
    except (ValueError, TypeError):
        return None
    if raw.size not in (N_STORED * BITS // 8, N_HASHES * BITS // 8):
        return None
    return raw.reshape(-1, BITS // 8).view(">u8").astype(np.uint64)


def full_width(fp: np.ndarray) -> np.ndarray:
    """A fingerprint padded to N_HASHES: an old one (stored part only) gets its whole image as
    the trimmed one, its centre as the rotated centres and zero crop hashes (see `has_copy_side`)."""
    if len(fp) == N_HASHES:
        return fp
    centre = np.repeat(fp[CENTRE:CENTRE + 1], len(ROTATIONS) - 1, axis=0)
    crops = np.zeros((COPY_GRID * COPY_GRID, WORDS), dtype=np.uint64)
    return np.concatenate([fp, fp[:1], centre, crops])


def has_copy_side(hashes: np.ndarray) -> np.ndarray:
    """Per fingerprint (N, N_HASHES, 4): whether its crop sub-windows are real (not padding)."""
    return hashes[:, COPY_CROPS:].any(axis=(1, 2))


def trim_border(image: Image.Image, tolerance: int = 24, side: int = 256,
                data: bytes | None = None) -> Image.Image | None:
    """The image without a uniform frame of its corner colour; None when there is none.

    The frame is found on a copy reduced to about `side` pixels (a box filter: fast, and a
    frame's edge moves by at most one reduced pixel). `data`: `image.tobytes()` when the caller
    already has it (used as is for an RGB image that needs no reducing)."""
    factor = max(1, min(image.size) // side)
    if image.mode == "RGB" and factor == 1 and data is not None:
        arr = np.frombuffer(data, dtype=np.uint8).reshape(image.size[1], image.size[0], 3)
    else:
        rgb = image if image.mode == "RGB" else image.convert("RGB")  # convert copies even an RGB image
        arr = np.asarray(rgb.reduce(factor) if factor > 1 else rgb)
    h, w = arr.shape[:2]
    # content: a channel more than `tolerance` off the corner's, i.e. outside low..high (the
    # corner's bounds clipped to 0..255). In uint8, without a widening copy: v - low wraps around
    # below low, so one subtraction and one comparison test both bounds. The bounds repeat along
    # a row (a last axis of 3 would make NumPy's inner loops 3 long); only the row and column
    # spans are kept.
    corner = arr[0, 0].astype(np.int16)
    low = np.maximum(corner - tolerance, 0)
    span = np.minimum(corner + tolerance, 255) - low
    off = arr.reshape(h, w * 3) - np.tile(low.astype(np.uint8), w) > np.tile(span.astype(np.uint8), w)
    rows, cols = np.flatnonzero(off.any(1)), np.flatnonzero(off.any(0).reshape(w, 3).any(1))
    if not len(rows):
        return None
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    if (box[2] - box[0]) * (box[3] - box[1]) > 0.95 * w * h:
        return None
    sx, sy = image.size[0] / w, image.size[1] / h
    return image.crop((round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)))


@dataclass
class QueryHashes:
    """A query's hash versions: `plain` (as is, trimmed; plus mirrors) and `rotated` (plus mirrors)."""

    plain: np.ndarray    # uint64 (P, 4): compared with every stored hash
    rotated: np.ndarray  # uint64 (R, 4): centre windows of rotated versions, vs the stored centre window
    aligned: np.ndarray  # uint64 (B, N_SMALL, 4): small windows, each vs the stored one at its place
    crop: np.ndarray     # uint64 (C, 4): sub-windows the size a stored crop window has in a crop
    canvas: np.ndarray | None = None  # the query's greyscale canvas, to refine crop positions (`refine_crops`)


def query_hashes(image: Image.Image) -> QueryHashes:
    """Hash versions of a query image, undoing the edits a copy typically went through."""
    bases = [image]
    trimmed = trim_border(image)
    if trimmed is not None:
        bases.append(trimmed)
    plain, rotated, aligned = [], [], []
    # if the query is a crop of CROP_SCALE of a stored image, some of these sub-windows are
    # (nearly) one of its stored CROP_WINDOW windows
    image_canvas = _canvas(image)
    crop = _dct_bits(image_canvas, _boxes(CROP_WINDOW / CROP_SCALE, CROP_QUERY_GRID))
    centre = [_boxes()[CENTRE - 1]]
    for base in bases:
        canvas = _canvas(base)
        aligned.append(_dct_bits(canvas, _boxes(CROP_WINDOW, CROP_GRID)))  # survives a caption over some
        whole = _dct_bits(canvas, WHOLE)[0]
        plain.extend([whole, whole ^ MIRROR])
        for angle in ROTATIONS[1:]:  # rotate back and keep the centre window, which has no lost corners
            bits = _dct_bits(canvas.rotate(angle, Image.Resampling.BILINEAR), centre)[0]
            rotated.extend([bits, bits ^ MIRROR])
    return QueryHashes(_as_words(np.array(plain)), _as_words(np.array(rotated)), _as_words(np.array(aligned)),
                       _as_words(np.array(crop)), np.asarray(image_canvas))


def stored_query_hashes(fp: np.ndarray) -> QueryHashes:
    """For a query by a stored record's id: its copy side (or, for an old fingerprint, its whole
    image hash), each also mirrored."""
    bits = _as_bits(full_width(fp))
    whole = np.unique(bits[[0, CANON]], axis=0)
    rotated = bits[ROTATED:COPY_CROPS]
    crop = bits[COPY_CROPS:] if len(fp) == N_HASHES else bits[:0]
    if len(fp) != N_HASHES:
        rotated = bits[:0]
    aligned = bits[None, FIRST_CROP:N_STORED]
    return QueryHashes(_as_words(np.concatenate([whole, whole ^ MIRROR])),
                       _as_words(np.concatenate([rotated, rotated ^ MIRROR])), _as_words(aligned), _as_words(crop))


def _as_bytes(words: np.ndarray) -> np.ndarray:
    """uint64 (..., 4) -> uint8 (..., 32): the hash's bits packed as they are stored."""
    return np.ascontiguousarray(words.astype(">u8")).view(np.uint8)


def _as_bits(words: np.ndarray) -> np.ndarray:
    """uint64 (..., 4) -> bool (..., 256)."""
    return np.unpackbits(_as_bytes(words), axis=-1).astype(bool)


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
        sims = 1.0 - 2.0 * best / BITS
        if len(query.rotated):
            centre = part[:, CENTRE:CENTRE + 1, None, :]
            rotated = _hamming(centre, query.rotated[None, None]).min(axis=(1, 2))
            sims = np.maximum(sims, 1.0 - 2.0 * rotated / BITS - ROTATED_PENALTY)
        if len(query.aligned):  # the ALIGNED_TOP best windows at the same place, with the whole image
            dist = _hamming(part[:, None, FIRST_CROP:N_STORED], query.aligned[None])
            top = np.partition(dist, ALIGNED_TOP - 1, axis=2)[:, :, :ALIGNED_TOP].mean(axis=2).min(axis=1)
            whole = _hamming(part[:, :1, None, :], query.plain[None, None]).min(axis=(1, 2))
            sims = np.maximum(sims, 1.0 - (top + whole) / BITS - ALIGNED_PENALTY)
        if crop.size:  # ~2000 pairs per record: one BLAS product of ±1 forms (a.b / 256 = 1 - 2 h / 256)
            dots = _signs(part[:, FIRST_CROP:N_STORED]).reshape(-1, BITS) @ crop
            sims = np.maximum(sims, dots.reshape(len(part), -1).max(axis=1) / BITS - CROP_PENALTY)
        out[start:start + len(part)] = sims
    return out


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
    grid = _boxes(CROP_WINDOW / CROP_SCALE, CROP_QUERY_GRID)
    size = grid[0][2] - grid[0][0]
    shifts = range(-CROP_REFINE_RADIUS, CROP_REFINE_RADIUS + 1)
    out = np.empty(len(stored), dtype=np.float32)
    for k, (w, q) in enumerate(zip(window.tolist(), sub.tolist())):  # K (5) candidates
        x, y = grid[q][:2]
        boxes = [(x + dx, y + dy, x + dx + size, y + dy + size) for dy in shifts for dx in shifts
                 if 0 <= x + dx <= _CANVAS - size and 0 <= y + dy <= _CANVAS - size]
        signs = _dct_bits(query.canvas, boxes).astype(np.float32) * 2 - 1
        out[k] = (signs @ small[k, w]).max() / BITS - CROP_PENALTY - CROP_REFINE_PENALTY
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
                    self.hashes = np.concatenate([self.hashes, np.stack([full_width(decoded[i]) for i in keep])])
                self._seen = len(rows)
            return self.slots, self.hashes


# -- duplicates ---------------------------------------------------------------------------------
def _signs(words: np.ndarray) -> np.ndarray:
    """uint64 (..., 4) -> float32 (..., 256) of ±1."""
    return np.unpackbits(_as_bytes(words), axis=-1).astype(np.float32) * 2 - 1


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
    try:
        import faiss  # the `ann` extra
    except ImportError:
        return pairs_by_products(words, threshold)
    packed = _as_bytes(words)
    index = faiss.IndexBinaryFlat(BITS)
    index.add(packed)
    radius = int(np.floor((1 - threshold) * BITS / 2 + 5e-4)) + 1  # FAISS: distance < radius
    rows, cols = [], []
    for queries in (packed, packed ^ _MIRROR_BYTES):
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
    from ..models.colors import hex_to_rgb, srgb_to_lab
    from .colors import ciede2000

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
        from ..records import check_id
        check_id(value, "'id'")  # the same rule for ids as every other anchor
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
        if qhashes.canvas is not None and len(qhashes.crop):
            best = np.argsort(-sims)[:CROP_REFINE]
            sims[best] = np.maximum(sims[best], refine_crops(hashes[best], qhashes))
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
    chosen = hashes[position[live_slots[have]]]
    if len(chosen) > CLUSTER_FULL_MAX:  # whole images only, thresholded block by block
        rows, cols = similar_pairs(chosen[:, 0], limit)
    else:
        rows, cols = np.nonzero(np.triu(copy_scores(chosen) >= limit - 1e-6, k=1))
        if 1 < len(chosen) <= CLUSTER_CROP_MAX:
            crop_rows, crop_cols = crop_edges(chosen, components(len(chosen), rows, cols), limit)
            same = colours_cover(store.get([ids[i] for i in crop_rows]), store.get([ids[j] for j in crop_cols]))
            rows, cols = np.concatenate([rows, crop_rows[same]]), np.concatenate([cols, crop_cols[same]])
    groups = [sorted(ids[i] for i in group) for group in clusters(len(ids), rows, cols)]
    groups.sort(key=lambda g: (-len(g), g[0]))
    return {"clusters": groups, "took_ms": round((time.perf_counter() - start) * 1000, 3)}
