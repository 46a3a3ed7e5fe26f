"""`match` of crops of a smooth picture whose colours change fast (scikit-image's colour wheel,
a real photo): a crop whose edges fall between the stored colour grid's cell lines misses every
whole-cell window, and is found once the best window is refined by fractions of a cell
(query/smooth.py `_refined`); another tint of the crop stays unmatched."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.models.keypoints import features
from lookalike.query import match as match_mod
from lookalike.query.smooth import MIN_WINDOW, SMOOTH_DISTANCE, SMOOTH_STORED, _best_window, _refined
from lookalike.testing.copies import tint
from lookalike.testing.photos import jpeg_base64, skimage_photo

pytest.importorskip("skimage.data")

b64 = partial(jpeg_base64, quality=92)
#: Crops (left, top, width, height in fractions) whose edges fall inside grid cells.
CROPS = [(0.17, 0.05, 0.61, 0.80), (0.31, 0.22, 0.57, 0.66), (0.04, 0.38, 0.72, 0.55)]


def wheel() -> Image.Image:
    return skimage_photo("colorwheel").convert("RGB")


def cropped(im: Image.Image, box: tuple[float, float, float, float]) -> Image.Image:
    w, h = im.size
    left, top = round(box[0] * w), round(box[1] * h)
    return im.crop((left, top, left + round(box[2] * w), top + round(box[3] * h)))


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("refined"))
    c = db.collection("smooth", create=True)
    c.upsert([{"_id": "wheel", "_base64": b64(wheel())}, {"_id": "wheel-tint", "_base64": b64(tint(wheel(), 100))}]
             + [{"_id": n, "_base64": b64(skimage_photo(n, 400))} for n in ("coffee", "rocket")])
    yield c
    db.close()


def test_the_wheel_is_smooth_and_its_crops_miss_every_whole_cell_window():
    stored = features(wheel())
    assert len(stored.points) < SMOOTH_STORED
    grid = stored.colours.astype(np.float32)
    aspect = stored.size[0] / stored.size[1]
    misses = 0
    for box in CROPS:
        crop = cropped(wheel(), box)
        look = match_mod.image_query(crop, b64(crop).encode(), keep_image=True).look
        misses += _best_window(look.lab, grid, look.grey, aspect)[0] > SMOOTH_DISTANCE
    assert misses >= 2


@pytest.mark.parametrize("box", CROPS)
def test_a_crop_between_the_cell_lines_finds_its_wheel(col, box):
    hits = col.match({"base64": b64(cropped(wheel(), box))})["hits"]
    assert [h["_id"] for h in hits][:1] == ["wheel"], hits[:2]
    x0, y0, x1, y1 = hits[0]["_match"]["box"]
    # the region found is the crop's, to within half a grid cell (1/24 of a side)
    assert abs(x0 - box[0]) < 0.05 and abs(y0 - box[1]) < 0.05
    assert abs(x1 - box[0] - box[2]) < 0.05 and abs(y1 - box[1] - box[3]) < 0.05


@pytest.mark.parametrize("box", CROPS)
def test_another_tint_of_the_crop_matches_its_own_tint_or_nothing(col, box):
    hits = col.match({"base64": b64(tint(cropped(wheel(), box), 220))})["hits"]
    assert "wheel" not in [h["_id"] for h in hits] and "wheel-tint" not in [h["_id"] for h in hits]


def test_a_refined_window_keeps_half_of_each_side():
    # refining the smallest whole-cell window (6 x 6 of 12) may move it and grow it, never
    # shrink it below the crops the issue names (50 % of each side): a held-out gradient
    # otherwise passed for a 46 % crop of another stored one (bench/copyset.py, seed 1)
    stored = features(wheel())
    crop = cropped(wheel(), (0.3, 0.3, 0.45, 0.45))
    look = match_mod.image_query(crop, b64(crop).encode(), keep_image=True).look
    _, (x0, y0, w, h) = _refined(look, stored, (3, 3, 6, 6), relit=False)
    g = stored.colours.shape[0]
    assert min(w, h) >= MIN_WINDOW * g - 1e-6 and x0 >= 0 and y0 >= 0 and x0 + w <= g + 1e-6


def test_the_batched_window_cells_are_aligned_cells_window_by_window():
    # `_window_cells` (one remap for every refined window) must equal `aligned_cells` of each
    from lookalike.query.smooth import _window_cells
    from lookalike.query.verify import Estimate, aligned_cells

    stored = features(wheel())
    crop = cropped(wheel(), CROPS[0])
    look = match_mod.image_query(crop, b64(crop).encode(), keep_image=True).look
    g = stored.colours.shape[0]
    qw, qh = look.lab.shape[1] / look.factor, look.lab.shape[0] / look.factor
    sw, sh = stored.size
    windows = np.array([[x, y, w, w * qh * sw / (qw * sh)] for x, y, w in [(3.25, 2.0, 7.5), (2.5, 1.5, 8.0), (0, 0, 6.0)]])
    cells, covered = _window_cells(look, stored, windows)
    for k, (left, top, w, h) in enumerate(windows):
        e = Estimate(0, 0, np.array([[w / g * sw / qw, 0, left / g * sw], [0, h / g * sh / qh, top / g * sh]]),
                     False, 0.0, 1.0, [0.0, 0.0, 1.0, 1.0], 1.0, 1.0)
        one, whole = aligned_cells(e, look, stored)
        assert (whole == covered[k]).all() and whole.sum() > 20
        assert np.abs(one[whole] - cells[k][whole]).max() < 0.01
