"""Bulk load of `_vector` records: large write batches, index adds on a background thread
(searches scan the rows not added yet), and nothing lost when the process dies mid-load.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lookalike
from lookalike.index import manager
from lookalike.index.ann import HnswIndex

DIM = 32


def vectors(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def records(x: np.ndarray, start: int = 0) -> list[dict]:
    return [{"_id": f"r{start + i}", "_vector": v.tolist(), "p": (start + i) % 10} for i, v in enumerate(x)]


def top1(col, vector: np.ndarray) -> str:
    return col.search({"vector": vector.tolist()}, k=1)["hits"][0]["_id"]


def test_rows_being_added_in_the_background_are_found_meanwhile(db, monkeypatch):
    col = db.collection("v", create=True, model="none", dim=DIM, index={"type": "hnsw", "threshold": 500})
    first, extra = vectors(3000, 1), vectors(3 * manager.BACKGROUND_ADD_ROWS, 2)
    col.upsert(records(first))
    col._store.wait_index()
    assert col.info()["index"]["indexed_rows"] == 3000
    gate, grow = threading.Event(), manager.CollectionIndex._grow

    def held(self):
        gate.wait(30)
        grow(self)
    monkeypatch.setattr(manager.CollectionIndex, "_grow", held)
    results = col.upsert(records(extra, start=3000))  # returns before the rows are in the graph
    assert {r["status"] for r in results} == {"inserted"}
    info = col.info()["index"]
    assert info["adding"] and info["indexed_rows"] == 3000 and col.count() == 3000 + len(extra)
    for i in (0, 1000, len(extra) - 1):  # not in the graph yet: scanned exactly, found
        assert top1(col, extra[i]) == f"r{3000 + i}"
    many = col.search({"vectors": [extra[5].tolist(), first[7].tolist()]}, k=1)["hits"]
    assert [h[0]["_id"] for h in many] == ["r3005", "r7"]
    assert col.search({"vector": extra[9].tolist()}, k=3, filter={"p": 2})["hits"][0]["_id"] != "r3009"
    gate.set()
    assert col._store.wait_index(60)
    info = col.info()["index"]
    assert not info["adding"] and info["indexed_rows"] == 3000 + len(extra)
    assert top1(col, extra[2000]) == "r5000"


def test_a_collection_of_vectors_writes_large_batches_by_default(db):
    col = db.collection("v", create=True, model="none", dim=DIM)
    sizes: list[int] = []
    col.upsert(records(vectors(5000, 3)), on_batch=lambda batch: sizes.append(len(batch)))
    assert sizes == [4096, 904]


CRASH = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import lookalike
    dim, n, batch = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rng = np.random.default_rng(5)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    db = lookalike.connect(sys.argv[1])
    col = db.collection("v", create=True, model="none", dim=dim, index={"type": "hnsw", "threshold": 500})
    for start in range(0, n, batch):
        col.upsert([{"_id": f"r{i}", "_vector": x[i].tolist(), "p": i % 10} for i in range(start, start + batch)])
        print(start + batch, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no close: background adds and saves cut short
""")


