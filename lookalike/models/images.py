"""Turn image bytes into the exact pixels an encoder needs.

Everything a real catalogue throws at us is normalised here once: EXIF orientation,
transparency (flattened on white, as product photos are shown), CMYK, greyscale,
palette and 16-bit images, animated files (first frame). JPEGs are decoded at a reduced
size when the model needs fewer pixels (libjpeg's DCT scaling via `Image.draft`), which is
the cheapest correct way to get them.

Decoding is bounded twice: one image past `max_pixels` is refused from its header (TooLarge),
and the pixels being decoded at once in this process share one `PixelBudget` (`PIXELS`,
`$LOOKALIKE_DECODE_PIXELS`, default 128 million; unbounded, eight concurrent 64-megapixel decodes
took a server from 0.8 to 3.8 GB): a decode that would pass the budget waits until earlier ones finish.
"""
from __future__ import annotations

import io
import os
import threading
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import NotAnImage, TooLarge

#: Default pixel limit per image (width x height); larger images are refused as likely bombs.
DEFAULT_MAX_PIXELS = 64_000_000
#: Default pixels decoded at once in one process (two images at the largest default size).
DEFAULT_DECODE_PIXELS = 128_000_000


class PixelBudget:
    """A semaphore counted in pixels: decodes take their image's pixel count, read from its header.

    An image larger than the whole budget waits until nothing else is being decoded, then runs
    alone (it has already passed the per-image `max_pixels` check).
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError(f"a pixel budget must be at least 1 pixel, got {total}")
        self.total = total
        self.in_use = 0
        self._cond = threading.Condition()

    def _cost(self, pixels: int) -> int:
        return max(1, min(int(pixels), self.total))

    def acquire(self, pixels: int, timeout: float | None = None) -> bool:
        """Take `pixels` of the budget, waiting up to `timeout` seconds (None: as long as needed)."""
        cost = self._cost(pixels)
        with self._cond:
            if not self._cond.wait_for(lambda: self.in_use + cost <= self.total, timeout):
                return False
            self.in_use += cost
            return True

    def release(self, pixels: int) -> None:
        with self._cond:
            self.in_use -= self._cost(pixels)
            self._cond.notify_all()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        self.acquire(pixels)
        try:
            yield
        finally:
            self.release(pixels)


def _budget_from_env() -> PixelBudget:
    raw = os.environ.get("LOOKALIKE_DECODE_PIXELS") or DEFAULT_DECODE_PIXELS
    try:
        return PixelBudget(int(raw))
    except ValueError:
        raise ValueError(f"LOOKALIKE_DECODE_PIXELS must be a positive integer, got {raw!r}") from None


#: The process's decode budget.
PIXELS = _budget_from_env()

_WHITE = (255, 255, 255)
#: Pillow's `reducing_gap` for our resizes: shrink by whole factors (cheap box filter) while the
#: remaining bicubic step is still at least this many times down (same result, much faster).
REDUCING_GAP = 3.0


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Decode `data` into an RGB image; raise NotAnImage/TooLarge with the reason.

    `draft_size` lets JPEG decoding skip detail finer than the smallest side needs. The decode
    holds its pixels of `PIXELS`; use `decoded` to hold them until the caller is done too.
    """
    with decoded(data, max_pixels=max_pixels, draft_size=draft_size) as im:
        return im


@contextmanager
def decoded(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None,
            budget: PixelBudget | None = None) -> Iterator[Image.Image]:
    """`open_image` holding the image's pixels of the decode budget for the whole block."""
    if not data:
        raise NotAnImage("empty image data")
    budget = budget or PIXELS
    with _image_errors():
        im = Image.open(io.BytesIO(data))
        width, height = im.size
        if width * height > max_pixels:
            raise TooLarge(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
        if getattr(im, "is_animated", False):
            im.seek(0)
        if draft_size and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))  # the size to decode shrinks to the draft's
    pixels = im.size[0] * im.size[1]
    with budget.hold(pixels):
        with _image_errors():
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                im.load()
            im = to_rgb(ImageOps.exif_transpose(im))
        yield im


@contextmanager
def _image_errors() -> Iterator[None]:
    """Pillow's errors as NotAnImage / TooLarge with the reason."""
    try:
        yield
    except (TooLarge, NotAnImage):
        raise
    except UnidentifiedImageError:
        raise NotAnImage("not an image: the data is not in any image format Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(f"image refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise NotAnImage(f"corrupt or truncated image: {exc}") from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, flattening transparency onto white."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        im = Image.fromarray(np.round((arr - lo) * scale).astype(np.uint8), "L")
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode != "RGB":
        im = im.convert("RGB")  # CMYK, YCbCr, L, 1, P, LAB, HSV
    return im


def fit_square(im: Image.Image, size: int, *, mode: str = "crop") -> np.ndarray:
    """Resize keeping the aspect ratio, then centre-crop (or pad with white) to size x size.

    Returns uint8 HxWx3. `crop` matches how ImageNet models were evaluated; `pad` keeps
    the whole object, better for long products (dresses, skis).
    """
    new = target_size(*im.size, size, mode)
    im = im.resize(new, Image.Resampling.BICUBIC, reducing_gap=REDUCING_GAP)
    if new == (size, size):  # nothing to pad or crop (and no canvas or crop to copy through)
        return np.asarray(im)
    if mode == "pad":
        canvas = np.full((size, size, 3), 255, dtype=np.uint8)  # white, as _WHITE
        left, top = (size - new[0]) // 2, (size - new[1]) // 2
        canvas[top:top + new[1], left:left + new[0]] = np.asarray(im)
        return canvas
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)))


def load_pixels(data: bytes, size: int, *, fit: str = "crop", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Bytes of an image file -> uint8 size x size x 3, ready for an encoder."""
    with decoded(data, max_pixels=max_pixels, draft_size=size) as image:
        return fit_square(image, size, mode=fit)


def target_size(width: int, height: int, size: int, mode: str = "crop") -> tuple[int, int]:
    """(width, height) that `fit_square` resizes to before cropping or padding to size x size."""
    if mode == "pad":
        scale = size / max(width, height)
        return max(1, round(width * scale)), max(1, round(height * scale))
    if mode != "crop":
        raise ValueError(f"unknown fit mode {mode!r}: use 'crop' or 'pad'")
    scale = size / min(width, height)
    return max(size, round(width * scale)), max(size, round(height * scale))


def device_pixels(im: Image.Image, size: int, *, mode: str = "crop") -> np.ndarray:
    """uint8 HxWx3 for an encoder that resizes on its own device (models/gpu_preprocess.py).

    Keeps the decoded (JPEG: draft) size, except that images far larger than the model needs are
    first reduced by a whole factor, as Pillow's resize with `reducing_gap` does: fewer bytes to
    ship to the device, and the same pixels `fit_square` starts its bicubic step from.
    """
    width, height = im.size
    new_w, new_h = target_size(width, height, size, mode)
    factor = (int(width / new_w / REDUCING_GAP) or 1, int(height / new_h / REDUCING_GAP) or 1)
    if factor != (1, 1):
        im = im.reduce(factor)
    return np.asarray(im)
