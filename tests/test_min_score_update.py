"""`min_score` on every search kind, and editing a record's metadata in place (`update` / PATCH).

Issue 20, items 5 and 6: through the Python API, HTTP, the client and the CLI; bad input is a
clear error that changes nothing.
"""
from __future__ import annotations

import base64
import json
import math

import httpx
import numpy as np
import pytest

import lookalike
from lookalike.cli import main
from lookalike.errors import BadRequest, Forbidden, NotFound
from lookalike.sample import COLORS, draw_item
from lookalike.testing.servers import serving

from conftest import jpeg_bytes, read_jsonl

ADMIN, SEARCH = "admin-key-update", "search-key-update"


def angles_collection(db, name: str = "v"):
    """Unit vectors at 0, 10, ..., 170 degrees: cosine to [1, 0] is cos(angle)."""
    col = db.collection(name, create=True, model="none", dim=2)
    col.upsert([{"_id": f"a{d:03d}", "_vector": [math.cos(math.radians(d)), math.sin(math.radians(d))],
                 "deg": d, "tag": "even" if d % 20 == 0 else "odd"} for d in range(0, 180, 10)])
    return col


# -- min_score --------------------------------------------------------------------------------
def test_min_score_drops_exactly_the_hits_below_it_for_vector_id_recommend_and_rerank(db):
    col = angles_collection(db)
    hits = col.search({"vector": [1.0, 0.0]}, k=50, min_score=0.5)["hits"]
    expected = [f"a{d:03d}" for d in range(0, 180, 10) if math.cos(math.radians(d)) >= 0.5 - 1e-6]
    assert [h["_id"] for h in hits] == expected and len(expected) == 7  # 0..60 degrees
    assert len(col.search({"vector": [1.0, 0.0]}, k=50)["hits"]) == 18  # without it: every record
    by_id = col.search({"id": "a000"}, k=50, min_score=0.9)["hits"]
    assert [h["_id"] for h in by_id] == ["a010", "a020"]  # cos 30 deg = 0.866 < 0.9
    assert [h["_id"] for h in col.recommend("a000", k=50, min_score=0.9)["hits"]] == ["a010", "a020"]
    # boosts count: the score compared is the final one
    boosted = col.search({"id": "a000"}, k=50, min_score=0.9, boost=[{"filter": {"tag": "even"}, "weight": 0.2}])
    assert {h["_id"] for h in boosted["hits"]} == {"a010", "a020", "a040"}  # 0.766 + 0.2 >= 0.9
    ranked = col.rerank(["a090", "a000", "a030", "a170", "nope"], {"vector": [1.0, 0.0]}, min_score=0.0)
    assert [h["_id"] for h in ranked["hits"]] == ["a000", "a030", "a090"] and ranked["missing"] == ["nope"]
    assert col.search({"vector": [1.0, 0.0]}, k=5, min_score=2.0)["hits"] == []
    # paging: the page is cut, not refilled from below the threshold
    page2 = col.search({"vector": [1.0, 0.0]}, k=5, offset=5, min_score=0.5)["hits"]
    assert [h["_id"] for h in page2] == expected[5:]


@pytest.mark.parametrize("bad", ["0.5", True, [0.5], {"x": 1}, float("nan"), float("inf"), 1e12])
def test_min_score_must_be_a_number(db, bad):
    col = angles_collection(db)
    before = col.records(limit=100)
    for call in (lambda: col.search({"id": "a000"}, min_score=bad), lambda: col.recommend("a000", min_score=bad),
                 lambda: col.rerank(["a010"], {"id": "a000"}, min_score=bad)):
        with pytest.raises(BadRequest, match="'min_score' must be a number"):
            call()
    assert col.records(limit=100) == before


@pytest.fixture(scope="module")
def patterns(pattern_db_dir):
    database = lookalike.connect(pattern_db_dir, read_only=True)
    yield database.collection("patterns")
    database.close()


