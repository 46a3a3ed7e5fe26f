"""Edit in place and `min_score` on the Milvus store (Lite and a server, conftest.py's `milvus_backend`):
the same answers as the embedded store, the vector and image source untouched, filters current."""
from __future__ import annotations

import numpy as np
import pytest

import lookalike
from lookalike.errors import BadRequest, NotFound

pytest.importorskip("pymilvus")

DIM = 8


def records() -> list[dict]:
    rng = np.random.default_rng(3)
    return [{"_id": f"r{i}", "_vector": rng.normal(size=DIM).tolist(), "price": i, "color": ["red", "blue"][i % 2],
             "attrs": {"size": "S"}}
            for i in range(20)]


def test_update_on_milvus_matches_the_embedded_store(milvus_at, tmp_path):
    with lookalike.connect(milvus_at("u")) as milvus, lookalike.connect(tmp_path / "embedded") as embedded:
        cols = []
        for db in (milvus, embedded):
            col = db.collection("vec", create=True, model="none", dim=DIM)
            col.upsert(records())
            cols.append(col)
        for col in cols:
            vector = col._store.raw_vectors(["r3"])["r3"]
            ranking = col.search({"id": "r0"}, k=5, fields=[])["hits"]
            out = col.update("r3", {"price": 100, "color": None, "attrs": {"size": "XL"}, "tags": ["new"]})
            assert out == col.get("r3") == {"_id": "r3", "price": 100, "attrs": {"size": "XL"}, "tags": ["new"]}
            assert np.allclose(col._store.raw_vectors(["r3"])["r3"], vector)
            assert col.search({"id": "r0"}, k=5, fields=[])["hits"] == ranking
            assert [h["_id"] for h in col.search({"id": "r0"}, k=20, filter={"price": {"$gte": 100}})["hits"]] == ["r3"]
            assert col.search({"id": "r0"}, k=20, filter={"attrs.size": "XL"})["hits"][0]["_id"] == "r3"
            assert "r3" not in {h["_id"] for h in col.search({"id": "r0"}, k=20, filter={"color": {"$exists": True}})["hits"]}
            with pytest.raises(BadRequest, match="'_vector' is an image source"):
                col.update("r3", {"_vector": [1.0] * DIM})
            with pytest.raises(NotFound):
                col.update("nope", {"x": 1})
            assert col.get("r3")["price"] == 100 and col.count() == 20
        m, e = cols
        assert m.search({"id": "r0"}, k=20, min_score=0.1)["hits"] == e.search({"id": "r0"}, k=20, min_score=0.1)["hits"]
        cut = e.search({"id": "r0"}, k=20)["hits"][4]["_score"]
        assert len(m.search({"id": "r0"}, k=20, min_score=cut)["hits"]) == 5
        ranked = [c.rerank(["r1", "r2", "r5", "nope"], {"id": "r0"}, min_score=cut) for c in cols]
        assert [(r["hits"], r["missing"]) for r in ranked][0] == [(r["hits"], r["missing"]) for r in ranked][1]


def test_update_keeps_the_url_source_on_milvus(milvus_at, tmp_path):
    """A `_url` record (its image fetched at ingest from loopback) keeps `_url` and its vector."""
    from lookalike.sample import COLORS, draw_item
    from lookalike.testing.servers import serving_files
    from conftest import jpeg_bytes
    with serving_files({"/a.jpg": jpeg_bytes(draw_item("dots", COLORS["red"], seed=3))}) as (host, _):
        with lookalike.connect(milvus_at("url")) as db:
            col = db.collection("img", create=True)
            assert col.upsert([{"_id": "a", "_url": f"{host}/a.jpg", "price": 1}])[0]["status"] == "inserted"
            before, vector = col.get("a"), col._store.raw_vectors(["a"])["a"]
            col.update("a", {"price": 2})
            after = col.get("a")
            assert after["_url"] == before["_url"] and after["price"] == 2
            assert after["_labels"] == before["_labels"] and after["_colors"] == before["_colors"]
            assert np.allclose(col._store.raw_vectors(["a"])["a"], vector)


def test_explain_and_collapse_on_milvus_match_the_embedded_store(milvus_at, tmp_path):
    skimage = pytest.importorskip("skimage.data")
    import base64
    from PIL import Image
    from lookalike.testing.copies import down5, encode
    records = []
    for name in ("astronaut", "coffee"):
        image = Image.fromarray(getattr(skimage, name)()).convert("RGB")
        records += [{"_id": name, "_base64": base64.b64encode(encode(image)).decode(), "kind": "original"},
                    {"_id": f"{name}-small", "_base64": base64.b64encode(encode(down5(image, 1))).decode(),
                     "kind": "copy"}]
    answers = []
    for location in (milvus_at("img"), tmp_path / "embedded"):
        with lookalike.connect(location) as db:
            col = db.collection("img", create=True, boosts=[{"filter": {"kind": "copy"}, "weight": 0.1}])
            col.upsert(records)
            answers.append([col.search({"id": "astronaut"}, k=3, explain=True, fields=[])["hits"],
                            col.search({"id": "astronaut"}, k=3, collapse={"ids": True}, fields=[])["hits"]])
    (explained, collapsed), (explained_e, collapsed_e) = answers
    assert [h["_id"] for h in collapsed] == [h["_id"] for h in collapsed_e] == ["astronaut-small", "coffee-small"]
    assert collapsed[1]["_collapsed_ids"] == ["coffee"]
    for m, e in zip(explained, explained_e):
        assert m["_id"] == e["_id"] and m["_explain"]["boosts"] == e["_explain"]["boosts"]
        assert m["_explain"]["parts"] == pytest.approx(e["_explain"]["parts"], abs=1e-5)
        assert m["_explain"].get("duplicate", {}).get("how") == e["_explain"].get("duplicate", {}).get("how")
    assert explained[0]["_explain"]["duplicate"]["how"] == "whole"
