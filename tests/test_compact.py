"""Compaction: reachable from the Python API (and the CLI and HTTP), reclaims dead rows, keeps every answer."""
from __future__ import annotations

import numpy as np
import pytest

import lookalike
from lookalike.errors import NotImplementedYet


def _vectors(n: int, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(3).normal(size=(n, dim)).astype(np.float32)


def _fill(col, vecs: np.ndarray) -> None:
    col.upsert([{"_id": f"r{i}", "_vector": v.tolist(), "n": i} for i, v in enumerate(vecs)])
    col.upsert([{"_id": f"r{i}", "_vector": (v * -1).tolist(), "n": i} for i, v in enumerate(vecs[:4])])  # replaced
    assert col.delete(["r5", "r6"]) == 2


def test_compact_reclaims_dead_rows_and_keeps_every_answer(tmp_path):
    vecs = _vectors(12)
    with lookalike.connect(tmp_path) as db:
        col = db.collection("c", create=True, model="none", dim=8)
        _fill(col, vecs)
        assert col.info()["count"] == 10 and col._store.stats()["slots"] == 16  # 4 replaced + 2 deleted rows
        queries = [{"vector": v.tolist()} for v in vecs[:6]]
        before = [col.search(q, k=5, filter={"n": {"$gte": 2}}) for q in queries]
        result = col.compact()
        assert result["collection"] == "c" and result["count"] == 10
        assert col._store.stats()["slots"] == 10 and result["bytes"] < result["bytes_before"]
        after = [col.search(q, k=5, filter={"n": {"$gte": 2}}) for q in queries]
        for a, b in zip(before, after):
            assert [(h["_id"], h["_score"]) for h in a["hits"]] == [(h["_id"], h["_score"]) for h in b["hits"]]
    with lookalike.connect(tmp_path) as db:  # the compacted generation is what opens next time
        col = db.collection("c")
        assert col.count() == 10 and col._store.stats()["slots"] == 10
        assert col.get("r0")["n"] == 0


def test_compact_is_refused_by_a_store_without_compaction(tmp_path):
    pytest.importorskip("milvus_lite")
    with lookalike.connect(str(tmp_path / "m.db")) as db:
        col = db.collection("c", create=True, model="none", dim=8)
        col.upsert([{"_id": "a", "_vector": [1.0] * 8}])
        with pytest.raises(NotImplementedYet, match="compaction"):
            col.compact()
