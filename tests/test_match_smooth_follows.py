"""`match` of smooth pictures (query/smooth.py `_follows`): a crop of a faint gradient keeps its
gradient and is found; a plain colour equal to the gradient's middle, within the colour limit of
most of a half-window, is another picture and is not."""
from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.query import smooth
from lookalike.testing.photos import jpeg_base64

b64 = partial(jpeg_base64, quality=92)


def gradient(a: tuple[int, int, int], b: tuple[int, int, int], size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A left-to-right two-colour gradient."""
    w, h = size
    t = np.linspace(0.0, 1.0, w)[None, :, None]
    arr = np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t
    return Image.fromarray(np.repeat(arr, h, axis=0).astype(np.uint8))


FAINT = gradient((150, 110, 80), (120, 140, 110))


def plain(colour: tuple[int, int, int], size: tuple[int, int] = (300, 300)) -> Image.Image:
    rng = np.random.default_rng(3)
    arr = np.clip(np.asarray(colour, np.float32) + rng.normal(0, 2, (size[1], size[0], 3)), 0, 255)
    return Image.fromarray(arr.astype(np.uint8))


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("follows"))
    c = db.collection("smooth", create=True)
    c.upsert([{"_id": "faint", "_base64": b64(FAINT)},
              {"_id": "steep", "_base64": b64(gradient((20, 40, 200), (230, 200, 30)))}])
    yield c
    db.close()


def middle() -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(FAINT)[180, 240])


def test_a_crop_of_the_faint_gradient_is_found(col):
    w, h = FAINT.size
    hits = col.match({"base64": b64(FAINT.crop((round(0.3 * w), 0, round(0.9 * w), round(0.7 * h))))})["hits"]
    assert [x["_id"] for x in hits][:1] == ["faint"], hits


def test_the_plain_middle_colour_is_not_a_crop_of_the_gradient(col, monkeypatch):
    query = {"base64": b64(plain(middle()))}
    assert col.match(query)["hits"] == []
    # it is the check that tells them apart: without it the plain colour passes for half the gradient
    monkeypatch.setattr(smooth, "FOLLOW_SPREAD", float("inf"))
    assert [x["_id"] for x in col.match(query)["hits"]] == ["faint"]
