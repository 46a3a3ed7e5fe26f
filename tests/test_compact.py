"""Compaction: reachable from the Python API (and the CLI and HTTP), reclaims dead rows, keeps every answer."""
from __future__ import annotations

import json

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


def test_compact_from_the_command_line(tmp_path, capsys):
    from lookalike.cli import main
    with lookalike.connect(tmp_path) as db:
        _fill(db.collection("c", create=True, model="none", dim=8), _vectors(12))
    assert main(["compact", "-c", "c", "--data", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["collection"] == "c" and out["count"] == 10 and out["bytes"] < out["bytes_before"]
    with lookalike.connect(tmp_path) as db:
        assert db.collection("c")._store.stats()["slots"] == 10


def test_compact_over_http_needs_the_admin_key(tmp_path):
    from fastapi.testclient import TestClient

    from lookalike.server import create_app
    admin, search = "a" * 24, "s" * 24
    with lookalike.connect(tmp_path, allow_file=False) as db:
        _fill(db.collection("c", create=True, model="none", dim=8), _vectors(12))
        client = TestClient(create_app(db, admin_key=admin, search_key=search))
        refused = client.post("/v1/collections/c/compact", headers={"Authorization": f"Bearer {search}"})
        assert refused.status_code == 403 and db.collection("c")._store.stats()["slots"] == 16
        answer = client.post("/v1/collections/c/compact", headers={"Authorization": f"Bearer {admin}"})
        assert answer.status_code == 200
        assert answer.json()["count"] == 10 and db.collection("c")._store.stats()["slots"] == 10
        missing = client.post("/v1/collections/nope/compact", headers={"Authorization": f"Bearer {admin}"})
        assert missing.status_code == 404
