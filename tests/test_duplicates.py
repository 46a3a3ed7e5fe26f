"""Near-duplicates: `match` finds edited copies of drawn images, `duplicates` clusters them."""
from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

import lookalike
from lookalike.testing.copies import TRANSFORMS, encode
from lookalike.errors import BadRequest, NotFound
from lookalike.sample import COLORS, draw_item
from lookalike.testing.photos import photo_like
import lookalike.query.duplicates as dup


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


ORIGINALS = {
    "red-stripes": draw_item("stripes", COLORS["red"], seed=1, size=288),
    "blue-stripes": draw_item("stripes", COLORS["blue"], seed=2, size=288),
    "green-dots": draw_item("dots", COLORS["green"], seed=3, size=288, shape="circle"),
    "orange-checks": draw_item("checks", COLORS["orange"], seed=4, size=288, shape="shirt"),
    "photo-a": photo_like(11, size=288),
    "photo-b": photo_like(12, size=288),
}


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("dups"))
    c = db.collection("dups", create=True)
    records = [{"_id": rid, "_base64": b64(encode(im)), "kind": rid.split("-")[1]} for rid, im in ORIGINALS.items()]
    assert all(r["status"] == "inserted" for r in c.upsert(records))
    yield c
    db.close()


@pytest.mark.parametrize("transform", ["rotate10", "mirror", "grey", "blur", "jpeg10", "down5", "border", "text"])
def test_match_finds_the_original_of_an_edited_copy(col, transform):
    found = 0
    for n, (rid, im) in enumerate(ORIGINALS.items()):
        hits = col.match({"base64": b64(encode(TRANSFORMS[transform](im, n)))})["hits"]
        # photo_like drawings are blurred colour fields under pixel noise: JPEG q10 or a caption
        # removes the noise corners ORB finds and moves the fingerprints under the fallback's
        # 0.7, so one of them may go unfound; none is ever taken for another original
        assert hits or (transform in ("jpeg10", "text") and rid.startswith("photo")), (transform, rid)
        if hits:
            assert hits[0]["_id"] == rid and hits[0]["_match"]["kind"] == "near", (transform, rid, hits[:2])
            assert 0.5 <= hits[0]["_score"] <= 1
            found += 1
    assert found >= len(ORIGINALS) - 1, (transform, found)


def test_match_finds_most_crops_and_never_a_wrong_original(col):
    found = 0
    for n, (rid, im) in enumerate(ORIGINALS.items()):
        for seed in (n, n + 100):
            hits = col.match({"base64": b64(encode(TRANSFORMS["crop60"](im, seed)))})["hits"]
            assert not hits or hits[0]["_id"] == rid, (rid, seed, hits[:2])
            found += bool(hits)
    # Crops are verified by local features since issue 16: these drawings (stripes, checks,
    # noise fields) have repeated or noise-only corners, so few of their crops verify (crops of
    # real photos do: tests/test_match_verify.py, bench/copybench.py); the fingerprint crop
    # scores that found 11 of 12 here also matched look-alikes unverified.
    assert found >= 1, found


def test_crop_check_is_skipped_beyond_its_collection_size_limit(col, monkeypatch):
    """Past CROP_SCAN_MAX the fingerprints look for no crops (their ~2000 comparisons a record
    cost too much): the candidates' scan gets no crop sub-windows; whole images still match."""
    import lookalike.query.match as match_module

    seen = []
    real = match_module.similarities
    monkeypatch.setattr(match_module, "similarities", lambda hashes, q, **kw: seen.append(len(q.crop)) or real(hashes, q, **kw))
    grey = b64(encode(TRANSFORMS["grey"](ORIGINALS["photo-a"], 0)))
    assert col.match({"base64": grey})["hits"][0]["_id"] == "photo-a"
    monkeypatch.setattr(match_module, "CROP_SCAN_MAX", 1)
    assert col.match({"base64": grey})["hits"][0]["_id"] == "photo-a"
    assert seen[0] > 0 and seen[1] == 0, seen


def test_exact_for_the_same_bytes_and_for_the_same_pixels(col, tmp_path):
    im = ORIGINALS["photo-a"]
    same_bytes = col.match({"base64": b64(encode(im))})["hits"]
    assert same_bytes[0]["_id"] == "photo-a" and same_bytes[0]["_match"]["kind"] == "exact" and same_bytes[0]["_score"] == 1
    # a PNG stored, its pixels re-encoded as BMP: other bytes, identical pixels
    png = encode(ORIGINALS["blue-stripes"], "PNG")
    col.upsert([{"_id": "png", "_base64": b64(png)}])
    bmp = io.BytesIO()
    Image.open(io.BytesIO(png)).save(bmp, "BMP")
    path = tmp_path / "q.bmp"
    path.write_bytes(bmp.getvalue())
    hits = col.match({"file": str(path)})["hits"]
    assert hits[0] == {**hits[0], "_id": "png", "_match": {"kind": "exact"}}
    assert {h["_id"]: h["_match"]["kind"] for h in hits}["blue-stripes"] == "near"  # the JPEG of the same drawing
    assert all("_fingerprint" not in h for h in hits) and "_fingerprint" not in col.get("png")
    col.delete(["png"])
    assert "png" not in [h["_id"] for h in col.match({"file": str(path)})["hits"]]


