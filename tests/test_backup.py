"""Backup and restore: round trip, consistency under concurrent writes, damaged files."""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from lookalike.store.backup import backup, restore
from lookalike.errors import BadRequest, Conflict, NotFound


def vec(key: str, dim: int = 8) -> list[float]:
    seed = int.from_bytes(key.encode()[:8].ljust(8, b"\0"), "little")
    return np.random.default_rng(seed).normal(size=dim).tolist()


@pytest.fixture
def col(db):
    c = db.collection("src", create=True, model="none", dim=8, group_field="g")
    c.upsert([{"_id": f"r{i}", "_vector": vec(f"r{i}"), "g": i % 3, "tags": ["a", str(i)]} for i in range(300)])
    return c


def test_round_trip_gives_identical_records_and_hits(db, col, tmp_path):
    info = backup(db, "src", tmp_path / "b.lab")
    assert info["records"] == 300
    out = restore(db, tmp_path / "b.lab", name="copy")
    assert out == {"collection": "copy", "records": 300}
    copy = db.collection("copy")
    assert copy.settings.group_field == "g" and copy.count() == 300
    for rid in ("r0", "r17", "r299"):
        assert copy.get(rid) == col.get(rid)
    q = {"vector": vec("query")}
    assert copy.search(q, k=20, filter={"g": {"$ne": 1}})["hits"] == col.search(q, k=20, filter={"g": {"$ne": 1}})["hits"]
    with pytest.raises(Conflict, match="already exists"):
        restore(db, tmp_path / "b.lab", name="copy")
    restore(db, tmp_path / "b.lab", name="copy", replace=True)
    assert db.collection("copy").count() == 300


def test_backup_during_writes_is_consistent(db, col, tmp_path):
    stop = threading.Event()

    def writer():
        i = 1000
        while not stop.is_set():
            col.upsert([{"_id": f"w{i + j}", "_vector": vec(f"w{i + j}"), "g": 0} for j in range(20)])
            col.delete([f"r{i % 300}"])
            i += 20

    t = threading.Thread(target=writer)
    t.start()
    try:
        backup(db, "src", tmp_path / "live.lab")
    finally:
        stop.set()
        t.join()
    restore(db, tmp_path / "live.lab", name="snap")
    snap = db.collection("snap")
    ids, matrix = snap._store.all_vectors()
    assert len(ids) == snap.count() >= 200
    for rid, v in zip(ids, matrix):  # every vector belongs to its own record
        want = np.asarray(vec(rid), dtype=np.float32)
        np.testing.assert_allclose(v, want / np.linalg.norm(want), rtol=1e-5, atol=1e-6)


def test_damaged_or_foreign_files_write_nothing(db, col, tmp_path):
    good = tmp_path / "good.lab"
    backup(db, "src", good)
    lines = gzip.open(good, "rt").read().splitlines(keepends=True)
    truncated = tmp_path / "trunc.lab"
    with gzip.open(truncated, "wt") as fh:
        fh.writelines(lines[:-5])
    tampered = tmp_path / "tampered.lab"
    rec = json.loads(lines[3])
    rec["doc"]["g"] = 99
    with gzip.open(tampered, "wt") as fh:
        fh.writelines(lines[:3] + [json.dumps(rec) + "\n"] + lines[4:])
    garbage = tmp_path / "garbage.lab"
    garbage.write_bytes(b"not gzip at all")
    for path, needle in ((truncated, "truncated"), (tampered, "damaged"), (garbage, "not a readable"),
                         (tmp_path / "missing.lab", "not found")):
        with pytest.raises(BadRequest, match=needle):
            restore(db, path, name="bad")
        with pytest.raises(NotFound):
            db.collection("bad")


def test_bad_record_in_a_checksummed_file_keeps_the_collection_it_would_replace(db, col, tmp_path):
    good = tmp_path / "good.lab"
    backup(db, "src", good)
    lines = gzip.open(good, "rt").read().splitlines(keepends=True)
    rec = json.loads(lines[-2])
    for value, needle in ((base64.b64encode(np.zeros(2, "<f4").tobytes()).decode(), "2-d vector, expected 8"),
                          (rec["vector"][:12], "record 300 of the backup is unreadable: a vector of 9 bytes"),
                          ("%%%", "record 300 of the backup is unreadable")):
        rec["vector"] = value  # a bad last record in a file whose checksum matches
        body = lines[1:-2] + [json.dumps(rec) + "\n"]
        digest = hashlib.sha256("".join(body).encode()).hexdigest()
        bad = tmp_path / "bad.lab"
        with gzip.open(bad, "wt") as fh:
            fh.writelines([lines[0]] + body + [json.dumps({"end": True, "records": len(body), "sha256": digest}) + "\n"])
        with pytest.raises(BadRequest, match=needle):
            restore(db, bad, name="src", replace=True)
        assert db.collection("src").count() == 300 and db.collection("src").get("r5")["g"] == 2


def test_text_vectors_survive_a_round_trip(db, tmp_path):
    c = db.collection("words", create=True, model="none", dim=2, text_fields=["title"])
    c.upsert([{"_id": "a", "_vector": [1, 0], "title": "red silk dress"},
              {"_id": "b", "_vector": [0, 1], "title": "brass desk lamp"}])
    want = c.search({"text": "a lamp for the desk"}, k=2)["hits"]
    assert want[0]["_id"] == "b"
    backup(db, "words", tmp_path / "w.lab")
    restore(db, tmp_path / "w.lab", name="words-copy")
    assert db.collection("words-copy").search({"text": "a lamp for the desk"}, k=2)["hits"] == want


def test_cli_backup_and_restore(data_dir, tmp_path, db, col):
    db.close()
    run = lambda *a: subprocess.run([sys.executable, "-m", "lookalike.cli", *a, "--data", str(data_dir)],  # noqa: E731
                                    capture_output=True, text=True, timeout=120)
    b = run("backup", "-c", "src", str(tmp_path / "cli.lab"), "--json")
    assert b.returncode == 0, b.stderr
    assert json.loads(b.stdout)["records"] == 300
    r = run("restore", str(tmp_path / "cli.lab"), "--as", "clone")
    assert r.returncode == 0 and "restored 300 records into clone" in r.stdout
    again = run("restore", str(tmp_path / "cli.lab"), "--as", "clone")
    assert again.returncode == 2 and "already exists" in again.stderr
