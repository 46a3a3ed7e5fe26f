"""The short path of plain searches (query/quick.py) answers exactly as the general path:
the same hits (keys, order, values), and the same error for every bad input."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import lookalike
import lookalike.collection as collection_module
from lookalike.errors import LookalikeError
from lookalike.query import quick

DIM = 8


def records(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rec = {"_id": f"r{i}", "_vector": rng.standard_normal(DIM).round(4).tolist(), "n": i, "tag": "abc"[i % 3],
               "nested": {"x": i % 5, "list": [i, str(i)]}, "name": f"ítem {i} ✓"}
        if i % 7 == 0:
            rec["big"] = 10**22 + i  # past 64 bits: read by json, not orjson
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def cols(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("quick"))
    made = {}
    for name, metric, index in (("cos", "cosine", {"type": "exact"}), ("dot", "dot", {"type": "exact"}),
                                ("ann", "cosine", {"type": "hnsw", "threshold": 50, "filter_threshold": 20})):
        col = db.collection(name, create=True, model="none", dim=DIM, metric=metric, index=index)
        assert {r["status"] for r in col.upsert(records(240, seed=len(made)))} == {"inserted"}
        col.delete(["r5", "r6"])  # deleted slots stay out of both paths
        col._store.wait_index()
        made[name] = col
    yield made
    db.close()


@pytest.fixture()
def general(monkeypatch):
    """A switch: inside `with general():` searches take the general path only."""
    import contextlib

    @contextlib.contextmanager
    def use():
        with monkeypatch.context() as m:
            m.setattr(collection_module, "quick_search", lambda *a, **kw: None)
            yield
    return use


@pytest.fixture()
def taken(monkeypatch):
    """How many searches the short path answered."""
    count = [0]
    real = quick.quick_search

    def counted(*args, **kwargs):
        out = real(*args, **kwargs)
        count[0] += out is not None
        return out
    monkeypatch.setattr(collection_module, "quick_search", counted)
    return count


def answer(col, query, **kwargs):
    """The hits as JSON text (key order included), or the error's type and message."""
    try:
        out = col.search(query, **kwargs)
    except LookalikeError as exc:
        return type(exc).__name__, str(exc)
    assert set(out) == {"hits", "took_ms"}
    return json.dumps(out["hits"], ensure_ascii=False)


def queries(col) -> list[tuple[dict, dict]]:
    rng = np.random.default_rng(3)
    out = []
    for n in range(6):
        vec = rng.standard_normal(DIM).tolist()
        for kwargs in ({}, {"k": 1}, {"k": 25, "offset": 3}, {"filter": {"tag": "a"}},
                       {"filter": {"n": {"$gte": 200}}, "k": 7}, {"filter": {"tag": "zzz"}},
                       {"fields": ["n", "nested.x", "missing", "big"]}, {"k": 1000},
                       {"filter": {"tag": {"$in": ["a", "b"]}}, "offset": 30, "k": 5}):
            out.append(({"vector": vec}, kwargs))
        out.append(({"vector": [int(x * 10) for x in vec]}, {}))  # integers
        out.append(({"id": f"r{n * 17}"}, {"k": 12}))
        out.append(({"id": f"r{n * 17 + 1}"}, {"filter": {"tag": "b"}, "fields": ["tag"]}))
    return out


@pytest.mark.parametrize("name", ["cos", "dot", "ann"])
def test_same_hits_both_paths(cols, general, taken, name):
    col = cols[name]
    cases = queries(col)
    quick_answers = [answer(col, q, **kw) for q, kw in cases]
    assert taken[0] == len(cases)  # every one of them took the short path
    with general():
        general_answers = [answer(col, q, **kw) for q, kw in cases]
    for case, fast, slow in zip(cases, quick_answers, general_answers):
        assert isinstance(fast, str), (case, fast)
        assert fast == slow, case
    hits = json.loads(quick_answers[0])
    assert len(hits) == 10 and list(hits[0])[:2] == ["_id", "_score"]
    assert not any(json.loads(a) == [] for a in quick_answers[:3])  # real hits were compared