def test_unrelated_images_match_nothing(col):
    for n, im in enumerate([photo_like(500 + n, size=288) for n in range(3)] +
                           [draw_item("stripes", COLORS["red"], seed=77, size=288)]):
        assert col.match({"base64": b64(encode(im))})["hits"] == [], n


def test_threshold_and_id_query(col):
    grey = b64(encode(TRANSFORMS["grey"](ORIGINALS["green-dots"], 0)))
    assert col.match({"base64": grey}, threshold=0.0, k=3)["hits"][0]["_id"] == "green-dots"
    # a threshold bounds the score of verified copies: even 0 lets no unverified record in
    assert [h["_id"] for h in col.match({"base64": grey}, threshold=0.0, k=3)["hits"]] == ["green-dots"]
    assert col.match({"base64": grey}, threshold=0.999)["hits"] == []
    by_id = col.match({"id": "green-dots"}, threshold=0.0, k=10)["hits"]
    assert "green-dots" not in [h["_id"] for h in by_id]


def test_bad_match_requests_are_refused_and_change_nothing(col):
    before = col.count()
    with pytest.raises(BadRequest, match="threshold"):
        col.match({"id": "photo-a"}, threshold=1.5)
    with pytest.raises(BadRequest, match="threshold"):
        col.match({"id": "photo-a"}, threshold="high")
    with pytest.raises(BadRequest, match="'text'"):
        col.match({"text": "a shirt"})
    with pytest.raises(NotFound, match="nope"):
        col.match({"id": "nope"})
    with pytest.raises(BadRequest):
        col.duplicates(threshold=-1)
    assert col.count() == before


def test_duplicates_clusters_copies_and_nothing_else(tmp_path):
    with lookalike.connect(tmp_path) as db:
        c = db.collection("d", create=True)
        red, photo = ORIGINALS["red-stripes"], ORIGINALS["photo-b"]
        c.upsert([
            {"_id": "red", "_base64": b64(encode(red))},
            {"_id": "red-again", "_base64": b64(encode(red))},                        # byte copy
            {"_id": "red-grey", "_base64": b64(encode(TRANSFORMS["grey"](red, 0)))},
            {"_id": "photo", "_base64": b64(encode(photo))},
            {"_id": "photo-small", "_base64": b64(encode(TRANSFORMS["down5"](photo, 0)))},
            {"_id": "photo-mirror", "_base64": b64(encode(TRANSFORMS["mirror"](photo, 0)))},
            {"_id": "blue", "_base64": b64(encode(ORIGINALS["blue-stripes"]))},     # same kind, not a copy
            {"_id": "dots", "_base64": b64(encode(ORIGINALS["green-dots"]))},
        ])
        assert c.duplicates()["clusters"] == [["photo", "photo-mirror", "photo-small"], ["red", "red-again", "red-grey"]]
        c.upsert([{"_id": "red-grey", "note": "metadata only"}])   # keeps its fingerprint
        c.delete(["photo-small"])
        assert c.duplicates()["clusters"] == [["red", "red-again", "red-grey"], ["photo", "photo-mirror"]]
        assert c.match({"id": "red"})["hits"][0] == {**c.match({"id": "red"})["hits"][0],
                                                     "_id": "red-again", "_match": {"kind": "exact"}}


def test_whole_image_pairs_equal_a_brute_force_reference():
    """`similar_pairs` (the path of big collections): every pair within the threshold's Hamming
    radius, mirrored or not, and nothing else, including pairs exactly on the radius."""
    import numpy as np
    from lookalike.models import fingerprint as fp
    from lookalike.query import duplicates as dup
    rng = np.random.default_rng(5)
    n = 600
    bits = rng.random((n, fp.BITS)) < 0.5
    for copy, (source, flips) in enumerate(zip(rng.choice(300, 150, replace=False), rng.integers(0, 70, 150))):
        row = bits[source].copy()
        row[rng.choice(fp.BITS, flips, replace=False)] ^= True
        bits[300 + copy] = row ^ fp.MIRROR if copy % 3 == 0 else row  # a third are mirror images
    words = np.packbits(bits, axis=1).view(">u8").astype(np.uint64)
    hamming = (bits[:, None, :] != bits[None, :, :]).sum(-1)
    mirrored = (bits[:, None, :] != (bits ^ fp.MIRROR)[None, :, :]).sum(-1)
    for threshold in (0.6, 0.55, 0.5, 0.75):
        sims = 1 - 2 * np.minimum(hamming, np.minimum(mirrored, mirrored.T)) / fp.BITS
        want = set(zip(*np.nonzero(np.triu(sims >= threshold - 1e-9, k=1))))
        rows, cols = dup.similar_pairs(words, threshold, chunk=128)
        assert set(zip(rows.tolist(), cols.tolist())) == want and len(rows) == len(want) > 30
        rows, cols = dup.pairs_by_products(words, threshold, block=128)  # without FAISS
        assert set(zip(rows.tolist(), cols.tolist())) == want and len(rows) == len(want)