def test_bulk_load_killed_mid_index_keeps_every_record(tmp_path: Path):
    n, batch = 12_000, 4000
    proc = subprocess.run([sys.executable, "-c", CRASH, str(tmp_path), str(DIM), str(n), str(batch)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == [str(s) for s in range(batch, n + 1, batch)]  # every upsert returned
    x = np.random.default_rng(5).standard_normal((n, DIM)).astype(np.float32)
    with lookalike.connect(tmp_path) as db:
        col = db.collection("v")
        assert col.count() == n
        ids, total = col._store.list_ids(limit=n)
        assert total == n and set(ids) == {f"r{i}" for i in range(n)}
        assert col.get("r11999")["p"] == 9
        col._store.wait_index(120)
        assert col.info()["index"]["indexed_rows"] == n
        for i in (0, 4321, n - 1):
            assert top1(col, x[i] / np.linalg.norm(x[i])) == f"r{i}"


def test_rows_waiting_in_a_bulk_load_join_the_graph_in_large_adds(db, monkeypatch):
    """FAISS's add is parallel only within one call: a backlog goes in BULK_ADD_CHUNK rows at a
    time (fewer calls, less CPU), a small remainder in ADD_CHUNK rows (searches wait less)."""
    monkeypatch.setattr(manager, "ADD_CHUNK", 500)
    monkeypatch.setattr(manager, "BULK_ADD_CHUNK", 2000, raising=False)
    col = db.collection("v", create=True, model="none", dim=DIM, index={"type": "hnsw", "threshold": 500})
    col.upsert(records(vectors(1000, 1)))
    col._store.wait_index()
    sizes: list[int] = []
    add = HnswIndex.add

    def counted(self, rows):
        sizes.append(len(rows))
        add(self, rows)
    monkeypatch.setattr(HnswIndex, "add", counted)
    extra = vectors(4500, 2)
    col.upsert(records(extra, start=1000), batch_size=len(extra))
    assert col._store.wait_index(60)
    info = col.info()["index"]
    assert info["indexed_rows"] == 1000 + len(extra)
    # the index grew past twice its measured size: 300 rows are held out, measured, then added
    assert sizes == [2000, 2000, 200, 300]
    assert info["calibration"]["queries"] == 300 and info["calibration"]["rows"] == 1000 + len(extra) - 300
    assert top1(col, extra[4000]) == "r5000"



def test_a_batch_of_vectors_parsed_together_stores_what_one_at_a_time_stores(db):
    """A batch's `_vector` lists are parsed and normalised in one NumPy pass: the stored vectors
    and source hashes are those of records written one by one (a re-upsert in either way
    finds them unchanged), and a batch holding a bad vector still names it and writes the rest."""
    rng = np.random.default_rng(5)
    raw = (rng.standard_normal((300, DIM)) * rng.uniform(1e-3, 1e3, (300, 1))).astype(np.float64)
    alone = db.collection("alone", create=True, model="none", dim=DIM)
    together = db.collection("together", create=True, model="none", dim=DIM)
    docs = [{"_id": f"r{i}", "_vector": v.tolist()} for i, v in enumerate(raw)]
    for doc in docs[:50]:
        assert alone.upsert([doc])[0]["status"] == "inserted"
    assert {r["status"] for r in together.upsert(docs)} == {"inserted"}
    assert {r["status"] for r in together.upsert(docs[:50], batch_size=1)} == {"unchanged"}
    assert {r["status"] for r in alone.upsert(docs)[:50]} == {"unchanged"}
    ids = [d["_id"] for d in docs]
    got, want = together._store.vectors(ids), alone._store.vectors(ids)
    assert all(got[i].tobytes() == want[i].tobytes() for i in ids)
    bad = [{"_id": "ok1", "_vector": raw[0].tolist()}, {"_id": "nan", "_vector": [float("nan")] * DIM},
           {"_id": "short", "_vector": [1.0] * (DIM - 1)}, {"_id": "flag", "_vector": [True] * DIM},
           {"_id": "ok2", "_vector": raw[1].tolist()}]
    out = {r["_id"]: r for r in together.upsert(bad)}
    assert out["ok1"]["status"] == out["ok2"]["status"] == "inserted"
    assert "NaN" in out["nan"]["error"] and "dimensions" in out["short"]["error"]
    assert "only numbers" in out["flag"]["error"]


def test_a_jsonl_catalogue_is_counted_only_for_a_progress_bar(tmp_path: Path):
    """Counting a JSONL's records reads the whole file once more: `lookalike ingest` asks for the
    count only when it shows a bar; the records and where they came from are the same either way."""
    from lookalike.ingest.catalog import sourced_records
    path = tmp_path / "v.jsonl"
    path.write_text('{"_id": "a", "_vector": [1, 0]}\n\n  \n{"_id": "b", "_vector": [0, 1]}\nnot json\n')
    pairs, _, total = sourced_records(path)
    counted = [(origin, getattr(rec, "reason", rec)) for origin, rec in pairs]
    pairs, _, none = sourced_records(path, count=False)
    assert total == 3 and none is None
    assert [(origin, getattr(rec, "reason", rec)) for origin, rec in pairs] == counted
    assert [origin for origin, _ in counted] == ["line 1", "line 4", "line 5"]


def test_a_bulk_load_saves_its_graph_at_doublings_and_reopens_with_every_row(tmp_path: Path, monkeypatch):
    """While written rows wait to be added, the graph (a cache of the vector file) is saved
    when it doubled since its last save, not at every quarter: fewer gigabytes written and
    fewer pauses of the adds. A crash then costs the adds since that save when the folder
    is reopened: every row is in the graph again after `open`."""
    from lookalike.index.settings import normalize_compression, normalize_index
    data = vectors(160_000, 8)[:, :16].copy()
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    shown = [2000]  # rows in the vector file; the "writer" commits 20k more during each add
    settings = normalize_index({"type": "hnsw", "connectivity": 8, "expansion_add": 16, "target_recall": None})

    def make() -> manager.CollectionIndex:
        return manager.CollectionIndex(tmp_path, "v", 0, 16, settings, normalize_compression(None),
                                       lambda: data[:shown[0]], lambda: shown[0])
    index = make()
    index.open()  # built inline over 2000 rows and saved
    saves: list[int] = []
    save, add = manager.CollectionIndex.save, manager.CollectionIndex._add

    def counted(self):
        saves.append(self._ann.ntotal)
        save(self)

    def add_while_writing(self, ann, matrix, end):
        add(self, ann, matrix, end)
        shown[0] = min(len(data), shown[0] + 20_000)
    monkeypatch.setattr(manager.CollectionIndex, "save", counted)
    monkeypatch.setattr(manager.CollectionIndex, "_add", add_while_writing)
    shown[0] = 22_000
    while index._ann.ntotal < len(data):
        index._grow()
    # at every quarter (and 50k) since the last save it was [62_000, 122_000]
    assert saves == [62_000, 142_000]
    # killed here (no close): the saved graph holds 142k rows, the vector file 160k
    monkeypatch.setattr(manager.CollectionIndex, "_add", add)
    reopened = make()
    reopened.open()
    assert reopened._ann.ntotal == len(data) and saves[-1] == 142_000
    for row in (5, 141_999, 150_000, len(data) - 1):
        slots, _ = reopened.search(data[row], 1, np.ones(len(data), dtype=bool))
        assert reopened.last_plan().kind == "hnsw" and slots[0] == row


def test_a_jsonl_line_that_is_not_utf8_is_that_lines_error(tmp_path: Path):
    """The catalogue is read in binary: a line of bad bytes is one record's error naming it,
    and the lines around it are read (blank lines, Unicode-blank ones and \\r\\n as before)."""
    from lookalike.ingest.catalog import sourced_records
    from lookalike.records import InvalidRecord
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"_id": "a", "t": "caf\xc3\xa9"}\r\n\n   \n\xc2\xa0\n'
                     b'{"_id": "b", "t": "\xff"}\n{"_id": "c", "n": 12345678901234567890123}\n{"_id": \n')
    pairs, _, total = sourced_records(path)
    got = list(pairs)
    assert total == 4 and [origin for origin, _ in got] == ["line 1", "line 5", "line 6", "line 7"]
    assert got[0][1] == {"_id": "a", "t": "café"} and got[2][1] == {"_id": "c", "n": 12345678901234567890123}
    assert isinstance(got[1][1], InvalidRecord) and got[1][1].reason.startswith("line 5 is not UTF-8 text")
    assert isinstance(got[3][1], InvalidRecord) and got[3][1].reason.startswith("line 7 is not valid JSON")


