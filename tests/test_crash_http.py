"""SIGKILL of a real server during HTTP ingestion: nothing acknowledged is lost.

Runs three rounds of `bench/crash.py` (the benchmark runs 100): writer threads upsert,
update and delete over HTTP into an exact collection and one with a forced HNSW graph
(the third round also ingests images), the server is killed at a random moment, and the
folder is reopened and checked record by record (metadata, vector, count, searches, the
graph, SQLite integrity). The checker itself is tested to catch lost or torn data.
"""
from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import numpy as np
import pytest

import lookalike

_PATH = Path(__file__).resolve().parents[1] / "bench" / "crash.py"
_spec = importlib.util.spec_from_file_location("lookalike_bench_crash", _PATH)
crash = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = crash  # dataclasses look their module up by name
_spec.loader.exec_module(crash)


def test_three_crash_rounds_lose_nothing_acknowledged(tmp_path: Path) -> None:
    data = tmp_path / "data"
    results = crash.run(3, data, seed=7, images_every=3, sample=50)
    assert len(results) == 3
    assert sum(r.acked_ops for r in results) > 0, "no request was acknowledged: the test checked nothing"
    assert results[-1].records > 0
    # the folder is usable afterwards: the data is there and the graph answers
    with lookalike.connect(data) as db:
        counts = {c["name"]: c["count"] for c in db.collections()}
        assert counts["exact"] > 0 and counts["ann"] > 0
        assert db.collection("ann").info()["index"]["active"] == "hnsw"


def _folder_with_records(tmp_path: Path) -> tuple[Path, crash.Ledger]:
    """Two acknowledged records written straight through the Python API, and their ledger."""
    data = tmp_path / "data"
    with lookalike.connect(data) as db:
        col = db.collection("exact", create=True, **crash.COLLECTIONS["exact"])
        col.upsert([crash.record_for("exact", rid, 0) for rid in ("r1/a", "r1/b")])
    ledger = crash.Ledger("exact", acked={"r1/a": 0, "r1/b": 0})
    return data, ledger


def test_checker_accepts_intact_data(tmp_path: Path) -> None:
    data, ledger = _folder_with_records(tmp_path)
    stats = crash.check_all(data, [ledger], 1, random.Random(0), 10)
    assert stats["exact"]["records"] == 2 and stats["exact"]["searched"] == 2


def test_checker_catches_a_lost_record(tmp_path: Path) -> None:
    data, ledger = _folder_with_records(tmp_path)
    ledger.acked["r1/c"] = 0  # acknowledged but never stored
    with pytest.raises(crash.CheckFailed, match="acknowledged records lost"):
        crash.check_all(data, [ledger], 1, random.Random(0), 10)


def test_checker_catches_wrong_metadata_and_unknown_records(tmp_path: Path) -> None:
    data, ledger = _folder_with_records(tmp_path)
    ledger.acked["r1/a"] = 1  # the store holds version 0: as if an update was lost
    with pytest.raises(crash.CheckFailed, match="version"):
        crash.check_all(data, [ledger], 1, random.Random(0), 10)
    data2, ledger2 = _folder_with_records(tmp_path / "second")
    del ledger2.acked["r1/b"]  # stored but never sent
    with pytest.raises(crash.CheckFailed, match="never sent"):
        crash.check_all(data2, [ledger2], 1, random.Random(0), 10)


def test_checker_catches_a_wrong_vector(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with lookalike.connect(data) as db:
        col = db.collection("exact", create=True, **crash.COLLECTIONS["exact"])
        record = crash.record_for("exact", "r1/a", 0)
        record["_vector"] = (-np.asarray(record["_vector"])).tolist()
        col.upsert([record])
    ledger = crash.Ledger("exact", acked={"r1/a": 0})
    with pytest.raises(crash.CheckFailed, match="vector"):
        crash.check_all(data, [ledger], 1, random.Random(0), 10)


def test_in_flight_batches_may_land_whole_or_not_at_all(tmp_path: Path) -> None:
    data, ledger = _folder_with_records(tmp_path)
    ledger.maybe = {"r1/b": {0, 1}, "r1/new": {None, 0}}  # an update and an insert in flight at the kill
    stats = crash.check_all(data, [ledger], 1, random.Random(0), 10)
    assert stats["exact"]["records"] == 2
    assert ledger.acked == {"r1/a": 0, "r1/b": 0} and not ledger.maybe
