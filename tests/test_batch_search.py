"""Batched queries: `{"vectors": [[...], ...]}` gives, per vector, exactly the hits of
`{"vector": ...}` with the same parameters, from the exact scan, HNSW and IVF alike.
"""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import BadRequest
from lookalike.index.exact import ExactIndex, top_k_many

N, DIM = 3000, 24


def data(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((12, DIM)).astype(np.float32)
    x = centers[rng.integers(0, 12, N)] + 0.6 * rng.standard_normal((N, DIM), dtype=np.float32)
    x[100:140] = x[99]  # exact duplicates: tied scores must break the same way
    q = centers[rng.integers(0, 12, 25)] + 0.6 * rng.standard_normal((25, DIM), dtype=np.float32)
    q[0] = x[99]
    return x, q


VECTORS, QUERIES = data()
INDEXES = {"exact": {"type": "exact"},
           "hnsw": {"type": "hnsw", "threshold": 500, "filter_threshold": 100},
           "ivf": {"type": "ivf", "threshold": 500, "filter_threshold": 100}}
OPTIONS = [{}, {"k": 25}, {"filter": {"p": 3}}, {"filter": {"p": {"$in": [0, 1, 2, 3]}}}, {"k": 7, "offset": 4},
           {"group_by": "t", "k": 3}, {"boost": [{"filter": {"p": 1}, "weight": 0.05}]},
           {"negative": [{"id": "r5"}]}, {"fields": ["t"]}, {"filter": {"p": 99}}]


@pytest.fixture(scope="module")
def collections(tmp_path_factory):
    import lookalike
    db = lookalike.connect(tmp_path_factory.mktemp("batch"))
    out = {}
    for name, index in INDEXES.items():
        col = db.collection(name, create=True, model="none", dim=DIM, index=index)
        col.upsert([{"_id": f"r{i}", "_vector": v.tolist(), "p": i % 7, "t": f"g{i % 5}"}
                    for i, v in enumerate(VECTORS)], batch_size=1000)
        col._store.wait_index()
        assert col.info()["index"]["active"] == name
        out[name] = col
    yield out
    db.close()


@pytest.mark.parametrize("name", list(INDEXES))
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(o) or "plain")
def test_batched_vectors_give_each_single_query_hits(collections, name, options):
    col = collections[name]
    queries = [q.tolist() for q in QUERIES]
    many = col.search({"vectors": queries}, **options)
    single = [col.search({"vector": q}, **options)["hits"] for q in queries]
    assert many["hits"] == single
    assert isinstance(many["took_ms"], float)
    if "filter" not in options or options["filter"] != {"p": 99}:
        assert all(len(hits) > 0 for hits in single)


def test_batched_search_is_one_index_call(collections, monkeypatch):
    """The HNSW path asks FAISS once for the whole batch (not once per vector)."""
    index = collections["hnsw"]._store._index
    calls = []
    real = type(index._ann).search_many

    def counting(self, queries, *args, **kwargs):
        calls.append(len(queries))
        return real(self, queries, *args, **kwargs)
    monkeypatch.setattr(type(index._ann), "search_many", counting)
    collections["hnsw"].search({"vectors": [q.tolist() for q in QUERIES]})
    assert calls == [len(QUERIES)]


def test_top_k_many_equals_the_single_scan_with_ties_and_slots():
    rng = np.random.default_rng(3)
    rows = np.repeat(rng.standard_normal((50, 8)).astype(np.float32), 40, axis=0)  # every row tied 40 times
    queries = rng.standard_normal((9, 8)).astype(np.float32)
    allowed = rng.random(len(rows)) < 0.3
    slots = np.flatnonzero(allowed)
    for k in (1, 10, 57):
        for (got_slots, got_scores), q in zip(top_k_many(rows, queries, k, slots), queries):
            want_slots, want_scores = ExactIndex(rows).search(q, k, allowed)
            assert got_slots.tolist() == want_slots.tolist() and np.array_equal(got_scores, want_scores)
        for (got_slots, got_scores), q in zip(top_k_many(rows, queries, k), queries):
            want_slots, want_scores = ExactIndex(rows).search(q, k, np.ones(len(rows), bool))
            assert got_slots.tolist() == want_slots.tolist() and np.array_equal(got_scores, want_scores)


