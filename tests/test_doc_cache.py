"""The embedded store's per-slot document cache (store/embedded/docs.py): hits and gets read
stored documents from memory after the first read, and never return one that an update,
upsert, delete or compaction has replaced, through any handle of the folder."""
from __future__ import annotations

import numpy as np
import pytest

import lookalike
from lookalike.errors import NotFound
from lookalike.store.embedded.docs import ENTRY_OVERHEAD, DocCache, entry

DIM = 8


def vec(i: int) -> list[float]:
    return np.random.default_rng(i).normal(size=DIM).tolist()


def records(n: int, tag: str = "a") -> list[dict]:
    return [{"_id": f"r{i}", "_vector": vec(i), "tag": tag, "n": i, "nested": {"list": [i, tag]}} for i in range(n)]


@pytest.fixture
def col(db):
    c = db.collection("docs", create=True, model="none", dim=DIM)
    c.upsert(records(30))
    return c


def statements(store) -> list[str]:
    """The SQL statements this thread's reader connection runs from now on."""
    seen: list[str] = []
    store._store.reader().set_trace_callback(seen.append)
    return seen


def top_hit(col, i: int) -> dict:
    return col.search({"vector": vec(i)}, k=1)["hits"][0]


def test_a_hit_read_again_comes_from_memory(col):
    first = col.search({"vector": vec(3)}, k=5)["hits"]
    seen = statements(col._store)
    again = col.search({"vector": vec(3)}, k=5)["hits"]
    assert again == first
    assert not [s for s in seen if "FROM records" in s], seen


def test_update_upsert_and_delete_are_never_served_stale(col):
    assert top_hit(col, 4)["tag"] == "a" and col.get("r4")["tag"] == "a"  # both kept now
    col.update("r4", {"tag": "updated"})
    assert top_hit(col, 4)["tag"] == "updated" and col.get("r4")["tag"] == "updated"
    col.upsert([{"_id": "r4", "_vector": vec(4), "tag": "upserted"}])  # replaces the metadata
    assert top_hit(col, 4) == {"_id": "r4", "_score": pytest.approx(1.0, abs=1e-5), "tag": "upserted"}
    assert col.get("r4") == {"_id": "r4", "tag": "upserted"}
    col.delete("r4")
    assert top_hit(col, 4)["_id"] != "r4"
    with pytest.raises(NotFound):
        col.get("r4")
    col.upsert([{"_id": "r4", "_vector": vec(4), "tag": "back"}])
    assert top_hit(col, 4)["tag"] == "back" and col.get("r4")["tag"] == "back"


def test_another_handle_of_the_folder_sees_each_change(db, col):
    other = db.collection("docs")  # a second Collection object over the same folder
    assert other.get("r7")["tag"] == "a" and top_hit(other, 7)["tag"] == "a"
    col.update("r7", {"tag": "b"})
    assert other.get("r7")["tag"] == "b" and top_hit(other, 7)["tag"] == "b"
    col.delete(["r7"])
    with pytest.raises(NotFound):
        other.get("r7")


def test_a_read_only_store_beside_the_writer_never_serves_a_replaced_document(data_dir, col):
    with lookalike.connect(data_dir, read_only=True) as ro:
        reader = ro.collection("docs")
        assert reader.get("r9")["tag"] == "a" and top_hit(reader, 9)["tag"] == "a"  # kept in its cache
        col.update("r9", {"tag": "changed by the writer"})
        assert reader.get("r9")["tag"] == "changed by the writer"
        col.delete(["r9"])
        with pytest.raises(NotFound):
            reader.get("r9")


def test_compaction_renumbers_slots_and_empties_the_cache(col):
    before = {f"r{i}": col.get(f"r{i}") for i in range(30)}
    for i in range(0, 30, 3):
        col.update(f"r{i}", {"tag": f"new{i}"})  # old slots die: compaction moves every later row
    col.search({"vectors": [vec(i) for i in range(30)]}, k=3)  # every live slot's document kept
    col.compact()
    for i in range(30):
        want = dict(before[f"r{i}"], tag=f"new{i}") if i % 3 == 0 else before[f"r{i}"]
        assert col.get(f"r{i}") == want
        assert top_hit(col, i) == {"_score": pytest.approx(1.0, abs=1e-5), **want}


