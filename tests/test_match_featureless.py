"""`match` of a featureless query (query/smooth.py `featureless`): a crop of the empty sky of
a real wallpaper, with no keypoint to fit, is found by the colour grid of the detailed
wallpaper it was cut from; another tint of it is not taken for a copy."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from lookalike.models.keypoints import features, reduced
from lookalike.query.smooth import SMOOTH_KEYPOINTS
from lookalike.testing.copies import tint
from lookalike.testing.photos import jpeg_base64, skimage_photo, require_pictures

WALLPAPER = Path("/usr/share/wallpapers/DarkestHour/contents/images/1920x1080.jpg")
require_pictures(WALLPAPER, package="plasma-workspace-wallpapers")
pytest.importorskip("skimage.data")

b64 = partial(jpeg_base64, quality=92)


def picture() -> Image.Image:
    im = Image.open(WALLPAPER).convert("RGB")
    im.thumbnail((640, 640))
    return im


def sky(im: Image.Image) -> Image.Image:
    """60 % of the width, 55 % of the height, from the top: fog and sky, nothing else."""
    w, h = im.size
    return im.crop((round(0.1 * w), 0, round(0.7 * w), round(0.55 * h)))


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("featureless"))
    c = db.collection("walls", create=True)
    c.upsert([{"_id": "darkest-hour", "_base64": b64(picture())}] +
             [{"_id": n, "_base64": b64(skimage_photo(n, 400))} for n in ("coffee", "rocket", "astronaut")])
    yield c
    db.close()


def test_the_sky_crop_has_no_keypoints_to_fit():
    assert len(features(reduced(sky(picture()))).points) < SMOOTH_KEYPOINTS


def test_a_featureless_crop_finds_its_detailed_wallpaper(col):
    hits = col.match({"base64": b64(sky(picture()))})["hits"]
    assert [h["_id"] for h in hits][:1] == ["darkest-hour"], hits[:2]


def test_another_tint_of_the_crop_is_not_matched_by_its_colours(col):
    assert col.match({"base64": b64(tint(sky(picture()), 150))})["hits"] == []


@pytest.mark.parametrize("edit", [0.6, 1.4])
def test_a_brightened_or_darkened_copy_of_a_stored_sky_is_found(tmp_path, edit):
    """The sky crop stored on its own (a smooth picture: its colour grid stands for it) is
    found from a copy with its brightness scaled (`smooth._relit`); another tint is not."""
    from PIL import ImageEnhance

    with lookalike.connect(tmp_path) as db:
        c = db.collection("skies", create=True)
        c.upsert([{"_id": "sky", "_base64": b64(sky(picture()))}] +
                 [{"_id": n, "_base64": b64(skimage_photo(n, 400))} for n in ("coffee", "rocket")])
        copy = ImageEnhance.Brightness(sky(picture())).enhance(edit)
        assert [h["_id"] for h in c.match({"base64": b64(copy)})["hits"]][:1] == ["sky"]
        other = ImageEnhance.Brightness(tint(sky(picture()), 150)).enhance(edit)
        assert c.match({"base64": b64(other)})["hits"] == []
