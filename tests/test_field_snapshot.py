"""The field index is saved beside the vectors and reused on open, never when it does not match."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lookalike
from lookalike.store.field_index import FieldIndex
from lookalike.store.embedded import collection as embedded
from lookalike.store.embedded import opening


@pytest.fixture(autouse=True)
def small_threshold(monkeypatch):
    monkeypatch.setattr(embedded, "FIELDS_SAVE_MIN", 5)


def recs(lo: int, hi: int, colour: str = "red") -> list[dict]:
    return [{"_id": f"r{i}", "_vector": [1.0, i / 100], "colour": colour if i % 2 else "blue", "n": i,
             "tags": ["a", "b"][: i % 3]} for i in range(lo, hi)]


def matching(col, flt: dict) -> set[str]:
    return {h["_id"] for h in col.search({"vector": [1, 0]}, k=1000, filter=flt)["hits"]}


FILTERS = [{"colour": "red"}, {"n": {"$gte": 30}}, {"tags": "b"}, {"$or": [{"colour": "green"}, {"n": 3}]}]


def snapshot_files(data_dir) -> list[str]:
    return sorted(p.name for p in (data_dir / "fields").glob("*"))


def answers(col) -> list[set[str]]:
    return [matching(col, f) for f in FILTERS]


def reopen(data_dir, monkeypatch) -> tuple[object, list[int]]:
    """A fresh database, and how many records each FieldIndex.add call indexed while opening it."""
    added: list[int] = []
    original = FieldIndex.add

    def spy(self, slots, docs):
        added.append(len(slots))
        return original(self, slots, docs)
    monkeypatch.setattr(FieldIndex, "add", spy)
    db = lookalike.connect(data_dir)
    db.collection("c").count()  # opens it
    monkeypatch.setattr(FieldIndex, "add", original)
    return db, added


def test_reopen_reads_only_records_written_after_the_snapshot(data_dir, monkeypatch):
    with lookalike.connect(data_dir) as db:
        col = db.collection("c", create=True, model="none", dim=2)
        col.upsert(recs(0, 40))
        want = answers(col)
    assert snapshot_files(data_dir) == ["c.0.npz"]
    db, added = reopen(data_dir, monkeypatch)
    try:
        assert sum(added) == 0  # everything came from the snapshot
        col = db.collection("c")
        assert answers(col) == want
        # changes after the snapshot: updates move records, deletes, new records
        col.upsert([{**r, "colour": "green"} for r in recs(0, 4)] + recs(40, 43))
        col.delete(["r5", "r7"])
        want = answers(col)
        assert "r5" not in want[0] and {"r0", "r1", "r2", "r3"} <= matching(col, {"colour": "green"})
    finally:
        db.close()
    db, added = reopen(data_dir, monkeypatch)
    try:
        assert sum(added) == 0  # closing saved the 7 new slots (over the threshold of 5)
        assert answers(db.collection("c")) == want
    finally:
        db.close()


def test_snapshot_of_another_collection_is_not_used(data_dir, tmp_path, monkeypatch):
    with lookalike.connect(data_dir) as db:
        db.collection("c", create=True, model="none", dim=2).upsert(recs(0, 40))
    stolen = tmp_path / "stolen.npz"
    shutil.copy(data_dir / "fields" / "c.0.npz", stolen)
    with lookalike.connect(data_dir) as db:  # drop and re-create: same name, same generation, other records
        db.drop("c")
        assert snapshot_files(data_dir) == []
        col = db.collection("c", create=True, model="none", dim=2)
        col.upsert(recs(0, 40, colour="green"))
        want = answers(col)
    shutil.copy(stolen, data_dir / "fields" / "c.0.npz")
    db, added = reopen(data_dir, monkeypatch)
    try:
        assert added == [40]  # rebuilt from the records
        assert answers(db.collection("c")) == want and want[0] == set()
    finally:
        db.close()


@pytest.mark.parametrize("damage", [b"", b"not a zip file", None])
def test_torn_or_foreign_snapshot_is_rebuilt(data_dir, monkeypatch, damage):
    with lookalike.connect(data_dir) as db:
        col = db.collection("c", create=True, model="none", dim=2)
        col.upsert(recs(0, 40))
        want = answers(col)
    path = data_dir / "fields" / "c.0.npz"
    if damage is None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # torn
    else:
        path.write_bytes(damage)
    db, added = reopen(data_dir, monkeypatch)
    try:
        assert added == [40]
        assert answers(db.collection("c")) == want
    finally:
        db.close()
    db, added = reopen(data_dir, monkeypatch)  # and saved again
    db.close()
    assert sum(added) == 0


def test_compaction_moves_the_snapshot_to_the_new_generation(data_dir, monkeypatch):
    with lookalike.connect(data_dir) as db:
        col = db.collection("c", create=True, model="none", dim=2)
        col.upsert(recs(0, 40))
        col.delete([f"r{i}" for i in range(0, 40, 3)])
        col._store.compact()
        want = answers(col)
    assert snapshot_files(data_dir) == ["c.1.npz"]
    db, added = reopen(data_dir, monkeypatch)
    try:
        assert sum(added) == 0
        assert answers(db.collection("c")) == want
    finally:
        db.close()


def test_clean_reopen_reads_no_record_row(data_dir, monkeypatch):
    """After a clean close the slot table comes from the snapshot: opening parses no record."""
    with lookalike.connect(data_dir) as db:
        col = db.collection("c", create=True, model="none", dim=2)
        col.upsert(recs(0, 40))
        col.delete(["r3", "r8"])
        col.upsert([{**r, "colour": "green"} for r in recs(10, 12)])  # moved to new slots
        want, got = answers(col), col.get("r11")
    read_all: list[str] = []
    original = opening._from_records
    monkeypatch.setattr(opening, "_from_records", lambda reader, name, *a: read_all.append(name) or original(reader, name, *a))
    db, added = reopen(data_dir, monkeypatch)
    try:
        col = db.collection("c")
        assert read_all == [] and sum(added) == 0
        assert answers(col) == want and col.count() == 38
        assert col.get("r11") == got and "r3" not in {h["_id"] for h in col.search({"vector": [1, 0]}, k=100)["hits"]}
        with pytest.raises(lookalike.NotFound):
            col.get("r3")
        assert [h["_id"] for h in col.search({"id": "r11"}, k=3)["hits"]][0] in {"r10", "r11", "r12"}
    finally:
        db.close()


def test_writes_not_in_the_snapshot_are_never_hidden(data_dir, monkeypatch):
    """A process killed after writing (no close, so no new snapshot): the next open sees the
    database's write count differ from the snapshot's and reads the records."""
    with lookalike.connect(data_dir) as db:
        db.collection("c", create=True, model="none", dim=2).upsert(recs(0, 40))
    code = ("import os, lookalike\n"
            f"db = lookalike.connect({str(data_dir)!r}); col = db.collection('c')\n"
            "col.delete(['r5']); col.upsert([{'_id': 'r6', '_vector': [1.0, 0.5], 'colour': 'green', 'n': 6}])\n"
            "os._exit(0)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    db, added = reopen(data_dir, monkeypatch)
    try:
        col = db.collection("c")
        assert sum(added) > 0  # the slot table was read from the records
        assert col.get("r6")["colour"] == "green"
        with pytest.raises(lookalike.NotFound):
            col.get("r5")
        assert "r5" not in matching(col, {"colour": "red"}) and "r6" in matching(col, {"colour": "green"})
    finally:
        db.close()


def test_forged_snapshot_state_is_caught_by_the_sample(data_dir, monkeypatch):
    """A snapshot whose saved state was made to match but whose records differ is not used."""
    with lookalike.connect(data_dir) as db:
        db.collection("c", create=True, model="none", dim=2).upsert(recs(0, 40))
    path = data_dir / "fields" / "c.0.npz"
    old = dict(np.load(path))
    with lookalike.connect(data_dir) as db:
        db.collection("c").upsert([{**r, "colour": "green"} for r in recs(0, 40)])
        want = answers(db.collection("c"))
        state = db.collection("c")._store._store.write_state("c")
    meta = json.loads(bytes(old["meta"]).decode())
    meta["state"] = list(state)
    old["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **old)
    db, added = reopen(data_dir, monkeypatch)
    try:
        assert answers(db.collection("c")) == want and want[0] == set()
        assert sum(added) == 40
    finally:
        db.close()


def test_a_copied_folder_written_apart_does_not_share_snapshots(data_dir, tmp_path, monkeypatch):
    """Two copies of one folder (same identity) each given one different record at the same slot
    reach the same write state: the sample's content hashes tell their snapshots apart."""
    with lookalike.connect(data_dir) as db:
        db.collection("c", create=True, model="none", dim=2).upsert(recs(0, 40))
    twin = tmp_path / "twin"
    shutil.copytree(data_dir, twin)
    with lookalike.connect(data_dir) as db:
        db.collection("c").upsert([{"_id": "r40", "_vector": [1.0, 0.4], "colour": "red", "n": 40}])
    with lookalike.connect(twin) as db:
        db.collection("c").upsert([{"_id": "r40", "_vector": [1.0, 0.4], "colour": "green", "n": 40}])
        want = answers(db.collection("c"))
    shutil.copy(data_dir / "fields" / "c.0.npz", twin / "fields" / "c.0.npz")
    db, added = reopen(twin, monkeypatch)
    try:
        assert answers(db.collection("c")) == want and "r40" in matching(db.collection("c"), {"colour": "green"})
        assert sum(added) == 41
    finally:
        db.close()
