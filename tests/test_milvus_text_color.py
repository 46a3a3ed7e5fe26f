"""Text, hybrid and colour search on the Milvus store (Lite and server) against the embedded store.

The same records (precomputed visual vectors, real MiniLM sentence vectors of their titles,
drawn-looking `_colors`) are written to both stores through the store interface; every query
must return the same ids in the same order with the same scores, before and after updates
and deletes. One test goes end to end with drawn images and the default image model.
"""
from __future__ import annotations

import base64
import hashlib
import json

import numpy as np
import pytest

import lookalike
from lookalike.testing.copies import encode
from lookalike.errors import BadRequest, LookalikeError
from lookalike.sample import COLORS as SAMPLE_COLORS, draw_item
from lookalike.store.base import SearchRequest, StoredRecord

pytest.importorskip("pymilvus")
pytest.importorskip("torch")
from lookalike.store.milvus import text_collection_name  # noqa: E402
from lookalike.testing.milvus_server import Locations  # noqa: E402

DIM = 8
TITLES = ["brown leather hiking boots", "red silk evening dress", "ceramic coffee mug with a handle",
          "brass desk lamp for reading", "mountain bicycle with disc brakes", "blue denim jacket",
          "green wool winter scarf", "white porcelain tea cup", "black running shoes", "yellow rain coat",
          "wooden dining chair", "silver wrist watch", "orange beach towel", "purple velvet cushion",
          "steel kitchen knife", "pink cotton pyjamas", "grey office chair", "red leather handbag"]
PALETTE = ["#c82828", "#2846c8", "#1e963c", "#eb8214", "#f0f0f0", "#202020", "#8c3cb4", "#f0d21e"]


@pytest.fixture(scope="module")
def encoder():
    from lookalike.models.text import get_text_encoder
    return get_text_encoder()


def stored_records(encoder, ids_titles: list[tuple[str, str]], seed: int = 3, text: bool = True) -> list[StoredRecord]:
    """Records as ingest would write them: a visual vector, `_colors` and a title's sentence vector."""
    rng = np.random.default_rng(seed)
    vectors = encoder.embed([t for _, t in ids_titles]) if text else [None] * len(ids_titles)
    out = []
    for n, ((rid, title), tvec) in enumerate(zip(ids_titles, vectors)):
        vec = rng.normal(size=DIM).astype(np.float32)
        picks = rng.choice(len(PALETTE), size=3, replace=False)
        weights = rng.dirichlet(np.ones(3))
        colours = [{"color": PALETTE[p], "weight": round(float(w), 4)} for p, w in zip(picks, weights)]
        doc = {"_id": rid, "title": title, "kind": "wear" if n % 3 else "home", "price": int(rng.integers(5, 100)),
               "product_id": f"p{n % 5}"}
        digest = hashlib.sha256(json.dumps([doc, colours, vec.tolist()]).encode()).hexdigest()
        out.append(StoredRecord(rid, doc, {"_colors": colours}, vec / np.linalg.norm(vec), digest, digest,
                                text_vector=tvec))
    return out


def open_pair(location: str, folder, name: str = "shop", **settings):
    """A collection `name` in the Milvus store at `location` and in an embedded store under `folder`."""
    milvus, embedded = lookalike.connect(location), lookalike.connect(folder / "embedded")
    cols = [db.collection(name, create=True, model="none", dim=DIM, text_fields=["title"], **settings)
            for db in (milvus, embedded)]
    return (milvus, embedded), cols


@pytest.fixture(scope="module")
def pair(tmp_path_factory, encoder, milvus_backend):
    """The same 18 records in Milvus (Lite or server) and in the embedded store (read-only use)."""
    folder = tmp_path_factory.mktemp("milvus-text")
    locations = Locations(milvus_backend, folder)
    dbs, cols = open_pair(locations("lite"), folder)
    records = stored_records(encoder, [(f"r{i:02d}", t) for i, t in enumerate(TITLES)])
    for col in cols:
        assert col._store.write(records) == ["inserted"] * len(records)
    yield cols
    for db in dbs:
        db.close()
    locations.drop()


def ids(result: dict) -> list[str]:
    return [h["_id"] for h in result["hits"]]


