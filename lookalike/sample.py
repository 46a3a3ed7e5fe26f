"""A built-in sample catalogue, drawn with Pillow: no downloads, the same on every machine.

Products are patterned objects (striped, dotted, checked, ringed, zig-zag) in several
colours, shapes and sizes on light backgrounds with a photo-like gradient and noise, so
that "looks like this" has a visible right answer: same pattern first. Each product comes
in colour variants that share a `product_id`, for grouping demos.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

PATTERNS = ("stripes", "dots", "checks", "rings", "zigzag")
COLORS = {"red": (200, 40, 40), "blue": (40, 70, 200), "green": (30, 150, 60), "orange": (235, 130, 20),
          "purple": (130, 50, 160), "black": (30, 30, 30)}
SHAPES = ("square", "circle", "shirt")


def draw_item(pattern: str, color: tuple[int, int, int], *, seed: int = 0, size: int = 256,
              shape: str = "square") -> Image.Image:
    """A patterned object on a soft photo-like background."""
    rng = random.Random(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    base = np.array([rng.randint(215, 250) for _ in range(3)], dtype=np.float64)
    grad = base[None, None, :] - 35 * (0.6 * yy + 0.4 * xx)[..., None]
    noise = np.random.default_rng(seed).normal(0, 4, (size, size, 3))
    bg = Image.fromarray(np.clip(grad + noise, 0, 255).astype(np.uint8), "RGB")

    tile = Image.new("RGB", (size, size), (250, 250, 250))
    d = ImageDraw.Draw(tile)
    step = rng.randint(size // 12, size // 7)
    width = max(2, step // 2)
    if pattern == "stripes":
        for x in range(-size, 2 * size, step):
            d.line([(x, 0), (x + size // 3, size)], fill=color, width=width)
    elif pattern == "dots":
        r = max(2, step // 3)
        for y in range(step // 2, size, step):
            for x in range(step // 2 + (y // step % 2) * step // 2, size, step):
                d.ellipse([x - r, y - r, x + r, y + r], fill=color)
    elif pattern == "checks":
        for y in range(0, size, step):
            for x in range(0, size, step):
                if (x // step + y // step) % 2 == 0:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=color)
    elif pattern == "rings":
        c = size // 2
        for r in range(step, size, step):
            d.ellipse([c - r, c - r, c + r, c + r], outline=color, width=max(2, width // 2))
    elif pattern == "zigzag":
        for y in range(0, size + step, step):
            pts = [(x, y + (step // 2 if (x // step) % 2 else 0)) for x in range(0, size + step, step)]
            d.line(pts, fill=color, width=max(2, width // 2))
    else:
        raise ValueError(f"unknown pattern {pattern!r}")

    mask = Image.new("L", (size, size), 0)
    m = ImageDraw.Draw(mask)
    scale = rng.uniform(0.55, 0.85)
    half = int(size * scale / 2)
    cx, cy = size // 2 + rng.randint(-size // 10, size // 10), size // 2 + rng.randint(-size // 10, size // 10)
    if shape == "circle":
        m.ellipse([cx - half, cy - half, cx + half, cy + half], fill=255)
    elif shape == "shirt":
        m.polygon([(cx - half, cy - half // 2), (cx - half // 2, cy - half), (cx + half // 2, cy - half),
                   (cx + half, cy - half // 2), (cx + half * 2 // 3, cy - half // 4), (cx + half // 2, cy - half // 3),
                   (cx + half // 2, cy + half), (cx - half // 2, cy + half), (cx - half // 2, cy - half // 3),
                   (cx - half * 2 // 3, cy - half // 4)], fill=255)
    else:
        m.rectangle([cx - half, cy - half, cx + half, cy + half], fill=255)
    angle = rng.uniform(-12, 12)
    tile = tile.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=(250, 250, 250))
    bg.paste(tile, (0, 0), mask.filter(ImageFilter.GaussianBlur(1)))
    return bg


def make_catalog(folder: str | Path, *, per_pattern: int = 4, size: int = 256, fmt: str = "JPEG") -> Path:
    """Write the sample images and a `catalog.jsonl` describing them; returns the catalog path."""
    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    color_names = list(COLORS)
    lines = []
    seed = 0
    for pattern in PATTERNS:
        for p in range(per_pattern):
            shape = SHAPES[p % len(SHAPES)]
            product = f"{pattern}-{shape}-{p}"
            price = round(rng.uniform(9, 99), 2)
            for color in rng.sample(color_names, 2 if p % 2 else 3):
                seed += 1
                rid = f"{product}-{color}"
                name = f"images/{rid}.{'jpg' if fmt == 'JPEG' else fmt.lower()}"
                draw_item(pattern, COLORS[color], seed=seed, size=size, shape=shape).save(folder / name, fmt, quality=90)
                lines.append({"_id": rid, "_file": name, "title": f"{color.title()} {pattern} {shape}",
                              "pattern": pattern, "shape": shape, "color": color, "product_id": product,
                              "price": price, "on_sale": rng.random() < 0.3, "in_stock": rng.random() > 0.2,
                              "tags": [pattern, color, shape]})
    catalog = folder / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return catalog
