"""Copy transforms: the edits a re-posted or re-uploaded image typically went through.

Used by the near-duplicate tests and `bench/duplicates.py` to build query sets whose right
answer is known (the original). Each transform takes a PIL RGB image and a seed and returns
the edited image; `encode` turns an image into file bytes (JPEG unless told otherwise).
"""
from __future__ import annotations

import io
import random
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

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


# -- the wider set of issue 16 (bench/copyset.py): each draws its strength from the seed ------------
def _rng(seed: int) -> random.Random:
    return random.Random(seed * 7919 + 17)


def rotate_expand(im: Image.Image, seed: int) -> Image.Image:
    """Rotate by 3-15 degrees either way with the canvas grown to hold it all, corners black or
    white (as a phone or scanner leaves them)."""
    rng = _rng(seed)
    angle = rng.uniform(3, 15) * rng.choice((-1, 1))
    fill = rng.choice(((0, 0, 0), (255, 255, 255)))
    return im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill)


def rotate_same(im: Image.Image, seed: int) -> Image.Image:
    """Rotate by 3-15 degrees either way inside the same canvas (corners cut, filled black or white)."""
    rng = _rng(seed)
    angle = rng.uniform(3, 15) * rng.choice((-1, 1))
    fill = rng.choice(((0, 0, 0), (255, 255, 255)))
    return im.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=fill)


def crop(im: Image.Image, seed: int) -> Image.Image:
    """Keep 50-95 % of the width and (independently) of the height, anywhere."""
    rng = _rng(seed)
    w, h = im.size
    cw, ch = round(w * rng.uniform(0.5, 0.95)), round(h * rng.uniform(0.5, 0.95))
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return im.crop((left, top, left + cw, top + ch))


def letterbox(im: Image.Image, seed: int) -> Image.Image:
    """Bars (black, white or a colour) making the image square or 16:9 the other way round."""
    rng = _rng(seed)
    w, h = im.size
    colour = rng.choice(((0, 0, 0), (255, 255, 255), tuple(rng.randint(0, 255) for _ in range(3))))
    if rng.random() < 0.5 or w == h:
        side = max(w, h)
        size = (side, side) if w != h else (round(w * 16 / 9), h)
    else:
        size = (w, round(w * 16 / 9)) if w > h else (round(h * 16 / 9), h)
    out = Image.new("RGB", size, colour)
    out.paste(im, ((size[0] - w) // 2, (size[1] - h) // 2))
    return out


def caption(im: Image.Image, seed: int) -> Image.Image:
    """A solid caption band (up to a fifth of the height) with text, at the top or bottom."""
    rng = _rng(seed)
    out = im.copy()
    w, h = out.size
    band = round(h * rng.uniform(0.1, 0.2))
    y = 0 if rng.random() < 0.5 else h - band
    back = rng.choice(((0, 0, 0), (255, 255, 255), (200, 30, 30)))
    draw = ImageDraw.Draw(out)
    draw.rectangle((0, y, w, y + band), fill=back)
    words = rng.choice(("SALE -50% this week only", "© stock photo agency", "NEW ARRIVAL", "when the weekend hits"))
    font = ImageFont.load_default(size=max(8, band * 2 // 3))
    draw.text((w // 20, y + band // 6), words, fill=(255 - back[0], 255 - back[1], 255 - back[2]), font=font)
    return out


def watermark(im: Image.Image, seed: int) -> Image.Image:
    """Half-transparent large text across the middle (a stock-photo watermark)."""
    rng = _rng(seed)
    base = im.convert("RGBA")
    layer = Image.new("RGBA", base.size, (0, 0, 0, 0))
    w, h = base.size
    font = ImageFont.load_default(size=max(10, h // 7))
    colour = rng.choice(((255, 255, 255), (0, 0, 0)))
    ImageDraw.Draw(layer).text((w // 10, h * 2 // 5), rng.choice(("PREVIEW", "© shutterpix", "SAMPLE")),
                               fill=colour + (110,), font=font)
    return Image.alpha_composite(base, layer).convert("RGB")


def logo(im: Image.Image, seed: int) -> Image.Image:
    """An opaque logo (coloured disc and square with a letter) over up to a fifth of the area, in a corner."""
    rng = _rng(seed)
    out = im.copy()
    w, h = out.size
    side = round(min(w, h) * rng.uniform(0.2, 0.4))
    side = min(side, round((w * h / 5) ** 0.5))
    x = rng.choice((w // 40, w - side - w // 40))
    y = rng.choice((h // 40, h - side - h // 40))
    draw = ImageDraw.Draw(out)
    colour = tuple(rng.randint(0, 255) for _ in range(3))
    draw.rectangle((x, y, x + side, y + side), fill=(255, 255, 255))
    draw.ellipse((x + side // 10, y + side // 10, x + side * 9 // 10, y + side * 9 // 10), fill=colour)
    draw.text((x + side // 3, y + side // 4), rng.choice("ABKQZ"), fill=(255, 255, 255),
              font=ImageFont.load_default(size=max(8, side // 2)))
    return out


def jpeg_low(im: Image.Image, seed: int) -> Image.Image:
    """Recompress at JPEG quality 10-15."""
    return Image.open(io.BytesIO(encode(im, quality=_rng(seed).randint(10, 15)))).convert("RGB")


def brightness(im: Image.Image, seed: int) -> Image.Image:
    """Brighter or darker by 25-45 %."""
    rng = _rng(seed)
    return ImageEnhance.Brightness(im).enhance(rng.choice((rng.uniform(0.55, 0.75), rng.uniform(1.25, 1.45))))


def contrast(im: Image.Image, seed: int) -> Image.Image:
    """Contrast down to 50-70 % or up to 140-170 %."""
    rng = _rng(seed)
    return ImageEnhance.Contrast(im).enhance(rng.choice((rng.uniform(0.5, 0.7), rng.uniform(1.4, 1.7))))


def saturation(im: Image.Image, seed: int) -> Image.Image:
    """Saturation down to 30-60 % or up to 150-200 %."""
    rng = _rng(seed)
    return ImageEnhance.Color(im).enhance(rng.choice((rng.uniform(0.3, 0.6), rng.uniform(1.5, 2.0))))


def blur_strong(im: Image.Image, seed: int) -> Image.Image:
    """Gaussian blur of radius 0.5-1.5 % of the shorter side."""
    return im.filter(ImageFilter.GaussianBlur(max(1.0, min(im.size) * _rng(seed).uniform(0.005, 0.015))))


def tint(im: Image.Image, degrees: float) -> Image.Image:
    """The same picture with its hues turned by `degrees` (a colour variant: another item)."""
    hsv = np.asarray(im.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + round(degrees / 360 * 256)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


#: Issue 16's transforms, one family each (bench/copyset.py applies them alone and two at a time).
COPY_TRANSFORMS: dict[str, Transform] = {
    "rotate_expand": rotate_expand, "rotate_same": rotate_same, "crop": crop, "border": border,
    "letterbox": letterbox, "caption": caption, "watermark": watermark, "logo": logo, "jpeg": jpeg_low,
    "grey": grey, "brightness": brightness, "contrast": contrast, "saturation": saturation,
    "mirror": mirror, "down5": down5, "blur": blur_strong,
}


def compose(first: Transform, second: Transform) -> Transform:
    """Two transforms one after the other (the second with another seed)."""
    return lambda im, seed: second(first(im, seed), seed + 1_000_003)