def same(a: dict, b: dict) -> None:
    """Same ids, order, groups and fields; scores equal to float32 rounding."""
    assert ids(a) == ids(b)
    assert a["hits"] == [{**h, "_score": pytest.approx(h["_score"], abs=1e-5)} for h in b["hits"]]


SEARCHES = [
    {"query": {"text": "footwear for trekking"}},
    {"query": {"text": "something to drink from"}, "k": 5},
    {"query": {"text": "clothes"}, "filter": {"kind": "wear"}, "k": 6},
    {"query": {"text": "clothes"}, "filter": {"price": {"$lt": 50}}, "offset": 2, "k": 4},
    {"query": {"text": "furniture"}, "group_by": "product_id", "k": 4},
    {"query": {"text": "red things"}, "boost": [{"filter": {"kind": "home"}, "weight": 0.2}], "k": 6},
    {"query": {"id": "r01"}, "text": "evening wear"},
    {"query": {"id": "r01"}, "text": "evening wear", "hybrid": 0.8, "filter": {"kind": {"$ne": "home"}}},
    {"query": {"id": "r04"}, "hybrid": 0.5},  # the anchor's own text vector
    {"query": {"ids": ["r02", "r07"]}, "hybrid": 0.3, "group_by": "product_id"},
    {"query": {"vector": [0.3, -1, 0.2, 0.5, 0, 1, -0.4, 0.1]}, "text": "warm winter clothing", "hybrid": 0.6},
    {"query": {"color": "#c82828"}},
    {"query": {"color": "#2846c8"}, "filter": {"kind": "wear"}, "k": 5},
    {"query": {"color": "#1e963c"}, "filter": {"price": {"$gte": 40}}, "offset": 1, "k": 4},
    {"query": {"color": "#f0d21e"}, "group_by": "product_id"},
    {"query": {"color": "#eb8214"}, "boost": [{"filter": {"kind": "home"}, "weight": 0.3}], "k": 8},
    {"query": {"color": "#777777"}, "filter": {"_id": {"$in": ["r03", "r05", "r11"]}}},
]


@pytest.mark.parametrize("spec", SEARCHES, ids=[json.dumps(s) for s in SEARCHES])
def test_same_hits_as_embedded(pair, spec):
    milvus, embedded = pair
    spec = dict(spec)
    query = spec.pop("query")
    a, b = milvus.search(query, **spec), embedded.search(query, **spec)
    assert len(b["hits"]) > 0
    same(a, b)


def test_large_collections_read_the_vectors_instead(pair, monkeypatch):
    """Past one search's window, text and visual scores come from reading the vectors: same hits."""
    import lookalike.store.milvus.names as milvus_store
    monkeypatch.setattr(milvus_store, "SCORE_WINDOW", 5)
    milvus, embedded = pair
    for query, kwargs in [({"text": "kitchen things"}, {"filter": {"kind": "home"}}),
                          ({"id": "r05"}, {"text": "winter", "hybrid": 0.4, "group_by": "product_id"})]:
        same(milvus.search(query, k=7, **kwargs), embedded.search(query, k=7, **kwargs))


def test_text_ranking_is_semantic_and_text_vectors_alike(pair):
    milvus, embedded = pair
    assert ids(milvus.search({"text": "boots for hiking"}, k=2))[0] == "r00"
    assert ids(milvus.search({"color": "#c82828"}, k=18)) == ids(embedded.search({"color": "#c82828"}, k=18))
    own = milvus._store.text_vectors(["r03", "nope", "r01"])
    np.testing.assert_allclose(own, embedded._store.text_vectors(["r03", "nope", "r01"]), atol=1e-6)
    assert own.shape == (2, 384)


def test_compound_setting_like_embedded(tmp_path, milvus_at, encoder):
    dbs, cols = open_pair(milvus_at(), tmp_path, compound={"image": 1.0, "text": 0.5,
                                              "attributes": {"fields": ["kind"], "weight": 0.3}})
    records = stored_records(encoder, [(f"c{i}", t) for i, t in enumerate(TITLES[:10])], seed=5)
    for col in cols:
        col._store.write(records)
    same(cols[0].search({"id": "c1"}, k=6), cols[1].search({"id": "c1"}, k=6))
    for db in dbs:
        db.close()


