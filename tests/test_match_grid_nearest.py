"""`match` of copies whose keypoints do not fit, of real wallpapers (Plasma's Kay dark edition
and PastelHills): a crop of the dark, hazy wallpaper is checked by the colour grid of the
records nearest it by embedding (query/smooth.py NEAREST_DISTANCE), and a low-quality JPEG of
the soft one, whose fingerprints moved, by the close fingerprint fallback (query/match.py
CLOSE_SIMILARITY). The light edition of the wallpaper and another tint are no copies."""
from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from lookalike.testing.copies import blur_strong, caption, compose, crop, jpeg_low, saturation, tint
from lookalike.testing.photos import jpeg_base64, skimage_photo, require_pictures

WALLPAPERS = Path("/usr/share/wallpapers")
KAY_DARK = WALLPAPERS / "Kay/contents/images_dark/5120x2880.png"
KAY_LIGHT = WALLPAPERS / "Kay/contents/images/5120x2880.png"
PASTEL = WALLPAPERS / "PastelHills/contents/images/3200x2000.jpg"
require_pictures(KAY_DARK, KAY_LIGHT, PASTEL, package="plasma-workspace-wallpapers")
pytest.importorskip("skimage.data")

b64 = partial(jpeg_base64, quality=92)


def wallpaper(path: Path) -> Image.Image:
    im = Image.open(path).convert("RGB")
    im.thumbnail((640, 640))
    return im


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("grid-nearest"))
    c = db.collection("walls", create=True)
    c.upsert([{"_id": "kay-dark", "_base64": b64(wallpaper(KAY_DARK))},
              {"_id": "pastel", "_base64": b64(wallpaper(PASTEL))}] +
             [{"_id": n, "_base64": b64(skimage_photo(n, 400))}
              for n in ("coffee", "rocket", "astronaut", "chelsea", "hubble_deep_field", "moon")])
    yield c
    db.close()


EDITS = {"crop": crop, "jpeg": jpeg_low, "saturation+jpeg": compose(saturation, jpeg_low),
         "blur+caption": compose(blur_strong, caption)}


# each missed before
@pytest.mark.parametrize("name,edit,seed", [
    ("kay-dark", "crop", 0), ("kay-dark", "crop", 2), ("kay-dark", "crop", 4), ("kay-dark", "crop", 6),
    ("kay-dark", "jpeg", 3), ("kay-dark", "jpeg", 5), ("pastel", "jpeg", 3), ("pastel", "saturation+jpeg", 1),
    ("pastel", "saturation+jpeg", 2), ("pastel", "blur+caption", 1), ("pastel", "blur+caption", 4)])
def test_a_copy_without_a_keypoint_fit_is_found(col, name, edit, seed):
    path = KAY_DARK if name == "kay-dark" else PASTEL
    hits = col.match({"base64": b64(EDITS[edit](wallpaper(path), seed))})["hits"]
    assert [h["_id"] for h in hits][:1] == [name], hits[:2]


@pytest.mark.parametrize("seed", [0, 2, 4])
def test_a_crop_of_the_light_edition_is_not_the_dark_one(col, seed):
    hits = col.match({"base64": b64(crop(wallpaper(KAY_LIGHT), seed))})["hits"]
    assert "kay-dark" not in [h["_id"] for h in hits], hits[:2]


@pytest.mark.parametrize("seed", [1, 3])
def test_another_tint_in_low_quality_is_not_the_wallpaper(col, seed):
    hits = col.match({"base64": b64(jpeg_low(tint(wallpaper(PASTEL), 150), seed))})["hits"]
    assert "pastel" not in [h["_id"] for h in hits], hits[:2]
