"""The embedded store: statuses, reads, deletes, bad input, persistence, crashes."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import lookalike
from lookalike.errors import BadRequest, Conflict, NotFound


def vec(i: int, dim: int = 4) -> list[float]:
    rng = np.random.default_rng(i)
    return rng.normal(size=dim).tolist()


@pytest.fixture
def col(db):
    return db.collection("v", create=True, model="none", dim=4)


def test_upsert_statuses_and_reads(col):
    res = col.upsert([{"_id": "a", "_vector": vec(1), "price": 1}, {"_id": "b", "_vector": vec(2)}])
    assert [r["status"] for r in res] == ["inserted", "inserted"]
    res = col.upsert([{"_id": "a", "_vector": vec(1), "price": 1}, {"_id": "b", "_vector": vec(3)},
                      {"_id": "a", "price": 2}])
    assert [r["status"] for r in res] == ["unchanged", "updated", "updated"]
    assert col.get("a") == {"_id": "a", "price": 2}
    assert col.count() == 2
    # metadata-only update kept the vector: a search by a's original vector still finds it first
    assert col.search({"vector": vec(1)}, k=1)["hits"][0]["_id"] == "a"
    assert col.delete(["a", "zz"]) == 1
    assert col.count() == 1
    with pytest.raises(NotFound, match="record 'a' not found"):
        col.get("a")


@pytest.mark.parametrize("record,needle", [
    ({"_vector": [1, 2, 3, 4]}, "no '_id'"),
    ({"_id": 5, "_vector": [1, 2, 3, 4]}, "'_id' must be a string"),
    ({"_id": "x" * 257, "_vector": [1, 2, 3, 4]}, "1 to 256"),
    ({"_id": "x", "_vector": [1, 2, 3]}, "has 3 dimensions, the collection expects 4"),
    ({"_id": "x", "_vector": [1, 2, float("nan"), 4]}, "NaN or infinite"),
    ({"_id": "x", "_vector": [0, 0, 0, 0]}, "all zeros"),
    ({"_id": "x", "_vector": ["a", 2, 3, 4]}, "only numbers"),
    ({"_id": "x"}, "new and has no image source"),
    ({"_id": "x", "_vector": [1, 2, 3, 4], "_url": "http://x/y.jpg"}, "several image sources"),
    ({"_id": "x", "_vector": [1, 2, 3, 4], "_labels": []}, "computed by the engine"),
    ({"_id": "x", "_vector": [1, 2, 3, 4], "_secret": 1}, "unknown reserved field '_secret'"),
    ({"_id": "x", "_vector": [1, 2, 3, 4], "p": float("inf")}, "NaN or infinite"),
    ({"_id": "x", "_vector": [1, 2, 3, 4], "m": {"a.b": 1}}, "invalid key"),
    ({"_id": "x", "_url": "ftp://host/a.jpg"}, "http:// or https://"),
    ({"_id": "x", "_base64": "%%%"}, "not valid base64"),
    ("not a record", "must be a JSON object"),
])
def test_bad_record_fails_alone(col, record, needle):
    col.upsert([{"_id": "keep", "_vector": vec(9), "n": 1}])
    res = col.upsert([{"_id": "ok1", "_vector": vec(1)}, record, {"_id": "ok2", "_vector": vec(2)}])
    assert [r["status"] for r in res] == ["inserted", "error", "inserted"]
    assert needle in res[1]["error"]
    assert col.count() == 3 and col.get("keep") == {"_id": "keep", "n": 1}
    assert "x" not in {h["_id"] for h in col.search({"vector": vec(1)}, k=10)["hits"]}


def test_image_sources_in_model_none_collection_are_refused(col):
    res = col.upsert([{"_id": "x", "_base64": "aGVsbG8="}])
    assert res[0]["status"] == "error" and "model 'none'" in res[0]["error"]


def test_collection_settings(db):
    with pytest.raises(BadRequest, match="invalid collection name"):
        db.collection("Bad Name", create=True, model="none", dim=2)
    with pytest.raises(BadRequest, match="needs 'dim'"):
        db.collection("x", create=True, model="none")
    with pytest.raises(BadRequest, match="unknown model"):
        db.collection("x", create=True, model="resnet9000")
    with pytest.raises(NotFound):
        db.collection("missing")
    c, created = db.ensure_collection("x", model="none", dim=2)
    assert created
    c.upsert([{"_id": "a", "_vector": [1, 0]}])
    _, created = db.ensure_collection("x", model="none", dim=2, group_field="g")
    assert not created and db.collection("x").settings.group_field == "g"
    with pytest.raises(Conflict, match="holds records"):
        db.ensure_collection("x", model="efficientnet-lite0")
    assert [c["name"] for c in db.collections()] == ["x"]
    db.drop("x")
    assert db.collections() == []


def test_persistence_and_compaction(data_dir):
    with lookalike.connect(data_dir) as db:
        col = db.collection("p", create=True, model="none", dim=4)
        col.upsert([{"_id": str(i), "_vector": vec(i), "i": i} for i in range(50)])
        col.upsert([{"_id": str(i), "_vector": vec(i + 100), "i": i} for i in range(0, 50, 2)])  # 25 updates
        col.delete([str(i) for i in range(40, 50)])
        before = col.search({"vector": vec(7)}, k=5, filter={"i": {"$lt": 30}})
    with lookalike.connect(data_dir) as db:
        col = db.collection("p")
        assert col.count() == 40
        assert col.search({"vector": vec(7)}, k=5, filter={"i": {"$lt": 30}})["hits"] == before["hits"]
        store = col._store
        assert store.n_slots == 75
        store.compact()
        assert store.n_slots == 40
        assert col.search({"vector": vec(7)}, k=5, filter={"i": {"$lt": 30}})["hits"] == before["hits"]
    with lookalike.connect(data_dir) as db:
        col = db.collection("p")
        assert col.count() == 40 and col.get("3") == {"_id": "3", "i": 3}
        assert len(list((data_dir / "vectors").glob("*.f32"))) == 1


CHILD = textwrap.dedent("""
    import sys, numpy as np, lookalike
    db = lookalike.connect(sys.argv[1])
    col = db.collection("crash", create=True, model="none", dim=8)
    for batch in range(10_000):
        recs = [{"_id": f"{batch}-{i}", "_vector": np.random.default_rng(batch * 100 + i).normal(size=8).tolist(),
                 "batch": batch, "i": i} for i in range(20)]
        res = col.upsert(recs)
        assert all(r["status"] == "inserted" for r in res)
        print(batch, flush=True)