def test_changing_a_returned_document_changes_nothing_stored(col):
    doc = col.get("r2")
    doc["tag"] = "mutated"
    doc["nested"]["list"].append("x")
    hit = top_hit(col, 2)
    hit["nested"]["list"].clear()
    assert col.get("r2") == {"_id": "r2", "tag": "a", "n": 2, "nested": {"list": [2, "a"]}}
    assert top_hit(col, 2)["nested"] == {"list": [2, "a"]}


def test_the_cache_is_bounded_in_bytes_and_drops_the_oldest():
    empty = entry(("{}", "{}"))
    cache = DocCache({}, limit_bytes=3 * empty[3])
    cache.store(cache.epoch, [(s, empty) for s in range(3)])
    cache.store(cache.epoch, [(3, empty)])
    assert [t is not None for t in cache.lookup([0, 1, 2, 3])] == [False, True, True, True]
    assert [d is not None for d in cache.flat([0, 1, 2, 3])] == [False, True, True, True]  # evicted alike
    stale = cache.epoch
    cache.clear()
    cache.store(stale, [(5, empty)])  # read before the clear: not kept
    assert cache.lookup([0, 5]) == [None, None] and cache.flat([1, 5]) == [None, None] and len(cache) == 0


def test_random_writes_with_a_tiny_cache_match_a_model(db, monkeypatch):
    """Random updates, upserts, deletes and compactions with eviction going on all the time:
    every get and hit equals what a plain dict of the writes says."""
    import lookalike.store.embedded.docs as docs
    monkeypatch.setattr(docs, "CACHE_BYTES", 12 * (ENTRY_OVERHEAD + 60))
    c = db.collection("model", create=True, model="none", dim=DIM)
    rng = np.random.default_rng(11)
    model: dict[str, dict] = {}
    for step in range(200):
        rid = f"r{int(rng.integers(0, 25))}"
        op = rng.random()
        if op < 0.4:
            doc = {"v": int(rng.integers(0, 1000)), "s": str(step)}
            c.upsert([{"_id": rid, "_vector": vec(int(rid[1:])), **doc}])
            model[rid] = doc
        elif op < 0.6 and rid in model:
            c.update(rid, {"v": step})
            model[rid] = {**model[rid], "v": step}
        elif op < 0.7:
            c.delete([rid])
            model.pop(rid, None)
        elif op < 0.73:
            c.compact()
        if model:
            got = c.search({"vector": vec(int(rid[1:]))}, k=len(model))["hits"]
            assert {h["_id"]: {k: v for k, v in h.items() if k not in ("_id", "_score")} for h in got} == model
        for known in list(model)[:5]:
            assert c.get(known) == {"_id": known, **model[known]}


def test_reads_racing_updates_and_compactions_never_get_another_records_document(db):
    """Compaction gives live records the slots of others; a reader in the middle of it must
    still get each id's own document (each carries its number, which updates never change)."""
    import threading
    c = db.collection("race", create=True, model="none", dim=DIM)
    c.upsert(records(40))
    done = threading.Event()
    wrong: list[str] = []

    def read() -> None:
        while not done.is_set():
            for doc in c._store.get([f"r{i}" for i in range(40)]):
                if doc is not None and doc["_id"] != f"r{doc['n']}":
                    wrong.append(f"{doc['_id']} got n={doc['n']}")
            for hit in c.search({"vector": vec(5)}, k=20)["hits"]:
                if hit["_id"] != f"r{hit['n']}":
                    wrong.append(f"hit {hit['_id']} got n={hit['n']}")
    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        for step in range(6):
            for i in range(step % 3, 40, 3):
                c.update(f"r{i}", {"tag": f"s{step}"})
            c.compact()
    finally:
        done.set()
        for t in readers:
            t.join()
    assert not wrong, wrong[:5]
    assert all(c.get(f"r{i}")["n"] == i for i in range(40))
