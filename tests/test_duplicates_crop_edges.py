"""`duplicates`' fingerprint crop edges (query/clusters.py `_crop_edges`) join only pictures whose
keypoints cannot verify a crop (repeated patterns): on two different real ukui backgrounds, a
logo copy of one and a contrast copy of the other made a crop edge that merged their clusters."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.models.keypoints import features, reduced, self_distance
from lookalike.query.clusters import REPEATED_DISTANCE
from lookalike.sample import COLORS, draw_item
from lookalike.testing.copies import COPY_TRANSFORMS
from lookalike.testing.photos import jpeg_base64, require_pictures

FOCAL, FIRST = Path("/usr/share/backgrounds/focal-ubuntukylin.png"), Path("/usr/share/backgrounds/firstgeneration.jpg")
require_pictures(FOCAL, FIRST, package="ukui-wallpapers")


def picture(path: Path) -> Image.Image:
    im = Image.open(path).convert("RGB")
    im.thumbnail((640, 640), Image.Resampling.LANCZOS)
    return im


def test_two_backgrounds_copies_stay_in_two_clusters(tmp_path):
    focal, first = picture(FOCAL), picture(FIRST)
    records = {"focal": focal, "first": first}
    # the edits and their seeds of bench/copybench.py's duplicates set, seed 1 (dup-2, dup-14)
    for n, name in enumerate(("watermark", "logo", "jpeg")):
        records[f"focal-{name}"] = COPY_TRANSFORMS[name](focal, 27 + n)
    for n, name in enumerate(("contrast", "saturation", "mirror")):
        records[f"first-{name}"] = COPY_TRANSFORMS[name](first, 147 + n)
    with lookalike.connect(tmp_path) as db:
        col = db.collection("backgrounds", create=True)
        col.upsert([{"_id": rid, "_base64": jpeg_base64(im, quality=92)} for rid, im in records.items()])
        clusters = col.duplicates()["clusters"]
    assert sorted(clusters) == [["first", "first-contrast", "first-mirror", "first-saturation"],
                                ["focal", "focal-jpeg", "focal-logo", "focal-watermark"]]


@pytest.mark.parametrize(("picture", "repeated"), [
    (draw_item("stripes", COLORS["red"], seed=1, size=288), True),
    (draw_item("checks", COLORS["orange"], seed=4, size=288, shape="shirt"), True),
    (picture(FOCAL), False),
    (picture(FIRST), False),
])
def test_self_distance_tells_repeated_patterns(picture, repeated):
    assert (self_distance(features(reduced(picture))) <= REPEATED_DISTANCE) is repeated


def test_self_distance_of_too_few_descriptors():
    f = features(np.full((64, 64, 3), 128, np.uint8))
    assert len(f.descriptors) < 2 and self_distance(f) == 256.0


def test_self_distance_is_the_median_nearest_hamming_distance():
    rng = np.random.default_rng(0)
    descriptors = rng.integers(0, 256, (50, 32), dtype=np.uint8)
    descriptors[1] = descriptors[0] ^ np.eye(32, dtype=np.uint8)[0]   # a near twin: one bit apart
    f = features(np.full((64, 64, 3), 128, np.uint8))
    f.descriptors = descriptors
    brute = np.array([[int(np.unpackbits(a ^ b).sum()) for b in descriptors] for a in descriptors])
    np.fill_diagonal(brute, 256)
    assert self_distance(f) == float(np.median(brute.min(axis=1)))
    assert brute[0].min() == 1
