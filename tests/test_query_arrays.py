"""NumPy arrays as `vector` / `vectors` queries (Python API, query/arrays.py): the hits of the
same numbers as lists, key for key, on the short and the general path; the list's errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import lookalike
import lookalike.collection as collection_module
from lookalike.errors import BadRequest, LookalikeError

DIM = 8


@pytest.fixture(scope="module")
def cols(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("arrays"))
    rng = np.random.default_rng(4)
    made = {}
    for name, metric, index in (("cos", "cosine", {"type": "exact"}), ("dot", "dot", {"type": "exact"}),
                                ("ann", "cosine", {"type": "hnsw", "threshold": 50, "filter_threshold": 20})):
        col = db.collection(name, create=True, model="none", dim=DIM, metric=metric, index=index)
        col.upsert([{"_id": f"r{i}", "_vector": rng.standard_normal(DIM).tolist(), "tag": "abc"[i % 3]}
                    for i in range(200)])
        col._store.wait_index()
        made[name] = col
    yield made
    db.close()


def answer(col, query, **kwargs):
    try:
        return json.dumps(col.search(query, **kwargs)["hits"])
    except LookalikeError as exc:
        return type(exc).__name__, str(exc)


def both_paths(col, query, monkeypatch, **kwargs):
    """(short path's answer, general path's answer)."""
    fast = answer(col, query, **kwargs)
    with monkeypatch.context() as m:
        m.setattr(collection_module, "quick_search", lambda *a, **kw: None)
        slow = answer(col, query, **kwargs)
    return fast, slow


@pytest.mark.parametrize("name", ["cos", "dot", "ann"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_array_hits_are_the_lists_hits(cols, monkeypatch, name, dtype):
    col = cols[name]
    rng = np.random.default_rng(7)
    for kwargs in ({}, {"k": 3, "offset": 2}, {"filter": {"tag": "b"}}, {"fields": ["tag"]}):
        for _ in range(4):
            vec = rng.standard_normal(DIM).astype(dtype)
            as_list = answer(col, {"vector": vec.tolist()}, **kwargs)
            assert isinstance(as_list, str) and json.loads(as_list), as_list
            fast, slow = both_paths(col, {"vector": vec}, monkeypatch, **kwargs)
            assert fast == slow == as_list
    # a strided view of a wider array, a read-only one
    wide = rng.standard_normal(2 * DIM).astype(dtype)
    view = wide[::2]
    assert answer(col, {"vector": view}) == answer(col, {"vector": view.tolist()})
    view = np.array(view)
    view.flags.writeable = False
    assert answer(col, {"vector": view}) == answer(col, {"vector": view.tolist()})


@pytest.mark.parametrize("name", ["cos", "ann"])
def test_array_batch_is_the_lists_batch(cols, name):
    col = cols[name]
    rows = np.random.default_rng(8).standard_normal((6, DIM))
    for kwargs in ({}, {"filter": {"tag": "c"}, "k": 4}):
        as_lists = col.search({"vectors": rows.tolist()}, **kwargs)["hits"]
        assert all(as_lists)
        for given in (rows, rows.astype(np.float32), [rows[0], rows[1].tolist(), *rows[2:]]):
            assert col.search({"vectors": given}, **kwargs)["hits"] == as_lists
        single = [col.search({"vector": row}, **kwargs)["hits"] for row in rows]
        assert single == as_lists


def test_the_callers_array_is_left_alone(cols):
    col = cols["cos"]
    vec = np.arange(1, DIM + 1, dtype=np.float32)
    before = vec.copy()
    col.search({"vector": vec})
    col.search({"vectors": vec[None]})
    assert np.array_equal(vec, before)


BAD = [np.array([math.nan] + [1.0] * (DIM - 1)), np.array([math.inf] * DIM), np.zeros(DIM), np.ones(DIM + 1),
       np.ones(DIM - 1, dtype=np.float32), np.array([1e300] * DIM), np.array([1e30] * DIM, dtype=np.float32),
       np.array([], dtype=np.float64), np.array([1e-300] * DIM)]


@pytest.mark.parametrize("vec", BAD, ids=range(len(BAD)))
def test_bad_arrays_raise_the_lists_errors(cols, monkeypatch, vec):
    col = cols["cos"]
    as_list = answer(col, {"vector": vec.tolist()})
    assert isinstance(as_list, tuple) and as_list[0] == "BadRequest", as_list
    fast, slow = both_paths(col, {"vector": vec}, monkeypatch)
    assert fast == slow == as_list
    rows = np.stack([np.ones(len(vec)), vec]) if len(vec) else np.ones((2, 0))
    got = answer(col, {"vectors": rows})
    assert got[0] == "BadRequest" and got == answer(col, {"vectors": rows.tolist()}), got


@pytest.mark.parametrize("value, words", [
    (np.arange(DIM), "float32 or float64, not int64"), (np.ones(DIM, dtype=bool), "float32 or float64, not bool"),
    (np.ones(DIM, dtype=np.float16), "float32 or float64, not float16"),
    (np.ones((1, DIM)), "one vector (1-D), not of shape (1, 8)"), (np.array(1.0), "not of shape ()"),
    (np.ones(DIM, dtype=np.complex64), "not complex64")])
def test_arrays_of_other_kinds_are_refused(cols, monkeypatch, value, words):
    col = cols["cos"]
    fast, slow = both_paths(col, {"vector": value}, monkeypatch)
    assert fast == slow and fast[0] == "BadRequest" and words in fast[1], fast
    assert fast[1].startswith("'vector' as a NumPy array must be")
    with pytest.raises(BadRequest, match="'vectors' as a NumPy array must be"):
        col.search({"vectors": np.ones(DIM)})
    with pytest.raises(BadRequest, match="non-empty"):
        col.search({"vectors": np.ones((0, DIM))})
    with pytest.raises(BadRequest, match=r"'vectors'\[1\] contains NaN"):
        col.search({"vectors": [np.ones(DIM), np.full(DIM, math.nan)]})


def test_unit_vectors_are_l2_normalize_bit_for_bit():
    """`query_vector(..., unit=True)` of an array: l2_normalize of the list's parse, every bit,
    at any scale (its own sum decides only clear of the limits; near one, the list's check)."""
    from lookalike.models import l2_normalize
    from lookalike.query.arrays import query_vector
    from lookalike.records import parse_vector
    rng = np.random.default_rng(11)
    for scale in (1.0, 1e-3, 1e3, 1e-11, 1.0049e-12 / math.sqrt(DIM), 1e17, 0.99e18 / math.sqrt(DIM)):
        for dtype in (np.float32, np.float64):
            vec = (rng.standard_normal(DIM) * scale).astype(dtype)
            if not 1e-12 <= float(np.linalg.norm(vec.astype(np.float32).astype(np.float64))) <= 1e18:
                continue
            want = l2_normalize(parse_vector(vec.tolist(), DIM))
            got = query_vector(vec, DIM, unit=True)
            assert got.dtype == np.float32 and got.tobytes() == want.tobytes(), (scale, dtype)
            assert query_vector(vec, DIM).tobytes() == parse_vector(vec.tolist(), DIM).tobytes()
