"""Local features of an image for copy verification (`match`): ORB keypoints and a colour grid.

Computed at ingest into the internal field `_keypoints` (base64, about 6 KB a record: 100k
records hold about 600 MB of it in the metadata store), and for each `match` query. The
geometric check that uses them is query/verify.py; why ORB and these sizes: docs/duplicates.md.
"""
from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image

KEYPOINTS = "_keypoints"
#: Longest side of the grey image the features are found in (a smaller image loses small
#: crops' detail; a larger one costs ingest and query time: about 4 ms at 320 px).
SIDE = 320
N_FEATURES = 160
#: Contrast limit of the local equalisation before corners are looked for.
CLAHE_CLIP = 3.0
#: Side of the grid of mean CIELAB colours kept for the colour check of an aligned region.
COLOUR_GRID = 12
#: Coordinates are kept in 1/COORD_SCALE pixel steps (uint16 holds SIDE * 64).
COORD_SCALE = 64
_HEADER = struct.Struct("<BHHH")  # version, width, height, keypoint count
_VERSION = 2  # 2: corners found after local contrast equalisation


@dataclass
class Features:
    """Keypoints (x, y in pixels of an image `size` = (w, h)), their ORB descriptors (n, 32)
    and the colour grid (COLOUR_GRID, COLOUR_GRID, 3) in OpenCV's 8-bit CIELAB."""

    size: tuple[int, int]
    points: np.ndarray       # float32 (n, 2)
    descriptors: np.ndarray  # uint8 (n, 32)
    colours: np.ndarray      # uint8 (COLOUR_GRID, COLOUR_GRID, 3)


def _cv2():
    import cv2  # opencv-python-headless (a core dependency); imported when first needed

    cv2.setNumThreads(1)  # one small image: threads cost more than they save
    return cv2


def reduced(image: Image.Image, side: int = SIDE) -> np.ndarray:
    """RGB uint8 array of the image with its longest side `side` (up or down)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    w, h = rgb.size
    scale = side / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(rgb.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0))


def features(image: Image.Image | np.ndarray, n_features: int = N_FEATURES) -> Features:
    """ORB keypoints and descriptors of the image reduced to SIDE, and its colour grid."""
    cv2 = _cv2()
    rgb = reduced(image) if isinstance(image, Image.Image) else image
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # local contrast equalised: smooth or dark pictures (a gradient wallpaper, a night
    # version) otherwise give FAST no corners at all
    grey = cv2.createCLAHE(clipLimit=CLAHE_CLIP, tileGridSize=(4, 4)).apply(grey)
    orb = cv2.ORB_create(nfeatures=n_features, scaleFactor=1.3, nlevels=6, edgeThreshold=15, patchSize=15,
                         fastThreshold=8)
    kps, desc = orb.detectAndCompute(grey, None)
    if desc is None or not kps:
        points, desc = np.empty((0, 2), np.float32), np.empty((0, 32), np.uint8)
    else:
        points = np.array([kp.pt for kp in kps], dtype=np.float32)
    h, w = grey.shape
    return Features((w, h), points, desc, colour_grid(rgb))


def colour_grid(rgb: np.ndarray, grid: int = COLOUR_GRID) -> np.ndarray:
    """Mean CIELAB (OpenCV 8-bit) of each cell of a grid x grid split of the image."""
    cv2 = _cv2()
    small = cv2.resize(rgb, (grid, grid), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2LAB)


def lab_image(rgb: np.ndarray, side: int = 48) -> np.ndarray:
    """A small CIELAB copy of the image (longest side `side`), for sampling aligned colours."""
    cv2 = _cv2()
    h, w = rgb.shape[:2]
    scale = side / max(w, h)
    small = cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2LAB)


def self_distance(f: Features) -> float:
    """Median Hamming distance (of 256 bits) from each descriptor to the nearest other one of
    the same picture: near 0 for a repeated pattern (stripes, checks), whose every corner has
    twins that defeat the ratio test of descriptor matching; 256 with fewer than two."""
    if len(f.descriptors) < 2:
        return 256.0
    bits = np.unpackbits(f.descriptors, axis=1).astype(np.int32)
    ones = bits.sum(axis=1)
    d = ones[:, None] + ones[None, :] - 2 * (bits @ bits.T)   # bits set in one but not both
    np.fill_diagonal(d, bits.shape[1])
    return float(np.median(d.min(axis=1)))


def mirrored(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb[:, ::-1])


def encode_features(f: Features) -> str:
    """Base64 of header, uint16 coordinates, descriptors and colour grid (about 6 KB)."""
    n = len(f.points)
    coords = np.clip(np.round(f.points * COORD_SCALE), 0, 65535).astype("<u2")
    raw = (_HEADER.pack(_VERSION, f.size[0], f.size[1], n) + coords.tobytes()
           + np.ascontiguousarray(f.descriptors, dtype=np.uint8).tobytes() + f.colours.astype(np.uint8).tobytes())
    return base64.b64encode(raw).decode()


def decode_features(value: object) -> Features | None:
    """Features from `encode_features`; None if the value is not one (absent, old or damaged)."""
    if not isinstance(value, str):
        return None
    try:
        raw = base64.b64decode(value, validate=True)
        version, w, h, n = _HEADER.unpack_from(raw)
    except (ValueError, TypeError, struct.error):
        return None
    cells = COLOUR_GRID * COLOUR_GRID * 3
    if version != _VERSION or len(raw) != _HEADER.size + n * 36 + cells:
        return None
    at = _HEADER.size
    points = np.frombuffer(raw, "<u2", 2 * n, at).reshape(n, 2).astype(np.float32) / COORD_SCALE
    at += 4 * n
    desc = np.frombuffer(raw, np.uint8, 32 * n, at).reshape(n, 32)
    colours = np.frombuffer(raw, np.uint8, cells, at + 32 * n).reshape(COLOUR_GRID, COLOUR_GRID, 3)
    return Features((w, h), points, desc, colours)


def keypoint_fields(image: Image.Image) -> dict:
    """The computed field stored at ingest: `{"_keypoints": base64}`."""
    return {KEYPOINTS: encode_features(features(image))}
