"""`match` on colour questions and smooth pictures (issue 16), on scikit-image's photos: a
coloured query is no copy of a grey photo, a light and a dark edition of one picture both
verify but the query's own ranks first, hard crops and expanded-canvas rotations are found,
and plain colours and gradients (no keypoints) are found through their colour grid, while
other colours are not."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

import lookalike
from lookalike.testing.copies import COPY_TRANSFORMS, tint
from lookalike.testing.photos import jpeg_base64, skimage_photo

pytest.importorskip("skimage.data")  # skimage_photo below


def _gradient(a: tuple[int, int, int], b: tuple[int, int, int], size=(360, 240)) -> Image.Image:
    w, h = size
    t = (np.mgrid[0:h, 0:w][1] / (w - 1) * 0.7 + np.mgrid[0:h, 0:w][0] / (h - 1) * 0.3)[..., None]
    return Image.fromarray((np.array(a) * (1 - t) + np.array(b) * t).astype(np.uint8))


PHOTOS = {n: skimage_photo(n, 400) for n in ("astronaut", "coffee", "chelsea", "rocket", "camera", "horse")}
COFFEE_DARK = ImageEnhance.Brightness(PHOTOS["coffee"]).enhance(0.45)   # the "night edition"
PLAIN = Image.fromarray(np.clip(np.array((120, 60, 70)) + np.random.default_rng(1).normal(0, 2, (400, 600, 3)),
                                0, 255).astype(np.uint8))
GRADIENT = _gradient((30, 140, 160), (240, 180, 60))


b64 = partial(jpeg_base64, quality=92)


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("colours"))
    c = db.collection("photos", create=True)
    c.upsert([{"_id": n, "_base64": b64(im)} for n, im in PHOTOS.items()]
             + [{"_id": "coffee-dark", "_base64": b64(COFFEE_DARK)}, {"_id": "plain", "_base64": b64(PLAIN)},
                {"_id": "gradient", "_base64": b64(GRADIENT)}])
    yield c
    db.close()


def _first(col, im: Image.Image) -> str | None:
    hits = col.match({"base64": b64(im)})["hits"]
    return hits[0]["_id"] if hits else None


def test_a_grey_copy_matches_its_photo_both_ways(col):
    grey = ImageOps.grayscale(PHOTOS["coffee"]).convert("RGB")
    assert _first(col, COPY_TRANSFORMS["crop"](grey, 2)) == "coffee"
    assert _first(col, COPY_TRANSFORMS["jpeg"](PHOTOS["camera"], 2)) == "camera"


def test_a_coloured_plain_image_is_no_copy_of_a_grey_one(tmp_path):
    grey = Image.fromarray(np.full((300, 400, 3), 70, np.uint8))
    coloured = Image.fromarray(np.full((300, 400, 3), (90, 50, 60), np.uint8))
    with lookalike.connect(tmp_path) as db:
        c = db.collection("flat", create=True)
        c.upsert([{"_id": "grey", "_base64": b64(grey)}])
        assert [h["_id"] for h in c.match({"base64": b64(COPY_TRANSFORMS["jpeg"](grey, 1))})["hits"]] == ["grey"]
        for name in ("border", "caption", "crop"):
            assert c.match({"base64": b64(COPY_TRANSFORMS[name](coloured, 1))})["hits"] == [], name


def test_the_edition_in_the_query_colours_ranks_first(col):
    for seed in range(3):
        for name in ("jpeg", "down5", "crop"):
            assert _first(col, COPY_TRANSFORMS[name](COFFEE_DARK, seed)) == "coffee-dark", (name, seed)
            assert _first(col, COPY_TRANSFORMS[name](PHOTOS["coffee"], seed)) == "coffee", (name, seed)


@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea", "rocket"])
def test_hard_crops_and_expanded_rotations_are_found(col, photo):
    im = PHOTOS[photo]
    w, h = im.size
    crop = im.crop((round(w * 0.3), round(h * 0.2), round(w * 0.85), round(h * 0.75)))   # 55 % of each side
    assert _first(col, crop) == photo
    for angle in (12, -12):
        turned = im.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
        assert _first(col, turned) == photo, angle
    assert _first(col, tint(crop, 150)) is None   # another tint is another item


@pytest.mark.parametrize("name", ["crop", "caption", "logo", "jpeg", "down5", "blur", "mirror", "border", "letterbox"])
def test_plain_colours_and_gradients_are_found_by_their_colours(col, name):
    assert _first(col, COPY_TRANSFORMS[name](PLAIN, 4)) == "plain", name
    assert _first(col, COPY_TRANSFORMS[name](GRADIENT, 4)) == "gradient", name


def test_other_plain_colours_and_gradients_are_not_copies(col):
    others = [Image.new("RGB", (300, 240), (70, 120, 60)), Image.new("RGB", (300, 240), (150, 60, 70)),
              _gradient((30, 140, 160), (120, 40, 160)), _gradient((240, 180, 60), (30, 140, 160))]
    for n, im in enumerate(others):
        assert col.match({"base64": b64(COPY_TRANSFORMS["crop"](im, n))})["hits"] == [], n


def test_a_tuned_collection_takes_match_candidates_in_its_own_space(tmp_path):
    """After a tune the stored vectors live in the learned space: the query's embedding must be
    mapped the same way, or match's embedding candidates are the wrong records."""
    from lookalike.query import match as matching
    from lookalike.store.transform import Transform
    db = lookalike.connect(tmp_path)
    try:
        c = db.collection("t", create=True)
        c.upsert([{"_id": n, "_base64": b64(im)} for n, im in PHOTOS.items()])
        dim = c._store.settings.dim
        rotation, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((dim, dim)))
        c._store.set_tuning({"transform": Transform(np.zeros(dim, np.float32), rotation.astype(np.float32)).to_dict()})
        for name in ("coffee", "rocket", "horse"):
            im = PHOTOS[name]
            crop = im.crop((im.width // 10, im.height // 10, im.width * 9 // 10, im.height * 9 // 10))
            query, _ = matching._query(c._searcher, "base64", b64(crop))
            matching._candidates(c._searcher, query, [])
            assert query.embedding_top[0] == name
    finally:
        db.close()


def test_a_faded_copy_of_another_tint_is_no_copy_while_a_faded_copy_is(tmp_path):
    """Hues still tell where a copy is faded (saturation down to a third) or dark: most of its
    cells are below the chroma a full-colour vote takes, yet a turned tint is another item."""
    photo = skimage_photo("chelsea", 400)
    db = lookalike.connect(tmp_path)
    c = db.collection("tints", create=True)
    c.upsert([{"_id": "chelsea", "_base64": b64(photo)}] +
             [{"_id": f"tint{d}", "_base64": b64(tint(photo, d))} for d in (100, 220)])
    faded = ImageEnhance.Color(tint(photo, 160)).enhance(0.3)   # a tint that is not stored, faded
    assert c.match({"base64": b64(faded)})["hits"] == []
    own = ImageEnhance.Color(tint(photo, 100)).enhance(0.3)     # a faded copy of a stored tint
    assert [h["_id"] for h in c.match({"base64": b64(own)})["hits"]] == ["tint100"]
    db.close()
