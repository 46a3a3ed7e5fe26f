"""A wallpaper's editions for other screens (Plasma ships one drawing at 16:9 and cut to 9:16) are
one picture: the portrait cut spans most of the landscape edition's height but a third of its width,
under the half of each side a crop keeps (query/verify.py MIN_SIDE, FULL_SIDE), and must still
match it and cluster with it."""
from __future__ import annotations

from functools import partial
from pathlib import Path

from PIL import Image

import lookalike
from lookalike.testing.copies import COPY_TRANSFORMS
from lookalike.testing.photos import jpeg_base64, require_pictures

FOLDER = Path("/usr/share/wallpapers/MilkyWay/contents/images")
WIDE, TALL = FOLDER / "5120x2880.png", FOLDER / "1080x1920.png"
require_pictures(WIDE, TALL, package="plasma-workspace-wallpapers")

b64 = partial(jpeg_base64, quality=92)


def picture(path: Path) -> Image.Image:
    im = Image.open(path)
    im.draft("RGB", (640, 640))
    im = im.convert("RGB")
    im.thumbnail((640, 640), Image.Resampling.LANCZOS)
    return im


def test_the_portrait_edition_matches_the_landscape_one_and_clusters_with_it(tmp_path):
    wide, tall = picture(WIDE), picture(TALL)
    with lookalike.connect(tmp_path) as db:
        col = db.collection("walls", create=True)
        col.upsert([{"_id": "wide", "_base64": b64(wide)}])
        hit = col.match({"base64": b64(tall)})["hits"][0]
        x0, y0, x1, y1 = hit["_match"]["box"]
        assert hit["_id"] == "wide" and y1 - y0 > 0.8 and 0.25 < x1 - x0 < 0.4, hit
        # a jpeg copy of the portrait cut is found too, and the two editions form one cluster
        assert [h["_id"] for h in col.match({"base64": b64(COPY_TRANSFORMS["jpeg"](tall, 1))})["hits"]] == ["wide"]
        col.upsert([{"_id": "tall", "_base64": b64(tall)}])
        assert col.duplicates()["clusters"] == [["tall", "wide"]]