def test_updates_and_deletes_are_followed(tmp_path, milvus_at, encoder):
    dbs, (milvus, embedded) = open_pair(milvus_at(), tmp_path)
    first = stored_records(encoder, [(f"u{i}", t) for i, t in enumerate(TITLES[:8])], seed=11)
    for col in (milvus, embedded):
        col._store.write(first)
    queries = [({"text": "a hot drink"}, {}), ({"color": "#c82828"}, {}),
               ({"color": "#2846c8"}, {"filter": {"kind": "wear"}}), ({"id": "u1"}, {"text": "shoes", "hybrid": 0.7})]

    def check() -> list[dict]:
        out = []
        for query, kwargs in queries:
            a, b = milvus.search(query, k=8, **kwargs), embedded.search(query, k=8, **kwargs)
            same(a, b)
            out.append(a)
        return out

    check()
    # u2 becomes a tea cup with a new look; u5 keeps its id but loses its text vector; u7 is deleted
    changed = stored_records(encoder, [("u2", "white porcelain tea cup")], seed=99)
    no_text = stored_records(encoder, [("u5", "whatever")], seed=98, text=False)
    for col in (milvus, embedded):
        assert col._store.write(changed + no_text) == ["updated", "updated"]
        assert col.delete(["u7", "missing"]) == 1
    results = check()
    assert ids(results[0])[0] == "u2"
    for result in results:
        assert "u7" not in ids(result)
    assert "u5" not in ids(results[0])  # no text vector: never a text hit
    text_rows = milvus._store._client.query(text_collection_name("shop"), filter='id != ""', output_fields=["id"])
    assert sorted(r["id"] for r in text_rows) == ["u0", "u1", "u2", "u3", "u4", "u6"]
    # a new record re-using the deleted id comes back, with its new text and colours
    back = stored_records(encoder, [("u7", "a mug of hot chocolate")], seed=7)
    for col in (milvus, embedded):
        assert col._store.write(back) == ["inserted"]
    assert ids(check()[0])[:2] == ids(embedded.search({"text": "a hot drink"}, k=2))
    for db in dbs:
        db.close()


def test_equal_scores_rank_in_write_order(tmp_path, milvus_at, encoder):
    """Copies of one image score alike: both stores rank them oldest write first (not by id)."""
    dbs, cols = open_pair(milvus_at(), tmp_path)
    base = stored_records(encoder, [("x", "red silk evening dress")])[0]
    copies = [StoredRecord(rid, {**base.doc, "_id": rid}, base.computed, base.vector, h, h,
                           text_vector=base.text_vector)
              for rid, h in ((r, hashlib.sha256(r.encode()).hexdigest()) for r in ("zz", "mm", "aa"))]
    for col in cols:
        col._store.write(copies[:1])
        col._store.write(copies[1:])
    query = {"color": base.computed["_colors"][0]["color"]}  # (text scores of copies may differ in the last bit)
    assert ids(cols[0].search(query)) == ids(cols[1].search(query)) == ["zz", "mm", "aa"]
    for db in dbs:
        db.close()


def test_a_scan_left_by_duplicates_is_not_reused_after_a_write(milvus_at, encoder):
    """`duplicates` reads postings without a search; a colour query after a write elsewhere
    (another collection object of the process) still sees the new record."""
    with lookalike.connect(milvus_at("d")) as db:
        one = db.collection("c", create=True, model="none", dim=DIM, text_fields=["title"])
        other = db.collection("c")
        other._store.write(stored_records(encoder, [("a", TITLES[0]), ("b", TITLES[1])], seed=1))
        assert one.duplicates()["clusters"] == []
        red = stored_records(encoder, [("red", "x")], seed=2)[0]
        red.computed = {"_colors": [{"color": "#c82828", "weight": 1.0}]}
        other._store.write([red])
        assert ids(one.search({"color": "#c82828"}, k=1)) == ["red"]