class _Signalled(Exception):
    pass


def test_a_faiss_add_runs_to_its_end_before_a_signal_is_handled():
    """index/ann.py removes FAISS's Python interrupt check, which took the GIL every few hundred
    rows of each add thread (a bulk load's Python stages held it meanwhile): a signal that
    arrives during an add on the main thread is handled when the add returns, and the graph
    holds every row. With the check, FAISS stopped mid-add ("computation interrupted")."""
    from lookalike.index.settings import COMPRESSION_DEFAULTS, INDEX_DEFAULTS
    x = vectors(20_000, 6)
    ann = HnswIndex.create(DIM, dict(INDEX_DEFAULTS), dict(COMPRESSION_DEFAULTS), x[:1000])

    def handler(signum, frame):
        raise _Signalled

    timer = threading.Timer(0.02, os.kill, (os.getpid(), signal.SIGINT))
    old = signal.signal(signal.SIGINT, handler)
    try:
        timer.start()
        with pytest.raises(_Signalled):
            ann.add(x)
            timer.join()
            time.sleep(5)  # an add quicker than the timer: the handler runs here
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
    assert ann.raw.ntotal == len(x)
    probe = np.arange(len(x) - 500, len(x))  # the last rows added: left out of an interrupted graph
    params = ann.params(1, 64, None)
    _, labels = ann.raw.search(x[probe], 1, params=params)
    assert (labels[:, 0] == probe).mean() > 0.95
