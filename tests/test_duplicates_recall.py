"""`duplicates` recall on real pictures (issue 16): pairs of stored records compared through
their colour grids (query/match.py `look_of`)."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from lookalike.models.keypoints import features, reduced
from lookalike.query.clusters import pair_score
from lookalike.testing.copies import blur_strong, encode, jpeg_low, mirror

WALLPAPERS = Path("/usr/share/wallpapers")
FLOW_DARK = WALLPAPERS / "Flow/contents/images_dark/5120x2880.jpg"
KOKKINI = WALLPAPERS / "Kokkini/contents/images/3840x2160.png"
GREY = WALLPAPERS / "Grey/contents/images/1920x1080.jpg"


def wallpaper(path: Path) -> Image.Image:
    if not path.exists():
        pytest.skip("plasma-workspace-wallpapers not installed")
    im = Image.open(path).convert("RGB")
    im.thumbnail((640, 640))
    return im


@pytest.mark.parametrize("path, edit, fingerprint", [
    (FLOW_DARK, jpeg_low, 0.98),     # keypoints fit (99 inliers): the aligned grids decide
    (KOKKINI, mirror, 1.0),          # no keypoint fit: the mirrored unmoved grids decide
    (GREY, blur_strong, 0.98),       # blur leaves 9 inliers: the unmoved grids decide
])
def test_a_wide_wallpaper_and_its_copy_verify_as_stored_records(path, edit, fingerprint):
    # bench/copybench.py --duplicates-scale: a stored record compared as the query had its 12 x
    # 12 grid stretched as if its picture were square, so a 16:9 wallpaper's aligned cells
    # (and unmoved ones) fell a row apart and its lightness correlated at 0.4-0.7 with its copy
    im = wallpaper(path)
    own, copy = features(reduced(im)), features(reduced(edit(im, 3)))
    assert pair_score(own, copy, fingerprint) >= 0.5
    assert pair_score(copy, own, fingerprint) >= 0.5


def test_match_by_id_finds_the_jpeg_copy_of_a_wide_wallpaper(tmp_path):
    im = wallpaper(FLOW_DARK)
    with lookalike.connect(tmp_path) as db:
        c = db.collection("c", create=True)
        c.upsert([{"_id": "flow", "_base64": b64(im)}, {"_id": "flow-jpeg", "_base64": b64(jpeg_low(im, 3))}])
        assert [h["_id"] for h in c.match({"id": "flow"})["hits"]] == ["flow-jpeg"]


def b64(im: Image.Image) -> str:
    return base64.b64encode(encode(im, quality=92)).decode()