def test_min_score_on_colour_and_image_searches(patterns, pattern_catalog):
    everything = patterns.search({"color": "#c0392b"}, k=24)["hits"]
    assert len(everything) == 24 and min(h["_score"] for h in everything) < 0.05  # k hits even near 0
    kept = patterns.search({"color": "#c0392b"}, k=24, min_score=0.1)["hits"]
    assert kept == [h for h in everything if h["_score"] >= 0.1] and 0 < len(kept) < 24
    image = (pattern_catalog.parent / read_jsonl(pattern_catalog)[0]["_file"]).read_bytes()
    full = patterns.search({"image": image}, k=24)["hits"]
    cut = full[len(full) // 2]["_score"]
    assert patterns.search({"image": image}, k=24, min_score=cut)["hits"] == [h for h in full if h["_score"] >= cut]


def test_min_score_on_text_and_hybrid_searches(db):
    pytest.importorskip("sentence_transformers")
    col = db.collection("t", create=True, model="none", dim=2, text_fields=["title"])
    col.upsert([{"_id": "shoe", "_vector": [1, 0], "title": "red running shoe"},
                {"_id": "bag", "_vector": [0, 1], "title": "leather handbag"},
                {"_id": "boot", "_vector": [1, 1], "title": "red hiking boot"}])
    full = col.search({"text": "red shoe"}, k=3)["hits"]
    assert len(full) == 3 and full[0]["_id"] == "shoe"
    cut = full[1]["_score"]
    assert col.search({"text": "red shoe"}, k=3, min_score=cut)["hits"] == full[:2]
    hybrid = col.search({"id": "shoe"}, k=3, hybrid=0.5)["hits"]
    assert col.search({"id": "shoe"}, k=3, hybrid=0.5, min_score=hybrid[0]["_score"])["hits"] == hybrid[:1]


# -- update -----------------------------------------------------------------------------------
def image_record(tmp_path, rid: str, pattern: str, color: str, seed: int, **meta) -> dict:
    path = tmp_path / f"{rid}.jpg"
    draw_item(pattern, COLORS[color], seed=seed, size=240).save(path, quality=90)
    return {"_id": rid, "_file": str(path), **meta}


def test_update_changes_metadata_only_and_filters_see_it_at_once(db, tmp_path):
    col = db.collection("u", create=True)
    col.upsert([image_record(tmp_path, "a", "stripes", "red", 1, price=10, old="x", attrs={"size": "S"}),
                image_record(tmp_path, "b", "dots", "blue", 2, price=20)])
    before, vector, thumb = col.get("a"), col._store.raw_vectors(["a"])["a"], col.thumbnail("a")
    stored_before = col._store.get(["a"])[0]
    ranking = col.search({"id": "b"}, k=5, fields=[])["hits"]
    out = col.update("a", {"price": 12, "old": None, "attrs": {"size": "M"}, "new": [1, "two"]})
    after = col.get("a")
    assert out == after
    assert after["price"] == 12 and "old" not in after and after["attrs"] == {"size": "M"} and after["new"] == [1, "two"]
    for key in ("_file", "_labels", "_colors", "_pixel_hash"):
        assert after[key] == before[key], key
    assert np.array_equal(col._store.raw_vectors(["a"])["a"], vector) and col.thumbnail("a") == thumb
    assert col.search({"id": "b"}, k=5, fields=[])["hits"] == ranking  # same vector, same scores
    raw_before = {k: stored_before[k] for k in ("_fingerprint", "_keypoints")}
    assert raw_before["_fingerprint"] and raw_before["_keypoints"]
    assert {k: col._store.get(["a"])[0][k] for k in raw_before} == raw_before  # copy-detection features kept
    assert [h["_id"] for h in col.search({"id": "b"}, filter={"price": 12})["hits"]] == ["a"]
    assert col.search({"id": "b"}, filter={"price": 10})["hits"] == []
    assert col.search({"id": "b"}, filter={"old": {"$exists": True}})["hits"] == []
    assert col.search({"id": "b"}, filter={"attrs.size": "M"})["hits"][0]["_id"] == "a"
    assert col.count() == 2
    # an unchanged update writes nothing new and answers the record
    assert col.update("a", {"price": 12}) == after and col.update("a", {}) == after
    # re-ingesting the same catalogue line afterwards is a normal upsert (metadata replaced)
    assert col.upsert([image_record(tmp_path, "a", "stripes", "red", 1, price=10)])[0]["status"] == "updated"


@pytest.mark.parametrize("fields, message", [
    ({"_id": "z"}, "'_id' cannot be changed"),
    ({"_vector": [1.0, 0.0]}, "'_vector' is an image source"),
    ({"_file": "x.jpg"}, "'_file' is an image source"),
    ({"_url": "https://example.com/x.jpg"}, "'_url' is an image source"),
    ({"_base64": "AAAA"}, "'_base64' is an image source"),
    ({"_labels": []}, "computed by the engine"),
    ({"_fingerprint": "x"}, "computed by the engine"),
    ({"_secret": 1}, "unknown reserved field '_secret'"),
    ({"price": float("nan")}, "NaN or infinite"),
    ({"attrs": {"a.b": 1}}, "invalid key"),
    ({"price": 1, "_id": "z"}, "'_id' cannot be changed"),  # one bad field: nothing is written
    ([("price", 1)], "must be an object"),
    ("price=1", "must be an object"),
])
def test_update_refuses_reserved_and_invalid_fields_and_changes_nothing(db, tmp_path, fields, message):
    col = db.collection("u", create=True)
    col.upsert([image_record(tmp_path, "a", "stripes", "red", 1, price=10)])
    before, vector = col.get("a"), col._store.raw_vectors(["a"])["a"]
    with pytest.raises(BadRequest, match=message):
        col.update("a", fields)
    assert col.get("a") == before and np.array_equal(col._store.raw_vectors(["a"])["a"], vector)


def test_update_of_unknown_or_bad_id(db):
    col = angles_collection(db)
    with pytest.raises(NotFound, match="'nope' not found"):
        col.update("nope", {"x": 1})
    with pytest.raises(BadRequest, match="control character"):
        col.update("a\n", {"x": 1})
    assert col.count() == 18


def test_update_remakes_the_text_vector_only_when_a_text_field_changes(db):
    pytest.importorskip("sentence_transformers")
    col = db.collection("t", create=True, model="none", dim=2, text_fields=["title"])
    col.upsert([{"_id": "a", "_vector": [1, 0], "title": "red running shoe", "price": 1},
                {"_id": "b", "_vector": [0, 1], "title": "leather handbag", "price": 2}])
    old = col._store.text_vector_map(["a"])["a"]
    col.update("a", {"price": 5})
    assert np.array_equal(col._store.text_vector_map(["a"])["a"], old)
    assert col.search({"text": "leather bag"}, k=1)["hits"][0]["_id"] == "b"
    col.update("a", {"title": "leather tote bag"})
    assert not np.array_equal(col._store.text_vector_map(["a"])["a"], old)
    assert col.search({"text": "tote"}, k=1)["hits"][0]["_id"] == "a"


# -- over HTTP, the client and the CLI ------------------------------------------------------------
@pytest.fixture
def server_db(tmp_path):
    database = lookalike.connect(tmp_path / "served", allow_file=False)
    angles_collection(database)
    yield database
    database.close()


def test_http_patch_min_score_and_the_client(server_db):
    from lookalike.server import create_app
    with serving(create_app(server_db, admin_key=ADMIN, search_key=SEARCH)) as url:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as http:
            done = http.patch("/v1/collections/v/records/a000", json={"tag": None, "price": 3})
            assert done.status_code == 200 and done.json() == {"_id": "a000", "deg": 0, "price": 3}
            refused = http.patch("/v1/collections/v/records/a000", json={"_vector": [0, 1]})
            assert refused.status_code == 400 and "'_vector' is an image source" in refused.json()["error"]["message"]
            assert http.patch("/v1/collections/v/records/nope", json={"x": 1}).status_code == 404
            assert http.patch("/v1/collections/v/records/a000", json=[1]).status_code == 422
            assert http.patch("/v1/collections/v/records/a000", content=b"{oops",
                              headers={"Content-Type": "application/json"}).status_code == 400
            assert http.get("/v1/collections/v/records/a000").json() == {"_id": "a000", "deg": 0, "price": 3}
            found = http.post("/v1/collections/v/search", json={"query": {"id": "a010"}, "filter": {"price": 3}})
            assert [h["_id"] for h in found.json()["hits"]] == ["a000"]
            body = {"query": {"vector": [1, 0]}, "k": 50, "min_score": 0.5}
            assert len(http.post("/v1/collections/v/search", json=body).json()["hits"]) == 7
            for route, extra in (("search", {"query": {"id": "a000"}}), ("recommend", {"id": "a000"}),
                                 ("rerank", {"ids": ["a010"], "query": {"id": "a000"}})):
                bad = http.post(f"/v1/collections/v/{route}", json={**extra, "min_score": "high"})
                assert bad.status_code == 400 and "'min_score' must be a number" in bad.json()["error"]["message"]
            rerank = http.post("/v1/collections/v/rerank", json={"ids": ["a090", "a000"], "query": {"vector": [1, 0]},
                                                                 "min_score": 0.5})
            assert [h["_id"] for h in rerank.json()["hits"]] == ["a000"]
            image = base64.b64encode(jpeg_bytes(draw_item("dots", COLORS["red"], seed=1))).decode()
            multipart = http.post("/v1/collections/v/search/image", files={"image": ("x.jpg", base64.b64decode(image))},
                                  data={"params": json.dumps({"min_score": "x"})})
            assert multipart.status_code == 400  # model 'none' or min_score: refused either way, clearly
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {SEARCH}"}) as reader:
            assert reader.patch("/v1/collections/v/records/a000", json={"x": 1}).status_code == 403
        client = lookalike.Client(url, key=ADMIN)
        remote = client.collection("v")
        assert remote.update("a010", {"price": 4, "deg": None}) == {"_id": "a010", "tag": "odd", "price": 4}
        assert remote.get("a010") == server_db.collection("v").get("a010")
        with pytest.raises(BadRequest, match="'_id' cannot be changed"):
            remote.update("a010", {"_id": "x"})
        with pytest.raises(NotFound):
            remote.update("nope", {"x": 1})
        with pytest.raises(Forbidden):
            lookalike.Client(url, key=SEARCH).collection("v").update("a010", {"x": 1})
        local = server_db.collection("v")
        for kwargs in ({"min_score": 0.9}, {"min_score": -1.0}):
            assert remote.search({"id": "a000"}, k=50, **kwargs)["hits"] == local.search({"id": "a000"}, k=50, **kwargs)["hits"]
            assert remote.recommend("a000", k=50, **kwargs)["hits"] == local.recommend("a000", k=50, **kwargs)["hits"]
        assert remote.rerank(["a000", "a090"], {"vector": [1, 0]}, min_score=0.5)["hits"][0]["_id"] == "a000"
        with pytest.raises(BadRequest, match="min_score"):
            remote.search({"id": "a000"}, min_score="x")
        client.close()


def test_cli_update_and_min_score(tmp_path, capsys):
    data = tmp_path / "data"
    with lookalike.connect(data) as database:
        angles_collection(database)
    assert main(["update", "--data", str(data), "-c", "v", "a000", '{"tag": null, "price": 7}', "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"_id": "a000", "deg": 0, "price": 7}
    assert main(["update", "--data", str(data), "-c", "v", "a000", '{"_file": "x.jpg"}']) == 2
    assert "'_file' is an image source" in capsys.readouterr().err
    assert main(["update", "--data", str(data), "-c", "v", "a000", "{oops"]) == 2
    assert "FIELDS is not valid JSON" in capsys.readouterr().err
    assert main(["update", "--data", str(data), "-c", "v", "nope", '{"x": 1}']) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["search", "--data", str(data), "-c", "v", "--vector", "1,0", "-k", "50", "--min-score", "0.5",
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 7
    assert main(["rerank", "--data", str(data), "-c", "v", "--id", "a000", "a010", "a090", "--min-score", "0.5",
                 "--json"]) == 0
    assert [h["_id"] for h in json.loads(capsys.readouterr().out)["hits"]] == ["a010"]
    with lookalike.connect(data, read_only=True) as database:
        assert database.collection("v").get("a000") == {"_id": "a000", "deg": 0, "price": 7}
