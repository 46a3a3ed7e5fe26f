"""Several processes on one data folder: one writer at a time, readers beside it, nothing lost.

The holder is a real second Python process (it writes, then waits for a line on stdin), and
the intruders are the real CLI, because the bug was two processes each trusting their own
in-memory row count of the same vector file.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest
from test_server_process import ServerProcess

import lookalike
from lookalike.store.vectors import VectorFile

DIM = 8
HOLDER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import lookalike

    data, first, second = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((first + second, 8)).astype(np.float32)
    records = [{"_id": f"h{i}", "_vector": vectors[i].tolist(), "n": i} for i in range(first + second)]
    db = lookalike.connect(data, allow_file=False)
    col = db.collection("c", create=True, model="none", dim=8, metric="dot")
    col.upsert(records[:first])
    print("ready", flush=True)
    sys.stdin.readline()  # the test runs its intruder now
    col.upsert(records[first:])
    print("done", flush=True)
    sys.stdin.readline()
    db.close()
""")


def expected_vectors(n: int) -> np.ndarray:
    return np.random.default_rng(7).standard_normal((n, DIM)).astype(np.float32)


class Holder:
    """A Python process holding the folder for writing, driven line by line."""

    def __init__(self, data: Path, first: int = 20, second: int = 20) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(data), str(first), str(second)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.expect("ready")

    def expect(self, word: str) -> None:
        line = self.proc.stdout.readline().strip()
        if line != word:
            self.proc.kill()
            raise AssertionError(f"holder said {line!r}, not {word!r}: {self.proc.stderr.read()}")

    def step(self, word: str) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        self.expect(word)

    def finish(self) -> None:
        self.proc.stdin.write("\n")
        self.proc.stdin.close()
        assert self.proc.wait(60) == 0, self.proc.stderr.read()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(60)


@pytest.fixture
def holder(tmp_path: Path):
    made = Holder(tmp_path / "data")
    yield made
    made.kill()


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookalike.cli", *args], capture_output=True, text=True, timeout=300)


