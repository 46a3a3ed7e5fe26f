"""CPU per image in ingest's decode stage, outside the model: each step's old and new code side by side.

Run: python bench/decode_stage.py [--images 48] [--size 512] [--rounds 5]

`lookalike.ingest.decode.decode_image` runs per image after the JPEG draft decode: dominant colours,
the near-duplicate fingerprint, the web thumbnail and the model's resize (fit_square). This
script keeps the implementations those steps had before they were made cheaper (2026-11-27) as
references (`old_*`; tests/test_decode_speed_equivalence.py checks the new ones against them),
and times old and new on the same decoded photo-like JPEGs in one run, interleaved, one thread
(BLAS too), best of --rounds: the table gives ms per image and the ratio old / new.
"""
from __future__ import annotations

import os

if __name__ == "__main__":  # (the tests import the references from here: leave their environment alone)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")  # single-thread, as in a decode worker; before NumPy loads BLAS

import argparse  # noqa: E402
import base64
import hashlib
import io
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lookalike.ingest.decode import make_thumbnail  # noqa: E402
from lookalike.models.colors import dominant_colors, srgb_to_lab  # noqa: E402
from lookalike.models.images import fit_square, open_image  # noqa: E402
from lookalike.models import fingerprint as fp  # noqa: E402
from lookalike.models.fingerprint import fingerprint  # noqa: E402
from lookalike.testing.photos import photo_like  # noqa: E402


