"""Turn image bytes into the exact pixels an encoder needs.

Everything a real catalogue throws at us is normalised here once: EXIF orientation,
transparency (flattened on white, as product photos are shown), CMYK, greyscale,
palette and 16-bit images, animated files (first frame). JPEGs are decoded at a reduced
size when the model needs fewer pixels (libjpeg's DCT scaling via `Image.draft`), which is
the cheapest correct way to get them.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import NotAnImage, TooLarge

#: Default pixel limit per image (width x height); larger images are refused as likely bombs.
DEFAULT_MAX_PIXELS = 64_000_000

_WHITE = (255, 255, 255)
#: Pillow's `reducing_gap` for our resizes: shrink by whole factors (cheap box filter) while the
#: remaining bicubic step is still at least this many times down (same result, much faster).
REDUCING_GAP = 3.0


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None) -> Image.Image:
    """Decode `data` into an RGB image; raise NotAnImage/TooLarge with the reason.

    `draft_size` lets JPEG decoding skip detail finer than the smallest side needs.
    """
    if not data:
        raise NotAnImage("empty image data")
    try:
        im = Image.open(io.BytesIO(data))
        width, height = im.size
        if width * height > max_pixels:
            raise TooLarge(f"image of {width}x{height} pixels exceeds the limit of {max_pixels} pixels")
        if getattr(im, "is_animated", False):
            im.seek(0)
        if draft_size and im.format == "JPEG":
            im.draft("RGB", (draft_size, draft_size))
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im.load()
        im = ImageOps.exif_transpose(im)
        return to_rgb(im)
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
    return fit_square(open_image(data, max_pixels=max_pixels, draft_size=size), size, mode=fit)


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
