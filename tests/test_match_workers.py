"""`match` spread over the workers' pool (query/workers.py): the same hits as in one thread,
the checks really made by the pool, concurrent queries sharing it without a deadlock, a
failing task's error raised to every caller, and exact copies found through the field index
as the collection stands (an updated or deleted record is no longer one)."""
from __future__ import annotations

import base64
import io
import threading
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import pytest

import lookalike
from lookalike.query import match as match_mod
from lookalike.query import workers
from lookalike.testing.copies import COPY_TRANSFORMS
from lookalike.testing.photos import jpeg_base64, skimage_photo

pytest.importorskip("skimage.data")  # skimage_photo below

PHOTOS = {n: skimage_photo(n, 320) for n in ("astronaut", "coffee", "chelsea", "rocket", "camera")}
b64 = partial(jpeg_base64, quality=92)
QUERIES = [b64(COPY_TRANSFORMS[name](PHOTOS[photo], 5)) for name, photo in
           [("crop", "astronaut"), ("mirror", "coffee"), ("rotate_expand", "chelsea"), ("caption", "rocket")]]
QUERIES.append(b64(skimage_photo("hubble_deep_field", 320)))  # a non-copy


@pytest.fixture(scope="module")
def col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("workers"))
    c = db.collection("photos", create=True)
    c.upsert([{"_id": n, "_base64": b64(im)} for n, im in PHOTOS.items()])
    yield c
    db.close()


def _hits(col, data: str) -> list[tuple]:
    return [(h["_id"], h["_score"], sorted(h["_match"].items())) for h in col.match({"base64": data})["hits"]]


def png(image, level: int) -> str:
    """Lossless bytes of the image: two levels give other bytes, the same pixels."""
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=level)
    return base64.b64encode(out.getvalue()).decode()


def _one_thread(monkeypatch) -> None:
    monkeypatch.setattr(workers, "MATCH_THREADS", 1)


def test_the_pool_gives_the_hits_of_one_thread_and_does_the_checks(col, monkeypatch):
    if workers.pool() is None:
        pytest.skip("one core: no pool")
    names: set[str] = set()
    real = match_mod.verified

    def spy(*args, **kwargs):
        names.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(match_mod, "verified", spy)
    pooled = [_hits(col, q) for q in QUERIES]
    assert any(n.startswith("lookalike-match") for n in names), names
    with monkeypatch.context() as m:
        _one_thread(m)
        assert workers.pool() is None
        alone = [_hits(col, q) for q in QUERIES]
    assert pooled == alone
    assert [bool(h) for h in pooled] == [True, True, True, True, False]
    assert [h[0][0] for h in pooled[:4]] == ["astronaut", "coffee", "chelsea", "rocket"]


def test_concurrent_queries_share_the_pool(col):
    want = [_hits(col, q) for q in QUERIES]
    with ThreadPoolExecutor(max_workers=4) as callers:
        got = list(callers.map(lambda q: _hits(col, q), QUERIES * 3))
    assert got == want * 3


def test_a_failing_task_raises_to_every_caller(monkeypatch):
    q = match_mod.image_query(PHOTOS["coffee"], b"x")
    calls = []

    def broken(rgb, n=0):
        calls.append(n)
        raise RuntimeError("no keypoints today")

    monkeypatch.setattr(match_mod, "dense_features", broken)
    for _ in range(2):  # the second caller gets the stored error, not a wait on a future never set
        with pytest.raises(RuntimeError, match="no keypoints today"):
            q.dense()
    assert calls == [0]
    done = workers.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        done.result(timeout=10)


def test_prefetched_features_are_the_ones_made_when_needed():
    rgb = match_mod.reduced(PHOTOS["chelsea"])
    early = match_mod.image_query(PHOTOS["chelsea"], b"x", prefetch=True)
    late = match_mod.image_query(PHOTOS["chelsea"], b"x")
    for a, b in [(early.mirror()[0], late.mirror()[0]), *zip(early.dense(), late.dense())]:
        assert (a.points == b.points).all() and (a.descriptors == b.descriptors).all()
    assert early.mirror()[0].size == late.mirror()[0].size == (rgb.shape[1], rgb.shape[0])


def test_exact_copies_as_the_collection_stands(tmp_path):
    with lookalike.connect(tmp_path) as db:
        c = db.collection("exact", create=True)
        stored, data = png(PHOTOS["camera"], 9), png(PHOTOS["camera"], 1)  # found by pixels, not bytes
        assert stored != data
        c.upsert([{"_id": "a", "_base64": stored}, {"_id": "b", "_base64": stored},
                  {"_id": "c", "_base64": b64(PHOTOS["coffee"])}])
        hits = c.match({"base64": data})["hits"]
        assert [(h["_id"], h["_match"]["kind"]) for h in hits] == [("a", "exact"), ("b", "exact")]
        assert [h["_id"] for h in c.match({"id": "a"})["hits"]] == ["b"]  # the query record left out
        c.upsert([{"_id": "a", "_base64": b64(PHOTOS["rocket"])}])  # other pixels under the same id
        c.delete(["b"])
        assert c.match({"base64": data})["hits"] == []


def test_exact_copies_on_milvus(milvus_at):
    """The field-index lookup of a pixel hash is a filter on a computed field: Milvus has it too."""
    with lookalike.connect(milvus_at("exact")) as db:
        c = db.collection("exact", create=True)
        stored, data = png(PHOTOS["camera"], 9), png(PHOTOS["camera"], 1)  # found by pixels, not bytes
        c.upsert([{"_id": "a", "_base64": stored}, {"_id": "b", "_base64": stored},
                  {"_id": "c", "_base64": b64(PHOTOS["coffee"])}])
        hits = c.match({"base64": data})["hits"]
        assert [(h["_id"], h["_match"]["kind"]) for h in hits] == [("a", "exact"), ("b", "exact")]
        c.delete(["b"])
        assert [h["_id"] for h in c.match({"base64": data})["hits"]] == ["a"]