def test_text_vectors_persist_and_go_with_the_collection(milvus_at, encoder):
    path = milvus_at("p")
    with lookalike.connect(path) as db:
        col = db.collection("my-col_1", create=True, model="none", dim=DIM, text_fields=["title"])
        col._store.write(stored_records(encoder, [("a", TITLES[0]), ("b", TITLES[2])]))
        assert db.store.text_dim("my-col_1") == 384
        assert text_collection_name("my-col_1") == "lk_my_dcol__1_text"
        # a text vector of another width is refused and nothing is written
        bad = stored_records(encoder, [("c", "x")])[0]
        bad.text_vector = np.ones(5, dtype=np.float32)
        with pytest.raises(BadRequest, match="384"):
            col._store.write([bad])
        assert col.count() == 2
    with lookalike.connect(path) as db:  # nothing kept in memory: a new process sees the same
        assert ids(db.collection("my-col_1").search({"text": "coffee"}, k=1)) == ["b"]
        db.drop("my-col_1")
        assert not db.store.client.has_collection(text_collection_name("my-col_1"))
        col = db.collection("my-col_1", create=True, model="none", dim=DIM, text_fields=["title"])
        col._store.write(stored_records(encoder, [("z", TITLES[1])], text=False))
        with pytest.raises(BadRequest, match="no text vectors"):
            col.search({"id": "z"}, hybrid=0.5)
        assert col.search({"text": "dress"})["hits"] == []  # records without text are never text hits
        with pytest.raises(LookalikeError, match="scan"):
            col._store.search(SearchRequest(vector=np.zeros(DIM, np.float32), slot_scores=np.ones(1)))


def test_drawn_images_end_to_end(tmp_path, milvus_at):
    """Upserts of drawn images (default model, colours and text computed at ingest) search alike."""
    items = [("dots", "red"), ("stripes", "blue"), ("checks", "green"), ("dots", "orange"), ("rings", "blue")]
    records = [{"_id": f"{p}-{c}", "title": f"{c} {p} pattern", "_base64": base64.b64encode(
        encode(draw_item(p, SAMPLE_COLORS[c], seed=i))).decode()} for i, (p, c) in enumerate(items)]
    with lookalike.connect(milvus_at("img")) as milvus, lookalike.connect(tmp_path / "emb") as embedded:
        cols = [db.collection("imgs", create=True, text_fields=["title"]) for db in (milvus, embedded)]
        for col in cols:
            assert [r["status"] for r in col.upsert(records)] == ["inserted"] * len(items)
        for query, kwargs in [({"color": "#2846c8"}, {}), ({"color": "#c82828"}, {"filter": {"title": {"$ne": "x"}}}),
                              ({"text": "green checks"}, {}), ({"id": "dots-red"}, {"text": "stripes"})]:
            a, b = cols[0].search(query, k=5, **kwargs), cols[1].search(query, k=5, **kwargs)
            same(a, b)
        assert ids(cols[0].search({"color": "#2846c8"}, k=2))[0].endswith("blue")
        # near-duplicates read the same columnar fields: a re-encoded copy is found by both stores
        copy = base64.b64encode(encode(draw_item("dots", SAMPLE_COLORS["red"], seed=0), quality=60)).decode()
        for col in cols:
            col.upsert([{"_id": "copy", "title": "a copy", "_base64": copy}])
        a, b = cols[0].match({"id": "dots-red"}), cols[1].match({"id": "dots-red"})
        assert ids(a) == ids(b) == ["copy"]
        assert cols[0].duplicates()["clusters"] == cols[1].duplicates()["clusters"] == [["copy", "dots-red"]]


def test_backup_from_milvus_restores_text_search_into_embedded(pair, tmp_path):
    """A backup keeps text vectors, so a Milvus collection moves to the embedded store with text search intact."""
    from lookalike.store.backup import backup, restore
    milvus_col, embedded_col = pair

    class Db:  # backup() needs only the database's store: the pair fixture keeps its databases
        store = milvus_col._store._store
    info = backup(Db(), "shop", tmp_path / "shop.lab")
    assert info["records"] == len(TITLES)
    with lookalike.connect(tmp_path / "moved") as db:
        restore(db, tmp_path / "shop.lab")
        moved = db.collection("shop")
        for search in SEARCHES[:3]:
            same(moved.search(**search), embedded_col.search(**search))
