"""Where `auto` stops scanning exactly: by dimension unless the collection's `threshold` is set.

256-d clustered vectors around the automatic threshold (5 056 rows at 256-d): exact at it,
the HNSW graph one write past it, with recall against NumPy's exact top 10 at least the
calibrated target; a `threshold` the user sets wins either way.
"""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.index.settings import EXACT_MIN_ROWS, INDEX_DEFAULTS, exact_threshold, normalize_index

DIM, K = 256, 10
AUTO = exact_threshold(normalize_index({}), DIM)


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 40 fixed centres with uneven spread (queries: another seed, same law)."""
    centers = np.random.default_rng(99).standard_normal((40, DIM))
    spread = np.random.default_rng(98).uniform(0.4, 1.0, 40)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, 40, n)
    x = centers[which] + spread[which, None] * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


ROWS = clustered(AUTO + 300, seed=0)
QUERIES = clustered(60, seed=1)


def write(col, start: int, end: int) -> None:
    col.upsert([{"_id": f"r{i}", "_vector": ROWS[i].tolist()} for i in range(start, end)], batch_size=2000)
    col._store.wait_index()


def hits(col, q: np.ndarray) -> list[int]:
    return [int(h["_id"][1:]) for h in col.search({"vector": q.tolist()}, k=K)["hits"]]


def recall(col, rows: int) -> float:
    """Mean recall@10 of `col` over QUERIES against exact search over its first `rows` rows."""
    truth = np.argsort(-(QUERIES @ ROWS[:rows].T), axis=1, kind="stable")[:, :K]
    return float(np.mean([len(set(hits(col, q)) & set(t.tolist())) / K for q, t in zip(QUERIES, truth)]))


def test_automatic_threshold_by_dimension():
    """Null by default: chosen by dimension, under the fixed 20 000 it replaced, never below
    EXACT_MIN_ROWS; a value the user sets is used as given, 0 and huge ones included."""
    assert INDEX_DEFAULTS["threshold"] is None
    auto = {d: exact_threshold(normalize_index({}), d) for d in (2, 8, 64, 128, 256, 512, 1280, 4096)}
    assert auto[256] == 5056 and auto[64] == 10975 and auto[1280] == 1304  # as docs/index.md says
    assert auto[2] < 20_000 and auto[4096] == EXACT_MIN_ROWS
    assert list(auto.values()) == sorted(auto.values(), reverse=True)  # wider rows: a graph sooner
    for given in (0, 100, 20_000, 10**9):
        assert exact_threshold(normalize_index({"threshold": given}), 256) == given


def test_auto_goes_from_exact_to_graph_past_the_threshold_at_256d(db):
    col = db.collection("v", create=True, model="none", dim=DIM)  # index: all defaults
    write(col, 0, AUTO)
    info = col.info()["index"]
    assert info["threshold"] is None and info["exact_threshold"] == AUTO and info["active"] == "exact"
    index = col._store._index
    truth = np.argsort(-(QUERIES[:10] @ ROWS[:AUTO].T), axis=1, kind="stable")[:, :K]
    for q, t in zip(QUERIES[:10], truth):
        assert hits(col, q) == t.tolist()  # exact: the very top 10, in order
        assert index.last_plan().kind == "exact"

    write(col, AUTO, AUTO + 300)  # one write past the threshold: the graph is built (inline)
    info = col.info()["index"]
    assert info["active"] == "hnsw" and info["indexed_rows"] == AUTO + 300
    calibration = info["calibration"]
    assert calibration is not None and calibration["target"] == INDEX_DEFAULTS["target_recall"]
    assert info["measured_recall"] >= calibration["target"]
    got = recall(col, AUTO + 300)
    assert index.last_plan().kind == "hnsw"
    assert got >= calibration["target"], got  # on queries the calibration never saw


def test_user_threshold_wins_over_the_automatic_one(db):
    col = db.collection("v", create=True, model="none", dim=DIM, index={"threshold": 20_000})
    write(col, 0, AUTO + 300)  # past the automatic threshold, under the user's
    info = col.info()["index"]
    assert info["threshold"] == info["exact_threshold"] == 20_000 and info["active"] == "exact"
    assert recall(col, AUTO + 300) == 1.0 and col._store._index.last_plan().kind == "exact"

    db.ensure_collection("v", index={"threshold": None})  # back to automatic: past it, a graph
    col._store.wait_index()
    info = col.info()["index"]
    assert info["exact_threshold"] == AUTO and info["active"] == "hnsw"
    assert recall(col, AUTO + 300) >= info["calibration"]["target"]
    assert col._store._index.last_plan().kind == "hnsw"

    db.ensure_collection("v", index={"threshold": 10**6})  # set again: exact at once, graph dropped
    info = col.info()["index"]
    assert info["active"] == "exact" and info["exact_threshold"] == 10**6
    assert recall(col, AUTO + 300) == 1.0


def test_user_threshold_below_the_automatic_one_builds_a_graph(db):
    col = db.collection("v", create=True, model="none", dim=DIM, index={"threshold": 1000})
    write(col, 0, 2000)
    info = col.info()["index"]
    assert info["exact_threshold"] == 1000 < AUTO and info["active"] == "hnsw"
    hits(col, QUERIES[0])
    assert col._store._index.last_plan().kind == "hnsw"


@pytest.mark.parametrize("bad", [-1, "big", 1.5, True])
def test_bad_threshold_is_refused(db, bad):
    from lookalike.errors import BadRequest
    with pytest.raises(BadRequest, match="threshold"):
        db.collection("v", create=True, model="none", dim=DIM, index={"threshold": bad})