""")


@pytest.mark.parametrize("delay", [0.8, 1.5, 2.5])
def test_kill_9_loses_no_acknowledged_record(data_dir, delay):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir)], stdout=subprocess.PIPE)
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    pending = b""  # a non-blocking read can end mid-line: only whole lines are acknowledgements
    acked: list[int] = []

    def take(chunk: bytes) -> None:
        nonlocal pending
        *lines, pending = (pending + chunk).split(b"\n")
        acked.extend(int(line) for line in lines)

    deadline = time.monotonic() + delay
    while time.monotonic() < deadline or not acked:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        assert chunk or acked, "the writer exited before acknowledging a batch"
        take(chunk)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    os.set_blocking(fd, True)
    take(proc.stdout.read())  # acknowledged before the kill landed
    with lookalike.connect(data_dir) as db:
        col = db.collection("crash")
        assert col.count() >= 20 * len(acked)
        for batch in acked:
            for i in (0, 19):
                rid = f"{batch}-{i}"
                assert col.get(rid) == {"_id": rid, "batch": batch, "i": i}
                want = np.asarray(np.random.default_rng(batch * 100 + i).normal(size=8), dtype=np.float32)
                want /= np.linalg.norm(want)
                np.testing.assert_allclose(col._store.vectors([rid])[rid], want, rtol=1e-6)
        hit = col.search({"id": f"{acked[-1]}-0"}, k=1)["hits"]
        assert hit and hit[0]["_id"] != f"{acked[-1]}-0"
        col.upsert([{"_id": "after", "_vector": [1.0] * 8}])  # the store is writable again
        assert col.get("after") == {"_id": "after"}
