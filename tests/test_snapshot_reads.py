"""Reads beside writes in one process see a whole state: before a write or after it, never half.

Stress tests bounded in iterations (the writer does a fixed amount of work; readers loop until
it is done), each asserting on what readers got: no exception, every hit with its metadata,
facets that add up. They found IndexErrors in facets and hits without metadata before the
collection's read/write lock and the refill of vanished hits.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

import lookalike

DIM = 8


def records(start: int, n: int, tag: str) -> list[dict]:
    rng = np.random.default_rng(start)
    return [{"_id": f"r{start + i}", "_vector": rng.standard_normal(DIM).tolist(), "tag": tag,
             "value": f"v{start + i}", "n": start + i} for i in range(n)]


def race(writer: Callable[[], None], reader: Callable[[], None], readers: int = 2) -> list[str]:
    """Run `writer` once and `reader` in loops until it is done; the readers' failures."""
    done = threading.Event()
    failures: list[str] = []

    def read_loop() -> None:
        while not done.is_set():
            try:
                reader()
            except Exception as exc:  # noqa: BLE001 - every kind of failure is what we count
                failures.append(f"{type(exc).__name__}: {exc}")

    def write_once() -> None:
        try:
            writer()
        finally:
            done.set()
    threads = [threading.Thread(target=read_loop) for _ in range(readers)] + [threading.Thread(target=write_once)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return failures


@pytest.fixture
def db(tmp_path: Path):
    database = lookalike.connect(tmp_path / "data", allow_file=False)
    yield database
    database.close()


def test_filtered_facets_and_filters_while_new_values_are_written(db) -> None:
    col = db.collection("c", create=True, model="none", dim=DIM)
    col.upsert(records(0, 50, "old"))

    def writer() -> None:
        for batch in range(80):  # every record brings new distinct values of `value` and `n`
            col.upsert(records(1000 + batch * 10, 10, "new"))

    def reader() -> None:
        facets = col.facets(filter={"tag": "new"})
        count = facets["count"]
        by_path = {f["path"]: f for f in facets["facets"]}
        if count:
            assert by_path["tag"]["values"] == [{"value": "new", "count": count}]
            assert by_path["value"]["count"] == count
        col.search({"vector": [1.0] * DIM}, k=5, filter={"value": {"$in": ["v3", "v1500", "v1700"]}})
    assert race(writer, reader) == []
    assert col.count() == 50 + 800


def test_hits_always_carry_their_metadata_while_records_are_deleted(db) -> None:
    col = db.collection("c", create=True, model="none", dim=DIM)
    col.upsert(records(0, 200, "keep"))

    def writer() -> None:
        for batch in range(40):
            doomed = records(10_000 + batch * 20, 20, "doomed")
            col.upsert(doomed)
            col.delete([r["_id"] for r in doomed])

    def reader() -> None:
        for query in ([1.0] * DIM, [-1.0] * DIM):
            hits = col.search({"vector": query}, k=30)["hits"]
            assert len(hits) == 30
            missing = [h["_id"] for h in hits if "tag" not in h]
            assert not missing, f"hits without metadata: {missing}"
    assert race(writer, reader) == []
    assert col.count() == 200


def test_reads_while_a_collection_is_dropped_and_recreated(db) -> None:
    db.collection("c", create=True, model="none", dim=DIM).upsert(records(0, 40, "gen0"))

    def writer() -> None:
        for gen in range(1, 25):
            db.drop("c")
            db.collection("c", create=True, model="none", dim=DIM).upsert(records(0, 40, f"gen{gen}"))

    def reader() -> None:
        try:
            col = db.collection("c")
            facets = col.facets(filter={"n": {"$lt": 20}})
            tags = [f for f in facets["facets"] if f["path"] == "tag"]
            assert not tags or len(tags[0]["values"]) == 1  # one generation's records, never a mix
            hits = col.search({"vector": [1.0] * DIM}, k=10)["hits"]
            assert all("tag" in h for h in hits), "hits without metadata"
            assert len({h["tag"] for h in hits}) <= 1, f"hits mixing generations: {hits}"
        except lookalike.NotFound:
            pass  # between drop and create, or a dropped collection: the documented answer
    assert race(writer, reader) == []
    assert db.collection("c").count() == 40


def test_a_dropped_collection_object_refuses_reads_and_writes(db) -> None:
    old = db.collection("c", create=True, model="none", dim=DIM)
    old.upsert(records(0, 5, "old"))
    db.drop("c")
    new = db.collection("c", create=True, model="none", dim=DIM)
    new.upsert(records(0, 5, "new"))
    with pytest.raises(lookalike.NotFound, match="dropped"):
        old.search({"vector": [1.0] * DIM}, k=3)
    with pytest.raises(lookalike.NotFound, match="dropped"):  # must not land in the new namesake
        old.upsert(records(100, 1, "stale"))
    with pytest.raises(lookalike.NotFound, match="dropped"):
        old.delete(["r0"])
    assert new.count() == 5 and {h["tag"] for h in new.search({"vector": [1.0] * DIM}, k=5)["hits"]} == {"new"}


def test_http_facets_and_search_while_the_collection_is_dropped_and_recreated(db) -> None:
    from fastapi.testclient import TestClient

    from lookalike.server import create_app
    db.collection("c", create=True, model="none", dim=DIM).upsert(records(0, 40, "gen0"))
    statuses: list[int] = []
    with TestClient(create_app(db), raise_server_exceptions=False) as http:
        def writer() -> None:
            for gen in range(1, 20):
                assert http.delete("/v1/collections/c").status_code == 200
                assert http.put("/v1/collections/c", json={"model": "none", "dim": DIM}).status_code in (200, 201)
                body = {"records": records(0, 40, f"gen{gen}")}
                assert http.post("/v1/collections/c/records", json=body).status_code == 200

        def reader() -> None:
            response = http.get("/v1/collections/c/facets", params={"filter": '{"n": {"$lt": 30}}'})
            statuses.append(response.status_code)
            assert response.status_code in (200, 404), response.text
            if response.status_code == 200:
                body = response.json()
                tags = [f for f in body["facets"] if f["path"] == "tag"]
                assert not tags or tags[0]["values"] == [{"value": tags[0]["values"][0]["value"], "count": body["count"]}]
            response = http.post("/v1/collections/c/search", json={"query": {"vector": [1.0] * DIM}, "k": 10})
            assert response.status_code in (200, 404), response.text
            if response.status_code == 200:
                assert all("tag" in h for h in response.json()["hits"]), "hits without metadata"
        assert race(writer, reader) == []
    assert 200 in statuses
