"""Test images: photo-like ones drawn from a seed, scikit-image's bundled photos, and the
base64 JPEG text a `_base64` record or query carries."""
from __future__ import annotations

import base64
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image


def photo_like(seed: int, size: int = 512) -> Image.Image:
    """A smooth, photo-like RGB image (random gradients, blobs and noise) for benchmarks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3))
    for c in range(3):
        a, b, ph = rng.uniform(0.5, 4, 3)
        img[..., c] = 128 + 90 * np.sin(2 * math.pi * (a * xx + b * yy) + ph)
    for _ in range(6):
        cx, cy, r = rng.uniform(0, 1, 2).tolist() + [rng.uniform(0.05, 0.25)]
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-120, 120, 3)
    img += rng.normal(0, 6, img.shape)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def skimage_photo(name: str, side: int | None = None) -> Image.Image:
    """scikit-image's bundled photo `name` (`skimage.data.<name>()`) as RGB, thumbnailed to fit
    `side` x `side` when given (real pictures no one here drew; skimage is a test dependency)."""
    from skimage import data
    im = Image.fromarray(getattr(data, name)()).convert("RGB")
    if side is not None:
        im.thumbnail((side, side))
    return im


#: Oxygen's 256 px icons (Debian oxygen-icon-theme): real drawings, many sharing artwork.
OXYGEN_ICONS = "/usr/share/icons/oxygen/base/256x256"


def require_pictures(*paths: Path | str, package: str) -> None:
    """Skip the calling test (or module) when one of the installed pictures `paths` is missing
    (Debian `package`), or fail it where LOOKALIKE_REQUIRE_PICTURES is set: .ci/run installs
    the packages, so there a missing picture is a broken install, not a test to leave out."""
    missing = next((str(p) for p in paths if not Path(p).exists()), None)
    if missing is None:
        return
    import pytest

    reason = f"{package} not installed ({missing} missing)"
    if os.environ.get("LOOKALIKE_REQUIRE_PICTURES"):
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def oxygen_icon(name: str) -> Image.Image:
    """Oxygen icon `name` ("folder/stem") as RGB, its transparency over white."""
    im = Image.open(f"{OXYGEN_ICONS}/{name}.png").convert("RGBA")
    back = Image.new("RGBA", im.size, (255, 255, 255, 255))
    return Image.alpha_composite(back, im).convert("RGB")


def jpeg_base64(im: Image.Image, quality: int = 90) -> str:
    """An image as base64 JPEG text (a `_base64` record's or query's value)."""
    from .copies import encode
    return base64.b64encode(encode(im, quality=quality)).decode()
