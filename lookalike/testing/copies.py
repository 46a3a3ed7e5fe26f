"""Copy transforms: the edits a re-posted or re-uploaded image typically went through.

Used by the near-duplicate tests and `bench/duplicates.py` to build query sets whose right
answer is known (the original). Each transform takes a PIL RGB image and a seed and returns
the edited image; `encode` turns an image into file bytes (JPEG unless told otherwise).
"""
from __future__ import annotations

import io
import random
from typing import Callable

from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

Transform = Callable[[Image.Image, int], Image.Image]


def crop60(im: Image.Image, seed: int) -> Image.Image:
    """Keep 60 % of the width and of the height, at a random position."""
    rng = random.Random(seed)
    w, h = im.size
    cw, ch = round(w * 0.6), round(h * 0.6)
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return im.crop((left, top, left + cw, top + ch))


def rotate10(im: Image.Image, seed: int) -> Image.Image:
    """Rotate by +10 or -10 degrees, same canvas, corners filled with white."""
    angle = random.Random(seed).choice((-10, 10))
    return im.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def mirror(im: Image.Image, seed: int) -> Image.Image:
    return ImageOps.mirror(im)


def grey(im: Image.Image, seed: int) -> Image.Image:
    return ImageOps.grayscale(im).convert("RGB")


def blur(im: Image.Image, seed: int) -> Image.Image:
    """Gaussian blur of radius 1 % of the image side (about 3 px on a 300 px image)."""
    return im.filter(ImageFilter.GaussianBlur(max(1.0, min(im.size) / 100)))


def jpeg10(im: Image.Image, seed: int) -> Image.Image:
    """Recompress at JPEG quality 10 (blocky, colour-bled)."""
    return Image.open(io.BytesIO(encode(im, quality=10))).convert("RGB")


def down5(im: Image.Image, seed: int) -> Image.Image:
    """Downscale 5x on each side."""
    w, h = im.size
    return im.resize((max(1, w // 5), max(1, h // 5)), Image.Resampling.LANCZOS)


def border(im: Image.Image, seed: int) -> Image.Image:
    """A frame of 10 % of the side in a random solid colour."""
    rng = random.Random(seed)
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    return ImageOps.expand(im, border=max(2, min(im.size) // 10), fill=colour)


def text(im: Image.Image, seed: int) -> Image.Image:
    """A caption in large letters (an eighth of the height) across the image."""
    rng = random.Random(seed)
    out = im.copy()
    w, h = out.size
    font = ImageFont.load_default(size=max(10, h // 8))
    words = rng.choice(("SALE -50%", "© stock photo", "NEW ARRIVAL", "hello world"))
    colour = rng.choice(((255, 255, 255), (0, 0, 0), (255, 220, 0)))
    y = rng.randint(h // 10, h * 7 // 10)
    ImageDraw.Draw(out).text((w // 12, y), words, fill=colour, font=font, stroke_width=max(1, h // 160),
                             stroke_fill=(0, 0, 0) if colour != (0, 0, 0) else (255, 255, 255))
    return out


TRANSFORMS: dict[str, Transform] = {
    "crop60": crop60, "rotate10": rotate10, "mirror": mirror, "grey": grey, "blur": blur,
    "jpeg10": jpeg10, "down5": down5, "border": border, "text": text,
}


def encode(im: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    """The bytes of an image file."""
    buf = io.BytesIO()
    im.save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()
