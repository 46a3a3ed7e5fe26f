"""The copy transforms of issue 16 (lookalike/testing/copies.py) do what they say, on a real photo."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.testing.copies import COPY_TRANSFORMS, compose, tint

skimage_data = pytest.importorskip("skimage.data")
PHOTO = Image.fromarray(skimage_data.astronaut()).resize((256, 256))


def _hue(im: Image.Image) -> float:
    """Mean hue angle (degrees) of the saturated pixels, as a circular mean."""
    hsv = np.asarray(im.convert("HSV")).reshape(-1, 3).astype(float)
    keep = hsv[:, 1] > 80
    angles = hsv[keep, 0] / 256 * 2 * np.pi
    return float(np.degrees(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())) % 360)


@pytest.mark.parametrize("seed", range(6))
def test_expanded_rotation_grows_the_canvas_with_plain_corners(seed):
    out = COPY_TRANSFORMS["rotate_expand"](PHOTO, seed)
    assert out.size[0] > PHOTO.size[0] and out.size[1] > PHOTO.size[1]
    corner = np.asarray(out)[0, 0]
    assert tuple(corner) in ((0, 0, 0), (255, 255, 255))
    same = COPY_TRANSFORMS["rotate_same"](PHOTO, seed)
    assert same.size == PHOTO.size and tuple(np.asarray(same)[0, 0]) in ((0, 0, 0), (255, 255, 255))


@pytest.mark.parametrize("seed", range(20))
def test_crops_keep_half_to_most_of_each_side(seed):
    w, h = COPY_TRANSFORMS["crop"](PHOTO, seed).size
    assert 0.49 * 256 <= w <= 0.96 * 256 and 0.49 * 256 <= h <= 0.96 * 256


def test_overlays_cover_at_most_a_fifth_and_change_pixels():
    base = np.asarray(PHOTO).astype(int)
    for name in ("caption", "logo", "watermark"):
        for seed in range(5):
            changed = (np.abs(np.asarray(COPY_TRANSFORMS[name](PHOTO, seed)).astype(int) - base).sum(axis=2) > 0)
            assert 0.005 < changed.mean() <= 0.21, (name, seed, changed.mean())


def test_tint_turns_hues_and_grey_removes_them():
    turned = (_hue(tint(PHOTO, 120)) - _hue(PHOTO)) % 360
    assert 90 < turned < 150, turned
    grey = np.asarray(COPY_TRANSFORMS["grey"](PHOTO, 0))
    assert np.array_equal(grey[..., 0], grey[..., 2])


def test_small_jpeg_and_pairs():
    assert COPY_TRANSFORMS["down5"](PHOTO, 0).size == (51, 51)
    pair = compose(COPY_TRANSFORMS["mirror"], COPY_TRANSFORMS["letterbox"])(PHOTO, 3)
    assert pair.size != PHOTO.size and max(pair.size) >= 256
    jpeg = np.asarray(COPY_TRANSFORMS["jpeg"](PHOTO, 0)).astype(int)
    assert 0 < np.abs(jpeg - np.asarray(PHOTO)).mean() < 20