BAD = [  # (query, search keyword arguments)
    ({"vector": "abc"}, {}), ({"vector": []}, {}), ({"vector": [1, "a"] + [0] * (DIM - 2)}, {}),
    ({"vector": [math.nan] * DIM}, {}), ({"vector": [1.0] * (DIM + 1)}, {}), ({"vector": [0.0] * DIM}, {}),
    ({"vector": [True] * DIM}, {}), ({"vector": [1e300] * DIM}, {}), ({"vector": [[1.0]] * DIM}, {}),
    ({"vector": [10**400] + [0] * (DIM - 1)}, {}), ({"vector": [math.inf] * DIM}, {}),
    ({"vector": [1.0] * DIM}, {"k": 0}), ({"vector": [1.0] * DIM}, {"k": 1001}), ({"vector": [1.0] * DIM}, {"k": "3"}),
    ({"vector": [1.0] * DIM}, {"k": 2.0}), ({"vector": [1.0] * DIM}, {"k": True}),
    ({"vector": [1.0] * DIM}, {"k": None}),
    ({"vector": [1.0] * DIM}, {"offset": -1}), ({"vector": [1.0] * DIM}, {"offset": "x"}),
    ({"vector": [1.0] * DIM}, {"filter": "x"}), ({"vector": [1.0] * DIM}, {"filter": {"$bad": 1}}),
    ({"vector": [1.0] * DIM}, {"filter": {"n": {"$gt": [1]}}}), ({"vector": [1.0] * DIM}, {"fields": "n"}),
    ({"vector": [1.0] * DIM}, {"fields": [1]}), ({"vector": [1.0] * DIM}, {"negative_weight": -1}),
    ({"vector": [1.0] * DIM}, {"fusion": "bogus"}), ({"vector": [1.0] * DIM}, {"keyword_weight": 2}),
    ({"vector": "abc"}, {"k": 0}), ({"vector": "abc"}, {"filter": {"$bad": 1}}),  # two faults: the first named
    ({"id": "nope"}, {}), ({"id": 5}, {}), ({"id": ""}, {}), ({"id": "r5"}, {}), ({"id": ["r1"]}, {}),
    ({"vector": [1.0] * DIM, "id": "r1"}, {}), ({}, {}), ({"vectr": [1.0]}, {}), ("r1", {}),
]


@pytest.mark.parametrize("query, kwargs", BAD)
def test_same_errors_both_paths(cols, general, query, kwargs):
    col = cols["cos"]
    fast = answer(col, query, **kwargs)
    with general():
        slow = answer(col, query, **kwargs)
    assert fast == slow
    assert isinstance(fast, tuple) and fast[0] in ("BadRequest", "NotFound"), fast
    assert len(fast[1]) > 10  # says what is wrong


def test_batch_hits_as_single_searches(cols):
    """`vectors` builds its hits as the single search does (inline dicts, same keys)."""
    rng = np.random.default_rng(9)
    vecs = rng.standard_normal((12, DIM)).tolist()
    for col in cols.values():
        for kwargs in ({}, {"filter": {"tag": "c"}, "k": 4, "offset": 1}, {"fields": ["name", "nested.list"]}):
            batch = col.search({"vectors": vecs}, **kwargs)["hits"]
            single = [col.search({"vector": v}, **kwargs)["hits"] for v in vecs]
            assert json.dumps(batch, ensure_ascii=False) == json.dumps(single, ensure_ascii=False)
            assert all(hits for hits in batch)


def test_hit_items_as_hit_item():
    """The inline builder gives `hit_item`'s dicts: the hit's `_id` in place of a stored one,
    internal keys left out, key order kept; None when a document is gone."""
    from lookalike.query.search import hit_item, hit_items
    from lookalike.store.base import Hit
    hits = [Hit("a", 0.12345678), Hit("b", -1.0000004), Hit("c", 0.5)]
    docs = [{"_id": "stale", "x": 1, "_fingerprint": "ff", "y": {"z": [1]}},
            {"y": 2, "_keypoints": [1, 2], "_labels": ["cat"]}, {}]
    expected = [hit_item(h.id, h.score, d, None) for h, d in zip(hits, docs)]
    ids, scores = [h.id for h in hits], [h.score for h in hits]
    assert json.dumps(hit_items(ids, scores, docs, None)) == json.dumps(expected)
    assert expected[0] == {"_id": "a", "_score": 0.123457, "x": 1, "y": {"z": [1]}}
    assert list(expected[1]) == ["_id", "_score", "y", "_labels"]
    assert hit_items(ids, scores, docs, ["y.z"]) == [hit_item(h.id, h.score, d, ["y.z"]) for h, d in zip(hits, docs)]
    assert hit_items(ids, scores, [docs[0], None, docs[2]], None) is None