def test_duplicates_of_a_big_collection_use_whole_images(tmp_path, monkeypatch):
    from lookalike.query import duplicates as dup
    monkeypatch.setattr(dup, "CLUSTER_FULL_MAX", 3)  # this collection counts as big
    with lookalike.connect(tmp_path) as db:
        c = db.collection("d", create=True)
        red, photo = ORIGINALS["red-stripes"], ORIGINALS["photo-b"]
        c.upsert([
            {"_id": "red", "_base64": b64(encode(red))},
            {"_id": "red-grey", "_base64": b64(encode(TRANSFORMS["grey"](red, 0)))},
            {"_id": "photo", "_base64": b64(encode(photo))},
            {"_id": "photo-mirror", "_base64": b64(encode(TRANSFORMS["mirror"](photo, 0)))},
            {"_id": "blue", "_base64": b64(encode(ORIGINALS["blue-stripes"]))},
            {"_id": "dots", "_base64": b64(encode(ORIGINALS["green-dots"]))},
        ])
        assert c.duplicates()["clusters"] == [["photo", "photo-mirror"], ["red", "red-grey"]]


def test_cli_match_and_duplicates(tmp_path):
    import json
    import subprocess
    import sys

    data = tmp_path / "data"
    photo = ORIGINALS["photo-a"]
    with lookalike.connect(data) as db:
        db.collection("c", create=True).upsert([
            {"_id": "photo", "_base64": b64(encode(photo))},
            {"_id": "photo-grey", "_base64": b64(encode(TRANSFORMS["grey"](photo, 0)))},
            {"_id": "other", "_base64": b64(encode(ORIGINALS["green-dots"]))}])
    query = tmp_path / "q.jpg"
    query.write_bytes(encode(TRANSFORMS["border"](photo, 0)))

    def cli(*args: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "lookalike.cli", *args, "-c", "c", "--json", "--data", str(data)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    assert sorted(h["_id"] for h in cli("match", "--image", str(query))["hits"]) == ["photo", "photo-grey"]
    assert cli("duplicates")["clusters"] == [["photo", "photo-grey"]]


def test_match_stays_right_after_compaction_and_more_writes(tmp_path):
    with lookalike.connect(tmp_path) as db:
        c = db.collection("k", create=True)
        ims = [photo_like(300 + i, size=200) for i in range(6)]
        c.upsert([{"_id": f"p{i}", "_base64": b64(encode(im))} for i, im in enumerate(ims[:4])])
        assert c.match({"base64": b64(encode(TRANSFORMS["grey"](ims[2], 0)))})["hits"][0]["_id"] == "p2"
        c.delete(["p0", "p1"])
        c._store.compact()  # slots and the field index are rebuilt
        c.upsert([{"_id": f"p{i}", "_base64": b64(encode(im))} for i, im in enumerate(ims) if i not in (2, 3)])
        for i in range(6):
            hits = c.match({"base64": b64(encode(TRANSFORMS["blur"](ims[i], 0)))})["hits"]
            assert [h["_id"] for h in hits[:1]] == [f"p{i}"], (i, hits)


def test_stored_fingerprints_are_decoded_once_not_per_match(col, monkeypatch):
    """The store copies its list of distinct values per call: the fingerprint cache must still
    recognise postings it has read (else every `match` decodes every fingerprint again)."""
    query = b64(encode(TRANSFORMS["grey"](ORIGINALS["green-dots"], 0)))
    col.match({"base64": query})
    calls = []
    real = dup.decode_fingerprint
    monkeypatch.setattr(dup, "decode_fingerprint", lambda value: calls.append(1) or real(value))
    col.match({"base64": query})
    assert calls == []
    col.upsert([{"_id": "one-more", "_base64": b64(encode(photo_like(901, size=160)))}])
    col.match({"base64": query})
    assert len(calls) == 1   # just the new record's
    col.delete(["one-more"])
