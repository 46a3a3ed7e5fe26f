"""Searches by stored ids leave their anchors out and rank the rest exactly as a search by the
same vector does: same hits, same order, ties to the record written first, filters, offsets,
several anchors and negative anchors (store/embedded/search.py searches for as many more hits
as it leaves out, over the cached filter mask)."""
from __future__ import annotations

import numpy as np
import pytest

import lookalike

DIM = 8


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


@pytest.fixture
def col(tmp_path):
    """300 records in 60 groups of 5 identical vectors (every score is tied five ways)."""
    rng = np.random.default_rng(3)
    base = unit(rng.standard_normal((60, DIM)))
    vectors = np.repeat(base, 5, axis=0)
    db = lookalike.connect(tmp_path)
    col = db.collection("c", create=True, model="none", dim=DIM, index={"type": "exact"})
    col.upsert([{"_id": f"r{i}", "_vector": v.tolist(), "odd": i % 2 == 1, "n": i} for i, v in enumerate(vectors)])
    yield col, vectors
    db.close()


def expected(vectors: np.ndarray, query: np.ndarray, k: int, *, leave_out=(), keep=None, offset: int = 0):
    """Ids by score, ties to the lower slot (write order), without `leave_out`, only `keep` ones."""
    scores = vectors @ query.astype(np.float32)
    order = sorted(range(len(vectors)), key=lambda i: (-scores[i], i))
    out = [i for i in order if i not in leave_out and (keep is None or keep(i))]
    return [f"r{i}" for i in out[offset:offset + k]]


@pytest.mark.parametrize("filter_, keep", [(None, None), ({"odd": True}, lambda i: i % 2 == 1),
                                           ({"n": {"$lt": 40}}, lambda i: i < 40)])
@pytest.mark.parametrize("offset", [0, 3])
def test_id_search_ranks_the_rest_with_ties_in_write_order(col, filter_, keep, offset):
    col, vectors = col
    for anchor in (0, 2, 7, 151, 299):
        hits = col.search({"id": f"r{anchor}"}, k=8, offset=offset, filter=filter_)["hits"]
        assert [h["_id"] for h in hits] == expected(vectors, vectors[anchor], 8, leave_out={anchor}, keep=keep,
                                                    offset=offset)
        by_vector = col.search({"vector": vectors[anchor].tolist()}, k=9 + offset, filter=filter_)["hits"]
        same = [h for h in by_vector if h["_id"] != f"r{anchor}"][offset:offset + 8]
        assert hits == same  # scores and documents too


def test_several_anchors_and_negatives_are_all_left_out(col):
    col, vectors = col
    query = {"ids": ["r0", "r1", "r5"]}
    hits = col.search(query, k=12, negative=[{"id": "r3"}])["hits"]
    q = np.mean(vectors[[0, 1, 5]], axis=0) - 0.5 * vectors[3]
    want = expected(vectors, q, 12, leave_out={0, 1, 5, 3})
    assert [h["_id"] for h in hits] == want
    assert all(h["_id"] not in {"r0", "r1", "r3", "r5"} for h in hits)


def test_id_search_when_fewer_records_than_k_remain(col):
    col, vectors = col
    hits = col.search({"id": "r1"}, k=50, filter={"n": {"$lt": 4}})["hits"]
    assert [h["_id"] for h in hits] == expected(vectors, vectors[1], 50, leave_out={1}, keep=lambda i: i < 4)
    assert len(hits) == 3


def test_id_search_on_the_graph_leaves_the_anchor_out(tmp_path):
    """Through the HNSW index: the anchor never comes back, k hits come back, and they are
    (on well separated data) the exact best ones."""
    rng = np.random.default_rng(4)
    vectors = unit(rng.standard_normal((2000, DIM)))
    db = lookalike.connect(tmp_path)
    col = db.collection("g", create=True, model="none", dim=DIM, index={"type": "hnsw", "threshold": 100})
    col.upsert([{"_id": f"r{i}", "_vector": v.tolist(), "odd": i % 2 == 1} for i, v in enumerate(vectors)])
    col._store.wait_index()
    assert col.info()["index"]["active"] == "hnsw"
    for anchor in range(0, 2000, 97):
        for filter_, keep in ((None, None), ({"odd": True}, lambda i: i % 2 == 1)):
            hits = [h["_id"] for h in col.search({"id": f"r{anchor}"}, k=10, filter=filter_)["hits"]]
            want = expected(vectors, vectors[anchor], 10, leave_out={anchor}, keep=keep)
            assert f"r{anchor}" not in hits and len(hits) == 10
            assert len(set(hits) & set(want)) >= 9
    db.close()
