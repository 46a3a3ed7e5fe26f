"""`match` of copies of smooth stored pictures (query/smooth.py): scikit-image's colour wheel
and the ubuntu desert and umang backgrounds have too few keypoints (`SMOOTH_STORED`) for a RANSAC fit,
so their colour grid verifies copies: with a logo over a corner, and rotated with the canvas
grown (black or white corners), turned back by the rotation search (`rotated_match`).
Another tint of the wheel, rotated the same way, is not taken for it."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from lookalike.models.keypoints import features, reduced
from lookalike.query.smooth import SMOOTH_STORED
from lookalike.testing.copies import caption, logo, rotate_expand, rotate_same, tint
from lookalike.testing.photos import jpeg_base64, skimage_photo, require_pictures

pytest.importorskip("skimage.data")
BACKGROUNDS = Path("/usr/share/backgrounds")
require_pictures(BACKGROUNDS / "desert.png", BACKGROUNDS / "umang_by_Abhishek_Mudgal.jpg", package="ukui-wallpapers")

b64 = partial(jpeg_base64, quality=92)


def wheel() -> Image.Image:
    return skimage_photo("colorwheel", 400)


def background(name: str) -> Image.Image:
    im = Image.open(BACKGROUNDS / name).convert("RGB")
    im.thumbnail((640, 640))
    return im


def picture(name: str) -> Image.Image:
    return wheel() if name == "wheel" else background({"desert": "desert.png",
                                                       "umang": "umang_by_Abhishek_Mudgal.jpg"}[name])


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("smooth-rotated"))
    c = db.collection("photos", create=True)
    c.upsert([{"_id": n, "_base64": b64(picture(n))} for n in ("wheel", "desert", "umang")] +
             [{"_id": n, "_base64": b64(skimage_photo(n, 400))} for n in ("coffee", "rocket", "astronaut", "chelsea")])
    yield c
    db.close()


@pytest.mark.parametrize("name", ["wheel", "umang"])
def test_the_picture_is_smooth_but_has_some_keypoints(name):
    """More keypoints than a featureless query (20), fewer than a RANSAC fit of a copy needs."""
    assert 20 <= len(features(reduced(picture(name))).points) < SMOOTH_STORED


# each missed before (the wheel's rotations and overlays, umang's rotations and a caption)
@pytest.mark.parametrize("name,edit,seed", [
    ("wheel", rotate_expand, 0), ("wheel", rotate_expand, 1), ("wheel", rotate_expand, 2),
    ("wheel", rotate_same, 0), ("wheel", rotate_same, 3), ("wheel", logo, 2), ("wheel", logo, 3),
    ("wheel", caption, 3), ("umang", rotate_expand, 0), ("umang", rotate_expand, 1), ("umang", rotate_same, 0),
    ("umang", rotate_same, 2), ("umang", caption, 0), ("desert", rotate_expand, 3), ("desert", rotate_same, 2)])
def test_an_edited_copy_of_a_smooth_picture_is_found(col, name, edit, seed):
    hits = col.match({"base64": b64(edit(picture(name), seed))})["hits"]
    assert [h["_id"] for h in hits][:1] == [name], hits[:2]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_rotation_found_is_the_copy_s(col, seed):
    """rotate_expand turns by 3-15 degrees either way; the search finds it to 0.75 degrees."""
    copy = rotate_expand(wheel(), seed)
    hit = col.match({"base64": b64(copy)})["hits"][0]
    angle = hit["_match"]["angle"]
    assert 2 <= abs(angle) <= 16 and hit["_match"]["box"] == [0.0, 0.0, 1.0, 1.0], hit["_match"]


@pytest.mark.parametrize("seed", [0, 1])
def test_another_tint_rotated_is_not_the_wheel(col, seed):
    hits = col.match({"base64": b64(rotate_expand(tint(wheel(), 120), seed))})["hits"]
    assert "wheel" not in [h["_id"] for h in hits], hits[:2]