# -- references: the code before (same results by definition) ---------------------------------
def old_pixel_hash(image: Image.Image) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{image.mode}:{image.size[0]}x{image.size[1]}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def old_dct_bits(canvas: Image.Image | np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    pixels = np.asarray(canvas, dtype=np.float64)
    side = fp.HASH_SIDE
    coef = np.empty((len(boxes), side, side))
    sizes = np.array([box[2] - box[0] for box in boxes])
    for size in np.unique(sizes).tolist():
        at = np.flatnonzero(sizes == size)
        windows = np.stack([pixels[boxes[i][1]:boxes[i][3], boxes[i][0]:boxes[i][2]] for i in at])
        op = fp._hash_operator(size)
        coef[at] = op @ windows @ op.T
    coef[:, 0, 0] = 0.0
    bits = coef > 0
    flat = np.sqrt((coef ** 2).sum(axis=(1, 2))) / (2 * side) < fp.FLAT_STD
    if flat.any():
        seed = int.from_bytes(hashlib.blake2b(pixels.tobytes(), digest_size=8).digest(), "little")
        bits[flat] = np.random.default_rng(seed).random((int(flat.sum()), side, side)) < 0.5
        bits[flat, 0, 0] = False
    return bits.reshape(len(boxes), fp.BITS)


def old_trim_border(image: Image.Image, tolerance: int = 24, side: int = 256) -> Image.Image | None:
    factor = max(1, min(image.size) // side)
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    small = rgb.reduce(factor) if factor > 1 else rgb
    arr = np.asarray(small, dtype=np.int16)
    h, w = arr.shape[:2]
    content = np.zeros((h, w), dtype=bool)
    for channel in range(3):
        content |= np.abs(arr[..., channel] - arr[0, 0, channel]) > tolerance
    rows, cols = np.flatnonzero(content.any(1)), np.flatnonzero(content.any(0))
    if not len(rows):
        return None
    box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
    if (box[2] - box[0]) * (box[3] - box[1]) > 0.95 * w * h:
        return None
    sx, sy = image.size[0] / w, image.size[1] / h
    return image.crop((round(box[0] * sx), round(box[1] * sy), round(box[2] * sx), round(box[3] * sy)))


def old_rotated_centres(canvas: Image.Image) -> np.ndarray:
    centre = [fp.boxes()[fp.CENTRE - 1]]
    return np.concatenate([old_dct_bits(canvas.rotate(angle, Image.Resampling.BILINEAR), centre)
                           for angle in fp.ROTATIONS[1:]])


def old_fingerprint(image: Image.Image) -> dict:
    canvas = fp._canvas(image)
    trimmed = old_trim_border(image)
    canon = canvas if trimmed is None else fp._canvas(trimmed)
    bits = np.concatenate([
        old_dct_bits(canvas, fp.WHOLE + fp.boxes() + fp.boxes(fp.CROP_WINDOW, fp.CROP_GRID)),
        old_dct_bits(canon, fp.WHOLE),
        old_rotated_centres(canon),
        old_dct_bits(canvas, fp.boxes(fp.CROP_WINDOW / fp.CROP_SCALE, fp.COPY_GRID))])
    return {fp.FINGERPRINT: base64.b64encode(np.packbits(bits, axis=1).tobytes()).decode(),
            fp.PIXEL_HASH: old_pixel_hash(image)}


def old_dominant_colors(im: Image.Image, k: int = 5, iterations: int = 12) -> list[dict]:
    thumb = im.convert("RGB").resize((48, 48), Image.Resampling.BILINEAR)
    rgb = np.asarray(thumb, dtype=np.float64).reshape(-1, 3)
    lab = srgb_to_lab(rgb)
    centers = _old_seed(lab, k)
    for _ in range(iterations):
        new = _old_means(lab, _old_assign(lab, centers), centers)
        if np.allclose(new, centers):
            break
        centers = new
    assign = _old_assign(lab, centers)
    counts = np.bincount(assign, minlength=len(centers))
    out = []
    for j in np.flatnonzero(counts):
        r, g, b = np.clip(np.round(rgb[assign == j].mean(0)), 0, 255).astype(int)
        out.append({"color": f"#{r:02x}{g:02x}{b:02x}", "weight": round(float(counts[j] / len(lab)), 4)})
    return sorted(out, key=lambda c: -c["weight"])


def _old_seed(lab: np.ndarray, k: int) -> np.ndarray:
    centers = [lab[np.argmax(((lab - lab.mean(0)) ** 2).sum(1))]]
    nearest = ((lab - centers[0]) ** 2).sum(1)
    for _ in range(1, k):
        if nearest.max() < 1e-6:
            break
        centers.append(lab[np.argmax(nearest)])
        np.minimum(nearest, ((lab - centers[-1]) ** 2).sum(1), out=nearest)
    return np.array(centers)


def _old_assign(lab: np.ndarray, centers: np.ndarray) -> np.ndarray:
    return np.argmin((centers * centers).sum(1) - 2 * lab @ centers.T, axis=1)


def _old_means(lab: np.ndarray, assign: np.ndarray, centers: np.ndarray) -> np.ndarray:
    counts = np.bincount(assign, minlength=len(centers))[:, None]
    sums = np.stack([np.bincount(assign, weights=lab[:, c], minlength=len(centers)) for c in range(3)], axis=1)
    return np.where(counts > 0, sums / np.maximum(counts, 1), centers)


def old_make_thumbnail(image: Image.Image, size: int = 160, quality: int = 70) -> bytes:
    thumb = image.copy()
    thumb.thumbnail((size, size), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def old_fit_square(im: Image.Image, size: int, *, mode: str = "crop") -> np.ndarray:
    from lookalike.models.images import REDUCING_GAP, target_size

    new = target_size(*im.size, size, mode)
    im = im.resize(new, Image.Resampling.BICUBIC, reducing_gap=REDUCING_GAP)
    if mode == "pad":
        canvas = Image.new("RGB", (size, size), (255, 255, 255))
        canvas.paste(im, ((size - new[0]) // 2, (size - new[1]) // 2))
        return np.asarray(canvas)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)))


# -- timing -----------------------------------------------------------------------------------
STEPS: list[tuple[str, Callable, Callable]] = [
    ("dominant_colors", old_dominant_colors, dominant_colors),
    ("fingerprint", old_fingerprint, fingerprint),
    ("make_thumbnail", old_make_thumbnail, make_thumbnail),
    ("fit_square 224 pad", lambda im: old_fit_square(im, 224, mode="pad"), lambda im: fit_square(im, 224, mode="pad")),
]


def decoded_images(n: int, size: int) -> list[Image.Image]:
    """Photo-like JPEGs (q90) decoded as ingest does (draft to the model's 224 px)."""
    out = []
    for i in range(n):
        buf = io.BytesIO()
        photo_like(i, size).save(buf, "JPEG", quality=90)
        out.append(open_image(buf.getvalue(), max_pixels=10**8, draft_size=224))
    return out


def ms_per_image(fn: Callable, images: list[Image.Image]) -> float:
    start = time.perf_counter()
    for im in images:
        fn(im)
    return (time.perf_counter() - start) * 1000 / len(images)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=512, help="side of the generated JPEGs")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    images = decoded_images(args.images, args.size)
    best = {(name, which): float("inf") for name, _, _ in STEPS for which in ("old", "new")}
    for fns in STEPS:  # warm-up: operator caches, first-call imports
        fns[1](images[0]), fns[2](images[0])
    for _ in range(args.rounds):
        for name, old, new in STEPS:
            best[name, "old"] = min(best[name, "old"], ms_per_image(old, images))
            best[name, "new"] = min(best[name, "new"], ms_per_image(new, images))
    print(f"{args.images} photo-like JPEGs of {args.size} px, draft-decoded to {images[0].size[0]} px; "
          f"one thread; ms per image, best of {args.rounds} interleaved rounds\n")
    print("| step | old ms/img | new ms/img | old / new |")
    print("|---|---|---|---|")
    total_old = total_new = 0.0
    for name, _, _ in STEPS:
        old, new = best[name, "old"], best[name, "new"]
        total_old, total_new = total_old + old, total_new + new
        print(f"| {name} | {old:.2f} | {new:.2f} | {old / new:.2f}x |")
    print(f"| **sum** | {total_old:.2f} | {total_new:.2f} | {total_old / total_new:.2f}x |")


if __name__ == "__main__":
    main()
