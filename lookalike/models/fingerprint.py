"""Perceptual fingerprints of an image, computed at ingest and for `match` queries.

`fingerprint` gives a record's `_pixel_hash` (identity of its decoded pixels) and
`_fingerprint` (121 DCT sign hashes of 256 bits); `query_hashes` gives the versions a query
image is compared in. How they are built and compared: docs/duplicates.md.
"""
from __future__ import annotations

import base64
import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image
from scipy.fft import dct

FINGERPRINT = "_fingerprint"
PIXEL_HASH = "_pixel_hash"
#: Computed fields added at ingest: `_pixel_hash` is shown with the record, `_fingerprint`
#: stays internal (left out of hits and `get`, see `project` and `Collection.get`).

HASH_SIDE = 16                  # 16 x 16 DCT coefficients -> 256 bits (DC bit always 0)
BITS = HASH_SIDE * HASH_SIDE
WORDS = BITS // 64
GRID = 3                        # 3 x 3 windows
WINDOW = 0.6                    # of the width and height
CENTRE = 1 + GRID * GRID // 2    # the centred window's position in a fingerprint
CROP_WINDOW, CROP_GRID = 0.4, 5  # small windows a crop of the image still contains whole
CROP_SCALE, CROP_QUERY_GRID = 0.6, 9  # crops found: about this share of each side; query positions
FIRST_CROP = 1 + GRID * GRID
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
CANVAS = 128                   # side of the greyscale image everything is hashed from


# -- fingerprints ---------------------------------------------------------------------------
def pixel_hash(image: Image.Image, data: bytes | None = None) -> str:
    """Identity of the decoded pixels: equal for byte-identical or losslessly re-encoded copies.

    `data`: `image.tobytes()` when the caller already has it (hashed without another copy)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes() if data is None else data)
    return h.hexdigest()


def _canvas(image: Image.Image) -> Image.Image:
    """The greyscale square (mode F, CANVAS pixels a side) every hash is computed from."""
    grey = image.convert("L").resize((CANVAS, CANVAS), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return grey.convert("F")


def boxes(fraction: float = WINDOW, grid: int = GRID) -> list[tuple[int, int, int, int]]:
    """Square windows of `fraction` of the canvas side, on a grid x grid lattice from corner to corner."""
    return list(_grid_boxes(fraction, grid))


@lru_cache(maxsize=32)
def _grid_boxes(fraction: float, grid: int) -> tuple[tuple[int, int, int, int], ...]:
    size = round(CANVAS * fraction)
    starts = np.linspace(0, CANVAS - size, grid).round().astype(int).tolist()
    return tuple((x, y, x + size, y + size) for y in starts for x in starts)


WHOLE = [(0, 0, CANVAS, CANVAS)]


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


def dct_bits(canvas: Image.Image | np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
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
    pixels = np.asarray(canvas, dtype=np.float64)  # what dct_bits hashes, converted once for both calls
    stored = dct_bits(pixels, WHOLE + boxes() + boxes(CROP_WINDOW, CROP_GRID))
    bits = np.concatenate([
        stored,
        stored[:1] if trimmed is None else dct_bits(canon, WHOLE),  # no frame: the same canvas and box
        _rotated_centres(canon),
        dct_bits(pixels, boxes(CROP_WINDOW / CROP_SCALE, COPY_GRID))])
    return {FINGERPRINT: base64.b64encode(np.packbits(bits, axis=1).tobytes()).decode(),
            PIXEL_HASH: pixel_hash(image, data)}


def _rotated_centres(canvas: Image.Image) -> np.ndarray:
    """The centre window of the canvas rotated by each of ROTATIONS[1:] (the corners are lost).

    Only the window is rotated (`_rotated_window`: 36 % of the canvas's pixels); the whole
    canvas is rotated only to seed a flat window's random bits, as the hash always was."""
    box = boxes()[CENTRE - 1]
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
MIRROR_BYTES = np.packbits(MIRROR)  # the same bits, packed as hashes are stored


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


#: `query_hashes` without the caller's `trim_border`: it finds it.
_FIND = object()


def query_hashes(image: Image.Image, trimmed: Image.Image | None | object = _FIND) -> QueryHashes:
    """Hash versions of a query image, undoing the edits a copy typically went through
    (`trimmed`: `trim_border(image)` when the caller has it already)."""
    if trimmed is _FIND:
        trimmed = trim_border(image)
    bases = [image] if trimmed is None else [image, trimmed]
    plain, rotated, aligned = [], [], []
    # if the query is a crop of CROP_SCALE of a stored image, some of these sub-windows are
    # (nearly) one of its stored CROP_WINDOW windows
    image_canvas = _canvas(image)
    image_pixels = np.asarray(image_canvas, dtype=np.float64)  # what dct_bits hashes, converted once
    crop = dct_bits(image_pixels, boxes(CROP_WINDOW / CROP_SCALE, CROP_QUERY_GRID))
    centre = [boxes()[CENTRE - 1]]
    for base in bases:
        canvas = image_canvas if base is image else _canvas(base)
        pixels = image_pixels if base is image else np.asarray(canvas, dtype=np.float64)
        aligned.append(dct_bits(pixels, boxes(CROP_WINDOW, CROP_GRID)))  # survives a caption over some
        whole = dct_bits(pixels, WHOLE)[0]
        plain.extend([whole, whole ^ MIRROR])
        for angle in ROTATIONS[1:]:  # rotate back and keep the centre window, which has no lost corners
            bits = dct_bits(canvas.rotate(angle, Image.Resampling.BILINEAR), centre)[0]
            rotated.extend([bits, bits ^ MIRROR])
    return QueryHashes(_as_words(np.array(plain)), _as_words(np.array(rotated)), _as_words(np.array(aligned)),
                       _as_words(np.array(crop)), np.asarray(image_canvas))


def stored_query_hashes(fp: np.ndarray) -> QueryHashes:
    """For a query by a stored record's id: its copy side (or, for an old fingerprint, its whole
    image hash), each also mirrored."""
    bits = as_bits(full_width(fp))
    whole = np.unique(bits[[0, CANON]], axis=0)
    rotated = bits[ROTATED:COPY_CROPS]
    crop = bits[COPY_CROPS:] if len(fp) == N_HASHES else bits[:0]
    if len(fp) != N_HASHES:
        rotated = bits[:0]
    aligned = bits[None, FIRST_CROP:N_STORED]
    return QueryHashes(_as_words(np.concatenate([whole, whole ^ MIRROR])),
                       _as_words(np.concatenate([rotated, rotated ^ MIRROR])), _as_words(aligned), _as_words(crop))


def as_bytes(words: np.ndarray) -> np.ndarray:
    """uint64 (..., 4) -> uint8 (..., 32): the hash's bits packed as they are stored."""
    return np.ascontiguousarray(words.astype(">u8")).view(np.uint8)


def as_bits(words: np.ndarray) -> np.ndarray:
    """uint64 (..., 4) -> bool (..., 256)."""
    return np.unpackbits(as_bytes(words), axis=-1).astype(bool)