def folder_state(folder: Path) -> dict[str, int]:
    """Every file in the data folder with its size (SQLite's shared-memory index excepted)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*")
            if p.is_file() and not p.name.endswith("-shm")}


def test_a_second_writer_is_refused_naming_the_holder_and_records_stay_intact(tmp_path: Path, holder) -> None:
    data = tmp_path / "data"
    rng = np.random.default_rng(99)
    catalogue = tmp_path / "intruder.jsonl"
    catalogue.write_text("".join(json.dumps({"_id": f"x{i}", "_vector": rng.standard_normal(DIM).tolist()}) + "\n"
                                 for i in range(15)))
    before = folder_state(data)
    result = cli("ingest", str(catalogue), "-c", "c", "--data", str(data), "--model", "none", "-q")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert f"data folder {data} is in use by" in result.stderr
    assert f"pid {holder.proc.pid}" in result.stderr and "since" in result.stderr
    assert "-c" in result.stderr or "python" in result.stderr  # the holder's command line
    assert folder_state(data) == before  # the refused writer touched nothing
    holder.step("done")  # the holder writes again after the intruder
    holder.finish()
    with lookalike.connect(data, allow_file=False) as db:
        col = db.collection("c")
        assert col.count() == 40
        got = col._store.vectors([f"h{i}" for i in range(40)])
        assert np.array_equal(np.stack([got[f"h{i}"] for i in range(40)]), expected_vectors(40))
        assert col.search({"id": "h25"}, k=1, filter={"n": 25})["hits"] == []  # the anchor is excluded
        assert col.search({"vector": expected_vectors(40)[25].tolist()}, k=1)["hits"][0]["_id"] == "h25"


def test_a_killed_holder_does_not_block_the_next_writer(tmp_path: Path, holder) -> None:
    data = tmp_path / "data"
    with pytest.raises(lookalike.Conflict, match=f"pid {holder.proc.pid}"):
        lookalike.connect(data, allow_file=False)
    os.kill(holder.proc.pid, signal.SIGKILL)
    holder.kill()
    with lookalike.connect(data, allow_file=False) as db:
        col = db.collection("c")
        got = col._store.vectors([f"h{i}" for i in range(20)])
        assert np.array_equal(np.stack([got[f"h{i}"] for i in range(20)]), expected_vectors(20))
        col.upsert([{"_id": "new", "_vector": [1.0] * DIM}])
        assert col.count() == 21


def test_read_only_cli_commands_work_beside_a_writer_and_change_nothing(tmp_path: Path, holder) -> None:
    data = tmp_path / "data"
    before = folder_state(data)
    query = expected_vectors(20)[3]
    result = cli("search", "-c", "c", "--data", str(data), "--id", "h3", "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    vectors = expected_vectors(20)
    assert [h["_id"] for h in hits] == [f"h{i}" for i in np.argsort(-(vectors @ query)) if i != 3][:3]
    result = cli("get", "-c", "c", "--data", str(data), "h5", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["n"] == 5
    result = cli("collections", "--data", str(data), "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["collections"][0]["count"] == 20
    assert folder_state(data) == before  # no digest cache, no snapshot, nothing truncated
    holder.step("done")
    result = cli("collections", "--data", str(data), "--json")  # a new reader sees the holder's later write
    assert json.loads(result.stdout)["collections"][0]["count"] == 40


def test_beside_a_running_server_cli_ingest_is_refused_and_cli_search_works(tmp_path: Path) -> None:
    data = tmp_path / "data"
    vectors = expected_vectors(12)
    with ServerProcess(data) as server:
        assert httpx.put(f"{server.url}/v1/collections/c", json={"model": "none", "dim": DIM}).status_code in (200, 201)
        body = {"records": [{"_id": f"s{i}", "_vector": v.tolist()} for i, v in enumerate(vectors)]}
        assert httpx.post(f"{server.url}/v1/collections/c/records", json=body).status_code == 200
        catalogue = tmp_path / "more.jsonl"
        catalogue.write_text(json.dumps({"_id": "x", "_vector": [1.0] * DIM}) + "\n")
        result = cli("ingest", str(catalogue), "-c", "c", "--data", str(data), "--model", "none", "-q")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert f"is in use by `lookalike serve --data {data}" in result.stderr
        assert f"pid {server.proc.pid}" in result.stderr
        result = cli("search", "-c", "c", "--data", str(data), "--id", "s4", "-k", "2", "--json")
        assert result.returncode == 0, result.stderr
        ranked = [f"s{i}" for i in np.argsort(-(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)) @ vectors[4]
                                           / np.linalg.norm(vectors[4])) if i != 4][:2]
        assert [h["_id"] for h in json.loads(result.stdout)["hits"]] == ranked
        hits = httpx.post(f"{server.url}/v1/collections/c/search", json={"query": {"id": "s4"}, "k": 2}).json()["hits"]
        assert [h["_id"] for h in hits] == ranked  # the server's view is intact, nothing slipped in
        assert httpx.get(f"{server.url}/v1/collections/c").json()["count"] == 12


def test_reads_never_create_the_data_folder(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    result = cli("search", "-c", "c", "--data", str(nowhere), "--id", "a")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert str(nowhere) in result.stderr
    assert not nowhere.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli("collections", "--data", str(empty)).returncode == 2
    assert list(empty.iterdir()) == []
    with pytest.raises(lookalike.NotFound, match="nowhere"):
        lookalike.connect(nowhere, read_only=True)
    assert not nowhere.exists()


def test_one_process_opens_a_folder_for_writing_once(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with lookalike.connect(data, allow_file=False) as db:
        db.collection("c", create=True, model="none", dim=DIM).upsert([{"_id": "a", "_vector": [1.0] * DIM}])
        with pytest.raises(lookalike.Conflict, match="already open for writing in this process"):
            lookalike.connect(data, allow_file=False)
        with lookalike.connect(data, read_only=True) as reader:
            assert reader.collection("c").search({"id": "a"}, k=1)["hits"] == []
            assert reader.collection("c").count() == 1
            result = reader.collection("c").upsert([{"_id": "b", "_vector": [1.0] * DIM}])
            assert result[0]["status"] == "error" and "read-only" in result[0]["error"]
            with pytest.raises(lookalike.Forbidden, match="read-only"):
                reader.collection("c").delete(["a"])
            with pytest.raises(lookalike.Forbidden):
                reader.drop("c")
    with lookalike.connect(data, allow_file=False) as db:  # closed: free again
        assert db.collection("c").count() == 1


def test_vector_file_slots_come_from_the_file_not_a_cached_count(tmp_path: Path) -> None:
    path = tmp_path / "v.f32"
    one, two = VectorFile(path, 4), VectorFile(path, 4)
    assert one.append(np.ones((3, 4))) == 0
    assert two.append(np.full((2, 4), 2.0)) == 3  # not 0: rows 0-2 are taken
    assert one.append(np.full((1, 4), 3.0)) == 5
    one.close(), two.close()
    rows = np.fromfile(path, dtype=np.float32).reshape(-1, 4)
    assert rows[:, 0].tolist() == [1, 1, 1, 2, 2, 3]