def test_batch_and_single_never_show_a_replaced_document(tmp_path):
    """Documents found by slot (store.search_docs / search_many_docs) follow updates and deletes."""
    db = lookalike.connect(tmp_path)
    try:
        col = db.collection("c", create=True, model="none", dim=DIM)
        recs = records(40, seed=5)
        col.upsert(recs)
        vecs = [recs[i]["_vector"] for i in (3, 4)]
        for _ in range(2):  # the second time from the kept texts
            assert [h[0]["tag"] for h in col.search({"vectors": vecs}, k=1)["hits"]] == ["a", "b"]
        col.update("r3", {"tag": "new"})
        col.delete(["r4"])
        batch = col.search({"vectors": vecs}, k=1)["hits"]
        assert batch[0][0]["_id"] == "r3" and batch[0][0]["tag"] == "new"
        assert batch[1][0]["_id"] != "r4"
        assert col.search({"vector": vecs[0]}, k=1)["hits"] == batch[0]
        assert col.search({"vector": vecs[1]}, k=1)["hits"] == batch[1]
    finally:
        db.close()


def mutate(hits: list[dict]) -> None:
    """Change every hit in every way a caller might: values, keys, nested lists and objects."""
    for hit in hits:
        for key, value in list(hit.items()):
            if isinstance(value, list):
                value.append("x")
            elif isinstance(value, dict):
                value["added"] = 1
                value.pop("x", None)
            else:
                hit[key] = "changed"
        hit.pop("tag", None)
        hit["new"] = [1]


def test_a_changed_hit_never_changes_a_later_result(tmp_path):
    """Flat documents are handed to the hit builder from the cache itself (docs.py `documents`)
    and copied by `get`: changing the hits of a single, a batched or a `fields` search, or the
    documents `get` returned, in any way, leaves every later search and get as it was."""
    db = lookalike.connect(tmp_path)
    try:
        col = db.collection("c", create=True, model="none", dim=DIM)
        recs = records(60, seed=8)
        for i, rec in enumerate(recs):
            if i % 2:  # flat: scalars only
                del rec["nested"]
        col.upsert(recs)
        vecs = [recs[i]["_vector"] for i in range(6)]
        searches = [lambda: col.search({"vector": vecs[0]}, k=20)["hits"],
                    lambda: col.search({"vectors": vecs}, k=8)["hits"],
                    lambda: col.search({"vector": vecs[1]}, k=20, fields=["n", "tag", "nested"])["hits"],
                    lambda: col.search({"id": "r3"}, k=20, filter={"tag": "a"})["hits"],
                    lambda: [col.get(f"r{i}") for i in range(10)],
                    lambda: col._store.get([f"r{i}" for i in range(10)] * 2)]  # the store's own, repeated ids
        for run in searches:
            run()  # every document read once: kept from now on
        kept = col._store._docs.lookup(list(range(60)))
        assert sum(e is not None and e[2] is not None for e in kept) >= 20  # flat ones shared
        assert sum(e is not None and e[2] is None for e in kept) >= 20  # nested ones parsed again
        before = [json.dumps(run()) for run in searches]
        for _ in range(2):
            for run in searches:
                out = run()
                for hits in out if isinstance(out[0], list) else [out]:
                    mutate(hits)
        assert [json.dumps(run()) for run in searches] == before
        assert col.get("r1") == {"_id": "r1", **{k: v for k, v in recs[1].items() if k not in ("_id", "_vector")}}
    finally:
        db.close()


def test_rounded_float32_scores_are_rounds():
    """`rounded` gives float32 scores exactly as `round(score, 6)` does: random bit patterns over
    every exponent, values on and near the halfway points of the sixth decimal, zeros, signs,
    the extremes and non-finite values, compared bit for bit."""
    from lookalike.query.search import rounded
    rng = np.random.default_rng(4)
    bits = rng.integers(0, 2**32, 400_000, dtype=np.uint64).astype(np.uint32)
    values = [bits.view(np.float32)]
    near = rng.uniform(-2, 2, 100_000).round(6) + rng.choice([0.5e-6, -0.5e-6, 0], 100_000)  # ties of the 6th place
    values.append(near.astype(np.float32))
    values.append(np.nextafter(near.astype(np.float32), np.float32(np.inf)))
    values.append(np.array([0.0, -0.0, 1.0, -1.0, 5e-7, -5e-7, 1.5e-6, 2.5e-6, np.finfo(np.float32).max,
                            -np.finfo(np.float32).max, np.finfo(np.float32).tiny, 1e-45, np.inf, -np.inf, np.nan],
                           dtype=np.float32))
    scores = np.concatenate(values)
    got = np.array(rounded(scores), dtype=np.float64)
    want = np.array([round(s, 6) for s in scores.tolist()], dtype=np.float64)
    assert np.array_equal(got.view(np.uint64), want.view(np.uint64))  # bit for bit: -0.0 and NaN too
    assert rounded([0.1234567, 2.0]) == [0.123457, 2.0]  # other sequences round one by one