@pytest.mark.parametrize("query, options, message", [
    ({"vectors": []}, {}, "non-empty list of vectors"),
    ({"vectors": [1.0, 2.0]}, {}, "non-empty list of vectors"),
    ({"vectors": [[0.1] * DIM, [0.1] * 3]}, {}, "3 dimensions"),
    ({"vectors": [[0.1] * DIM, [float("nan")] * DIM]}, {}, "NaN"),
    ({"vectors": [[0.1] * DIM] * 1001}, {}, "number of vectors"),
    ({"vectors": [[0.1] * DIM]}, {"text": "red"}, "takes no 'text'"),
    ({"vector": [0.1] * DIM}, {"negative": [{"vectors": [[0.1] * DIM]}]}, "only works as the main query"),
])
def test_bad_batches_are_refused_by_name(collections, query, options, message):
    with pytest.raises(BadRequest, match=message):
        collections["exact"].search(query, **options)


def test_top_k_breaks_ties_at_the_kth_score_by_position():
    """argpartition keeps an arbitrary few of the scores tied with the k-th; top_k keeps the first."""
    rng = np.random.default_rng(1)
    for _ in range(300):
        scores = rng.integers(0, 20, int(rng.integers(257, 3000))).astype(np.float32)
        k = int(rng.integers(1, 60))
        from lookalike.index.exact import top_k
        assert top_k(scores, k).tolist() == np.lexsort((np.arange(len(scores)), -scores))[:k].tolist()


GOOD = [0.1] * DIM


@pytest.mark.parametrize("bad, message", [
    ([float("nan")] * DIM, r"'vectors'\[2\] contains NaN or infinite values"),
    ([0.1] * 3, r"'vectors'\[2\] has 3 dimensions, the collection expects 24"),
    ([0.0] * DIM, r"'vectors'\[2\] is all zeros"),
    ([1e30] * DIM, r"'vectors'\[2\] is too long"),
    (["0.1"] + [0.1] * (DIM - 1), r"'vectors'\[2\] must contain only numbers"),
    ([True] + [0.1] * (DIM - 1), r"'vectors'\[2\] must contain only numbers"),
    ([10 ** 400] + [0.1] * (DIM - 1), r"'vectors'\[2\] contains a number too large"),
    ([], r"'vectors'\[2\] must be a non-empty list"),
])
def test_a_bad_vector_in_a_batch_is_named_by_its_position(collections, bad, message):
    with pytest.raises(BadRequest, match=message):
        collections["exact"].search({"vectors": [GOOD, GOOD, bad, GOOD]})


@pytest.mark.parametrize("metric", ["cosine", "dot"])
def test_batch_rows_are_bit_for_bit_the_single_query_vectors(db, metric):
    """One NumPy pass over the batch gives exactly the vector each `{"vector": v}` query gets
    (so the same hits and the same scores to the last bit)."""
    col = db.collection(f"rows_{metric}", create=True, model="none", dim=DIM, metric=metric)
    rng = np.random.default_rng(4)
    scales = rng.uniform(1e-3, 1e3, (60, 1))
    values = (rng.standard_normal((60, DIM)) * scales).tolist()
    values[3] = [int(x * 100) for x in values[3]]  # integers mixed in
    rows = col._searcher.vector_rows(values)
    single = [col._searcher.anchor_vector({"vector": v})[0] for v in values]
    assert rows.dtype == np.float32 and all(np.array_equal(r, s) for r, s in zip(rows, single))


@pytest.mark.parametrize("dim", [3, 24, 256, 1280])
def test_rescore_many_is_each_single_rescoring_to_the_bit(dim):
    from lookalike.index.exact import dot, rescore_many, top_k
    rng = np.random.default_rng(dim)
    rows = rng.standard_normal((4000, dim)).astype(np.float32)
    rows[50:90] = rows[49]  # tied candidates: the lower position first, as top_k ranks them
    queries = rng.standard_normal((150, dim)).astype(np.float32)
    cands = rng.integers(0, 4000, (150, 20))
    cands[:, :5] = np.arange(49, 54)
    for k in (1, 10, 20):
        for (slots, scores), cand, q in zip(rescore_many(rows, queries, cands, k), cands, queries):
            single = dot(rows[cand], q)
            best = top_k(single, k)
            assert slots.tolist() == cand[best].tolist() and np.array_equal(scores, single[best])
