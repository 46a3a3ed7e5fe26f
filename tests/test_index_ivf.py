"""The IVF index (`index.type: "ivf"`): recall against exact search, filters, files, settings.

5000 x 32-d clustered vectors with a low `threshold`, so queries go through the inverted
lists (int8 codes, re-scored with float32) in a second or two; exact NumPy search over the
same vectors is the reference.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lookalike
from lookalike.errors import BadRequest
from lookalike.index.ann import ivf_lists
from lookalike.index.planning import IVF_MIN_MATCHES

N, DIM, K = 5000, 32, 10
IVF = {"type": "ivf", "threshold": 500, "filter_threshold": 200}


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((40, DIM))
    x = centers[rng.integers(0, 40, n)] + 0.7 * rng.standard_normal((n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


VECTORS = clustered(N)
QUERIES = clustered(40, seed=7)
IDS = np.arange(N)


def records(vectors: np.ndarray, start: int = 0) -> list[dict]:
    return [{"_id": f"r{start + i}", "_vector": v.tolist(), "c": (start + i) % 10,
             "half": (start + i) % 2 == 0} for i, v in enumerate(vectors)]


def make(db, name: str = "v", index: dict | None = None, **settings):
    col = db.collection(name, create=True, model="none", dim=DIM, index={**IVF, **(index or {})},
                        compression=settings.pop("compression", {"dtype": "i8"}), **settings)
    col.upsert(records(VECTORS), batch_size=1000)
    col._store.wait_index()
    return col


def exact_ids(query: np.ndarray, k: int, mask: np.ndarray | None = None) -> list[str]:
    scores = VECTORS @ query
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    order = np.argsort(-scores, kind="stable")[:k]
    return [f"r{i}" for i in order if np.isfinite(scores[i])]


def search_ids(col, query: np.ndarray, k: int = K, **kw) -> list[str]:
    return [h["_id"] for h in col.search({"vector": query.tolist()}, k=k, **kw)["hits"]]


def recall(col, mask=None, **kw) -> float:
    got = [len(set(search_ids(col, q, **kw)) & set(exact_ids(q, K, mask))) / K for q in QUERIES]
    return float(np.mean(got))


def index_files(data_dir: Path, suffix: str) -> list[Path]:
    return sorted((data_dir / "index").glob(f"*.{suffix}"))


def test_ivf_recall_against_exact_and_plan(db):
    col = make(db)
    info = col.info()["index"]
    assert info["active"] == "ivf" and info["indexed_rows"] == N
    # 4 sqrt(n) capped by the training sample; built while the batches came in, it is rebuilt
    # whenever the collection deserves twice the lists, so it ends with at least half of them
    assert ivf_lists(N, None) / 2 < info["lists"] <= ivf_lists(N, None)
    # codes + ids (~1.3x the int8 bytes at 32-d: the 8-byte id weighs more on short vectors) + centroids
    assert N * (DIM + 8) <= info["memory_bytes"] < N * (DIM + 8) * 1.3
    assert recall(col) >= 0.95
    plan = col._store._index.last_plan()
    # nprobe 32, or enough lists to scan IVF_MIN_MATCHES codes (lists hold N / lists codes)
    width = max(32, -(-IVF_MIN_MATCHES * info["lists"] // N))
    assert plan.kind == "ivf" and plan.widths == [width] and plan.pool == 2 * K and not plan.filtered
    # scores are exact float32 inner products, whatever the codes
    hit = col.search({"vector": QUERIES[0].tolist()}, k=1)["hits"][0]
    assert hit["_score"] == pytest.approx(float(VECTORS[int(hit["_id"][1:])] @ QUERIES[0]), abs=1e-5)


def test_filtered_queries_return_k_matching_hits(db):
    col = make(db)
    assert recall(col, IDS % 2 == 0, filter={"half": True}) >= 0.95
    for q in QUERIES[:5]:
        hits = col.search({"vector": q.tolist()}, k=50, filter={"half": True})["hits"]
        assert len(hits) == 50 and all(h["half"] for h in hits)
    plan = col._store._index.last_plan()
    assert plan.kind == "ivf" and plan.filtered and plan.widths[0] > 32  # nprobe widened for the filter
    index = col._store._index  # a rare filter whose lists would hold 10x more codes than matches: exact
    assert not index.uses_ann(210) and index.uses_ann(2500)
    # 1000 matches (above filter_threshold): through the lists; ask for all of them
    hits = col.search({"vector": QUERIES[1].tolist()}, k=1000, filter={"c": {"$in": [1, 2]}})["hits"]
    assert len(hits) == 1000 and {h["c"] for h in hits} == {1, 2}


def test_narrow_nprobe_widens_until_k_hits(db):
    col = make(db, index={"nprobe": 1, "filter_threshold": 10})
    for q in QUERIES[:5]:  # 500 matches spread over all lists; one list rarely holds 20 of them
        hits = col.search({"vector": q.tolist()}, k=K, filter={"c": 3})["hits"]
        assert len(hits) == K and all(h["c"] == 3 for h in hits)
    assert len(col._store._index.last_plan().widths) >= 1


def test_deletes_and_updates_never_come_back(db, data_dir):
    col = make(db)
    gone = [f"r{i}" for i in range(0, N, 3)]
    assert col.delete(gone) == len(gone)
    col.upsert([{"_id": "r1", "_vector": (-VECTORS[1]).tolist()}])  # moved far away
    for q in [VECTORS[0], VECTORS[3], VECTORS[1], *QUERIES[:5]]:
        assert not set(search_ids(col, q, k=30)) & set(gone)
    assert "r1" not in search_ids(col, VECTORS[1], k=30)
    db.close()
    with lookalike.connect(data_dir) as again:
        col = again.collection("v")
        assert col.info()["index"]["active"] == "ivf"
        for q in [VECTORS[0], VECTORS[3], *QUERIES[:5]]:
            assert not set(search_ids(col, q, k=30)) & set(gone)


def test_index_reloaded_then_rebuilt_after_its_file_is_deleted(db, data_dir):
    col = make(db)
    before = [search_ids(col, q) for q in QUERIES[:10]]
    db.close()
    with lookalike.connect(data_dir) as again:  # reloaded as saved: same answers
        col = again.collection("v")
        assert col.info()["index"]["indexed_rows"] == N
        assert [search_ids(col, q) for q in QUERIES[:10]] == before
    files = index_files(data_dir, "faiss")
    assert len(files) == 1
    files[0].unlink()
    with lookalike.connect(data_dir) as again:
        col = again.collection("v")
        info = col.info()["index"]
        assert info["active"] == "ivf" and info["indexed_rows"] == N
        assert recall(col) >= 0.95
    assert index_files(data_dir, "faiss")  # saved again


@pytest.mark.parametrize("damage", ["garbage", "meta_nlist"])
def test_damaged_index_is_rebuilt_not_trusted(db, data_dir, damage):
    col = make(db)
    db.close()
    graph, meta = index_files(data_dir, "faiss")[0], index_files(data_dir, "json")[0]
    if damage == "garbage":
        graph.write_bytes(b"\0" * 5000)
    else:
        meta.write_text(meta.read_text().replace('"nlist": null', '"nlist": 7'))
    with lookalike.connect(data_dir) as again:
        col = again.collection("v")
        assert col.info()["index"]["indexed_rows"] == N
        assert recall(col) >= 0.95


def test_rows_added_after_the_build_are_found(db):
    col = make(db)
    extra = clustered(300, seed=3)
    col.upsert(records(extra, start=N), batch_size=300)
    assert col.info()["index"]["indexed_rows"] == N + 300
    for i in (0, 150, 299):
        assert search_ids(col, extra[i], k=1) == [f"r{N + i}"]


def test_small_collection_gets_more_lists_as_it_grows(db):
    col = db.collection("g", create=True, model="none", dim=DIM, index={**IVF, "threshold": 0},
                        compression={"dtype": "i8"})
    col.upsert(records(VECTORS[:200]), batch_size=200)
    small = col.info()["index"]["lists"]
    assert small == ivf_lists(200, None)  # few lists: 30 training points each
    col.upsert(records(VECTORS[200:2000], start=200), batch_size=1800)
    col._store.wait_index()
    assert col.info()["index"]["lists"] >= 2 * small
    assert col.info()["index"]["indexed_rows"] == 2000
    assert search_ids(col, VECTORS[1500], k=1) == ["r1500"]


def test_switching_between_hnsw_and_ivf_keeps_the_data(db):
    col = make(db)
    db.ensure_collection("v", index={"type": "hnsw"})
    col._store.wait_index()
    assert col.info()["index"]["active"] == "hnsw" and recall(col) >= 0.95
    db.ensure_collection("v", index={"type": "ivf", "nlist": 50, "nprobe": 8})
    col._store.wait_index()
    info = col.info()["index"]
    assert info["active"] == "ivf" and info["lists"] == 50 and info["nprobe"] == 8
    assert recall(col) >= 0.9
    assert col.count() == N


BAD_SETTINGS = [
    ({"index": {"type": "ivf", "nlist": 0}}, "nlist"),
    ({"index": {"type": "ivf", "nlist": "many"}}, "nlist"),
    ({"index": {"nprobe": 0}}, "nprobe"),
    ({"index": {"nprobe": 1.5}}, "nprobe"),
    ({"index": {"nprobe": True}}, "nprobe"),
    ({"index": {"type": "IVF"}}, "unknown index type"),
]


def test_bad_ivf_settings_are_refused_and_change_nothing(db):
    col = make(db)
    before = col.info()
    for settings, message in BAD_SETTINGS:
        with pytest.raises(BadRequest, match=message):
            db.ensure_collection("v", **settings)
        with pytest.raises(BadRequest, match=message):
            db.ensure_collection("fresh", model="none", dim=DIM, **settings)
    assert col.info() == before
    assert "fresh" not in [c["name"] for c in db.collections()]
    assert search_ids(col, VECTORS[7], k=1) == ["r7"]
