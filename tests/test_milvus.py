"""The Milvus store against the embedded store: same hits, statuses, reads and errors.

Every test taking `milvus_at` or a `pair` runs twice: on Milvus Lite and on a Milvus server
started for the session (lookalike/testing/milvus_server.py; conftest.py's `milvus_backend`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest

import lookalike
from lookalike.cli import main
from lookalike.errors import BadRequest, Conflict, LookalikeError, NotFound
from lookalike.store.filters import And, Cond, Not, Or, parse_filter
from lookalike.store.base import StoredRecord

pytest.importorskip("pymilvus")
from lookalike.store.milvus import MilvusStore, milvus_name, parse_location  # noqa: E402
from lookalike.store.milvus.filters import filter_view, path_key, to_expression  # noqa: E402
from lookalike.testing.milvus_server import Locations  # noqa: E402
from lookalike.testing.servers import free_port  # noqa: E402

DIM = 16
COLORS = ["red", "blue", "green", None]


def make_records(n: int = 240, seed: int = 7) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rec = {"_id": f"r{i:03d}", "_vector": rng.normal(size=DIM).tolist(), "price": int(rng.integers(0, 100)),
               "color": COLORS[i % 4], "tags": ["a", "b"] if i % 3 else [1, True],
               "attrs": {"size": ["S", "M", "L"][i % 3], "w": float(i) / 7}, "product_id": f"p{i % 30}",
               "on_sale": i % 5 == 0}
        if i % 6 == 0:
            rec["opt"] = None if i % 12 == 0 else i
        if i % 10 == 0:
            rec["odd key/é"] = "x"
        out.append(rec)
    return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory, milvus_backend):
    """The same records in Milvus (Lite or server) and in the embedded store (read-only use)."""
    folder = tmp_path_factory.mktemp("milvus")
    locations = Locations(milvus_backend, folder)
    milvus, embedded = lookalike.connect(locations("lite")), lookalike.connect(folder / "embedded")
    recs = make_records()
    for db in (milvus, embedded):
        col = db.collection("vec", create=True, model="none", dim=DIM)
        assert {r["status"] for r in col.upsert(recs)} == {"inserted"}
    yield milvus.collection("vec"), embedded.collection("vec")
    milvus.close()
    embedded.close()
    locations.drop()


FILTERS = [
    None, {"price": {"$lt": 30}}, {"price": {"$gte": 50, "$lte": 70}}, {"tags": "a"}, {"tags": 1}, {"tags": True},
    {"color": None}, {"color": {"$ne": "red"}}, {"opt": {"$exists": True}}, {"opt": None}, {"opt": {"$ne": None}},
    {"$not": {"price": {"$gt": 50}}}, {"attrs.size": {"$in": ["S", "L"]}}, {"color": {"$nin": ["red", None]}},
    {"$or": [{"price": {"$gte": 90}}, {"tags": {"$in": [1]}}]}, {"color": {"$gt": "c"}}, {"_id": "r005"},
    {"$and": [{}]}, {"attrs.w": {"$gt": 10.5}}, {"on_sale": True}, {"on_sale": 1}, {"odd key/é": "x"},
    {"tags": {"$in": []}}, {"color": {"$not": {"$in": ["red", "blue"]}}}, {"attrs": {"$exists": True}},
    {"missing.path": {"$exists": False}}, {"price": 12.0}, {"$not": {"opt": {"$gt": 50}}},
    {"$not": {"odd key/é": "x"}},
]


def ids(result: dict) -> list[str]:
    return [h["_id"] for h in result["hits"]]


@pytest.mark.parametrize("spec", FILTERS, ids=[json.dumps(f) for f in FILTERS])
def test_exact_search_same_ids_same_order(pair, spec):
    milvus, embedded = pair
    q = np.random.default_rng(len(json.dumps(spec))).normal(size=DIM).tolist()
    a = milvus.search({"vector": q}, k=25, filter=spec)
    b = embedded.search({"vector": q}, k=25, filter=spec)
    assert ids(a) == ids(b)
    assert [h["_score"] for h in a["hits"]] == pytest.approx([h["_score"] for h in b["hits"]], abs=1e-5)
    assert a["hits"] == [{**h, "_score": pytest.approx(h["_score"], abs=1e-5)} for h in b["hits"]]
    assert sorted(milvus._store.ids_where(parse_filter(spec))) == sorted(embedded._store.ids_where(parse_filter(spec)))


@pytest.mark.parametrize("kwargs", [
    {"group_by": "product_id"}, {"group_by": "color"}, {"offset": 7}, {"group_by": "product_id", "offset": 5},
    {"boost": [{"filter": {"color": "red"}, "weight": 0.5}]},
    {"boost": [{"filter": {"on_sale": True}, "weight": 0.3}, {"filter": {"tags": "a"}, "weight": -0.2}]},
    {"group_by": "color", "boost": [{"filter": {"tags": "a"}, "weight": 0.3}], "filter": {"price": {"$lt": 80}}},
    {"negative": [{"id": "r010"}]}, {"group_by": "tags", "k": 3},
], ids=lambda kw: json.dumps(kw))
def test_grouping_boosts_paging_like_embedded(pair, kwargs):
    milvus, embedded = pair
    kwargs = {"k": 10, **kwargs}
    a = milvus.search({"id": "r003"}, **kwargs)
    b = embedded.search({"id": "r003"}, **kwargs)
    assert [(h["_id"], h.get("_group")) for h in a["hits"]] == [(h["_id"], h.get("_group")) for h in b["hits"]]
    assert [h["_score"] for h in a["hits"]] == pytest.approx([h["_score"] for h in b["hits"]], abs=1e-5)
    assert "r003" not in ids(a)


def test_recommend_rerank_get_like_embedded(pair):
    milvus, embedded = pair
    assert ids(milvus.recommend("r004", k=8)) == ids(embedded.recommend("r004", k=8))
    a = milvus.rerank(["r001", "zz", "r100", "r050"], {"id": "r002"})
    b = embedded.rerank(["r001", "zz", "r100", "r050"], {"id": "r002"})
    assert ids(a) == ids(b) and a["missing"] == b["missing"] == ["zz"]
    for rid in ("r000", "r010", "r123"):
        assert milvus.get(rid) == embedded.get(rid)
    with pytest.raises(NotFound):
        milvus.get("nope")
    ida, va = milvus._store.all_vectors()
    idb, vb = embedded._store.all_vectors()
    order = np.argsort(ida)
    assert sorted(ida) == sorted(idb)
    np.testing.assert_allclose(va[order], vb[np.argsort(idb)], atol=1e-7)
    assert milvus.count() == embedded.count() == 240
    for spec in (None, {"price": {"$lt": 40}}):
        assert milvus.facets(filter=spec) == embedded.facets(filter=spec)
    info = milvus.info()
    assert info["count"] == 240 and info["dim"] == DIM and info["bytes_per_vector"] == 4 * DIM
    assert info["index"]["active"] == "milvus-flat" and info["index"]["indexed_rows"] == 240


def test_statuses_updates_and_deletes(milvus_at):
    with lookalike.connect(milvus_at("s")) as db:
        col = db.collection("v", create=True, model="none", dim=4)
        v1, v2 = [1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]
        res = col.upsert([{"_id": "a", "_vector": v1, "price": 1}, {"_id": "b", "_vector": v2}])
        assert [r["status"] for r in res] == ["inserted", "inserted"]
        res = col.upsert([{"_id": "a", "_vector": v1, "price": 1}, {"_id": "b", "_vector": [0, 0, 1.0, 0]},
                          {"_id": "a", "price": 2}])
        assert [r["status"] for r in res] == ["unchanged", "updated", "updated"]
        assert col.get("a") == {"_id": "a", "price": 2}
        assert col.search({"vector": v1}, k=1)["hits"][0]["_id"] == "a"  # metadata-only update kept the vector
        # bad records get errors and change nothing
        res = col.upsert([{"_id": "c", "_vector": [1.0, 2.0]}, {"_id": "d", "_vector": v2, "x": float("nan")}])
        assert [r["status"] for r in res] == ["error", "error"] and "dimensions" in res[0]["error"]
        assert col.count() == 2 and col.get("a") == {"_id": "a", "price": 2}
        assert col.delete(["a", "zz"]) == 1
        assert col.delete(["a"]) == 0
        assert col.count() == 1
        col.upsert([{"_id": f"x{i}", "_vector": v1, "n": i} for i in range(5)])
        assert col.delete(filter={"n": {"$gte": 3}}) == 2
        assert sorted(col._store.ids_where(parse_filter(None))) == ["b", "x0", "x1", "x2"]
        assert col._store.list_ids(parse_filter({"n": {"$exists": True}}), offset=1, limit=2) == (["x1", "x2"], 3)


def test_collections_persist_and_reopen(milvus_at):
    path = milvus_at("c")
    with lookalike.connect(path) as db:
        col = db.collection("my-col_1", create=True, model="none", dim=3, group_field="g")
        col.upsert([{"_id": "a", "_vector": [1, 0, 0], "g": 1}, {"_id": "b", "_vector": [0, 1, 0], "g": 2}])
        db.collection("other", create=True, model="none", dim=2)
        with pytest.raises(Conflict):
            db.store.create_collection(type(col.settings)(name="other", model="none", dim=2))
        with pytest.raises(NotFound):
            db.collection("nope")
        db.ensure_collection("my-col_1", boosts=[{"filter": {"g": 2}, "weight": 1.5}])
    with lookalike.connect(path) as db:  # a new process would see the same: nothing is kept in memory
        assert [c["name"] for c in db.collections()] == ["my-col_1", "other"]
        col = db.collection("my-col_1")
        assert col.settings.group_field == "g" and col.settings.boosts == [{"filter": {"g": 2}, "weight": 1.5}]
        hits = col.search({"vector": [1, 0, 0]}, k=2)["hits"]
        assert [(h["_id"], h["_group"]) for h in hits] == [("b", 2), ("a", 1)]  # the stored boost applies
        db.drop("other")
        assert [c["name"] for c in db.collections()] == ["my-col_1"]
        with pytest.raises(NotFound):
            db.drop("other")


def test_filter_translation():
    assert to_expression(parse_filter(None)) == ""
    expr = to_expression(parse_filter({"tags": "a", "price": {"$gt": 3}}))
    assert 'json_contains(filter_view["v"]["tags"], "a")' in expr and 'filter_view["nhi"]["price"] > 3' in expr
    assert '(exists filter_view["nhi"]["price"]) and' in expr  # guarded: definite on missing fields
    assert to_expression(parse_filter({"s": 'say "hi"\\'})) .count('"say \\"hi\\"\\\\"') == 1
    assert path_key("a.b") == "a.b" and path_key('we"ird') != 'we"ird' and path_key('we"ird').startswith("~")
    view = filter_view({"tags": ["a", 1, True, None], "n": 3.0, "o": {"x": "q"}})
    assert view["v"]["tags"] == ["a", 1] and view["b"]["tags"] == [True] and view["z"] == {"tags": 1}
    assert view["nlo"]["n"] == view["nhi"]["n"] == 3 and isinstance(view["nhi"]["n"], int)
    assert view["p"] == {"tags": 1, "n": 1, "o": 1, "o.x": 1}
    for node, op in [(Cond("x", "$regex", "a.*"), "$regex"), (Not(Cond("x", "$near", 1)), "$near"),
                     (Or((Cond("x", "$eq", 1), Cond("y", "$size", 2))), "$size")]:
        with pytest.raises(BadRequest, match=f"'\\{op}'"):
            to_expression(node)
    with pytest.raises(BadRequest):
        to_expression(And((Cond("x", "$gt", [1]),)))


def test_locations_and_bad_requests(milvus_at):
    assert milvus_name("my-col_1") == "lk_my_dcol__1" and milvus_name("my_dcol") != milvus_name("my-col")
    assert parse_location("milvus://u:p%40ss@db.internal:19531/shop") == {
        "uri": "http://db.internal:19531", "token": "u:p@ss", "db_name": "shop"}
    assert parse_location("milvus://h")["uri"] == "http://h:19530"
    with pytest.raises(BadRequest):
        parse_location("milvus://")
    with lookalike.connect(milvus_at("b")) as db:
        col = db.collection("v", create=True, model="none", dim=4)
        col.upsert([{"_id": "a", "_vector": [1, 0, 0, 0]}])
        with pytest.raises(BadRequest, match="16384"):
            col.search({"vector": [1, 0, 0, 0]}, k=1000, offset=16000)
        with pytest.raises(BadRequest, match="dim"):
            db.store.create_collection(type(col.settings)(name="huge", model="none", dim=40000))
        res = col.upsert([{"_id": "big", "_vector": [0, 1, 0, 0], "text": "x" * 70_000}])
        assert res[0]["status"] == "error" and "65536" in res[0]["error"]
        assert col.count() == 1


def test_unreachable_server_is_a_clear_error(monkeypatch):
    with pytest.raises(LookalikeError, match="Milvus"):
        MilvusStore("milvus://127.0.0.1:1")


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{url} exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not come up")


def test_two_stateless_servers_on_one_milvus(tmp_path, milvus_at, milvus_backend):
    """A Milvus server process and two `lookalike serve` processes pointed at it serve the same results
    (the Milvus server: Milvus Lite's server mode, or the session's Milvus standalone server)."""
    env = {**os.environ, "LOOKALIKE_CACHE": str(tmp_path / "cache")}
    milvus = None
    if milvus_backend is None:
        milvus_port = free_port()
        milvus = subprocess.Popen([sys.executable, "-m", "milvus_lite", "server", "--data-dir", str(tmp_path / "mdata"),
                                   "--host", "127.0.0.1", "--port", str(milvus_port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    servers: list[subprocess.Popen] = []
    try:
        url = f"milvus://127.0.0.1:{milvus_port}" if milvus else milvus_at("shared")
        deadline = time.time() + 60
        while True:  # the Milvus server takes a moment to listen
            try:
                db = lookalike.connect(url)
                break
            except LookalikeError:
                if time.time() > deadline or (milvus and milvus.poll() is not None):
                    raise
                time.sleep(0.5)
        with db:
            db.collection("shared", create=True, model="none", dim=DIM).upsert(make_records(60))
            # records with engine-computed colours, as an image ingest writes them
            paints = db.collection("paints", create=True, model="none", dim=DIM)
            palette = {"red": "#c82828", "blue": "#2846c8", "pink": "#e07090"}
            paints._store.write([StoredRecord(name, {"_id": name}, {"_colors": [{"color": hex_, "weight": 1.0}]},
                                              np.eye(DIM, dtype=np.float32)[i], "0" * 64, f"{i:064x}")
                                 for i, (name, hex_) in enumerate(palette.items())])
        ports = [free_port(), free_port()]
        for port in ports:
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "lookalike.cli", "serve", "--store", url, "--port", str(port),
                 "--admin-key", "adm", "--search-key", "srch"], env=env,
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        for port, proc in zip(ports, servers):
            _wait_http(f"http://127.0.0.1:{port}/v1/health", proc)
        headers = {"Authorization": "Bearer srch"}
        body = {"query": {"id": "r007"}, "k": 5, "filter": {"price": {"$lt": 60}}, "group_by": "product_id"}
        answers = [httpx.post(f"http://127.0.0.1:{p}/v1/collections/shared/search", json=body, headers=headers,
                              timeout=30).json() for p in ports]
        assert len(answers[0]["hits"]) == 5
        assert [h["_id"] for h in answers[0]["hits"]] == [h["_id"] for h in answers[1]["hits"]]
        # colour search over HTTP, on a Milvus server: both API servers rank red, pink, blue
        for port in ports:
            r = httpx.post(f"http://127.0.0.1:{port}/v1/collections/paints/search", headers=headers, timeout=30,
                           json={"query": {"color": "#c0392b"}, "k": 3})
            assert r.status_code == 200, r.text
            assert [h["_id"] for h in r.json()["hits"]] == ["red", "pink", "blue"]
        # a write through one server is seen by the other at once
        admin = {"Authorization": "Bearer adm"}
        r = httpx.post(f"http://127.0.0.1:{ports[0]}/v1/collections/shared/records", headers=admin, timeout=30,
                       json={"records": [{"_id": "new", "_vector": make_records(1, seed=99)[0]["_vector"]}]})
        assert r.json()["results"][0]["status"] == "inserted"
        got = httpx.get(f"http://127.0.0.1:{ports[1]}/v1/collections/shared/records/new", headers=headers, timeout=30)
        assert got.status_code == 200 and got.json()["_id"] == "new"
    finally:
        procs = [*servers, *([milvus] if milvus else [])]
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_cli_store_flag(tmp_path, milvus_at, capsys):
    store = milvus_at("cli")
    catalog = tmp_path / "vectors.jsonl"
    catalog.write_text("".join(json.dumps(r) + "\n" for r in make_records(30)))
    assert main(["ingest", str(catalog), "-c", "v", "--model", "none", "--store", store, "-q"]) == 2  # needs dim
    with lookalike.connect(store) as db:
        db.collection("v", create=True, model="none", dim=DIM)
    assert main(["ingest", str(catalog), "-c", "v", "--store", store, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in out["results"]] == ["inserted"] * 30
    assert main(["search", "-c", "v", "--store", store, "--id", "r001", "-k", "3", "--json",
                 "--filter", '{"price": {"$lt": 50}}']) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert len(hits) == 3 and all(h["price"] < 50 for h in hits)
    assert main(["search", "-c", "v", "--store", store, "--id", "r001", "--filter", '{"price": {"$foo": 1}}']) == 2
    assert "$foo" in capsys.readouterr().err


def test_server_version_is_read_and_old_servers_refused(milvus_at, milvus_backend, monkeypatch):
    """The version is read at connect; a server before 2.3.0 is refused naming both versions."""
    from pymilvus import MilvusClient
    from lookalike.store.milvus.version import MIN_SERVER, server_release
    location = milvus_at("v")
    with lookalike.connect(location) as db:
        version = db.store.server_version
    if milvus_backend is None:
        assert version.startswith("milvus_lite") and server_release(version) is None
    else:
        assert version == milvus_backend.version and server_release(version) >= MIN_SERVER
    assert server_release("v2.3.5-lite") == (2, 3, 5) and server_release("2.4.13-hotfix") == (2, 4, 13)
    monkeypatch.setattr(MilvusClient, "get_server_version", lambda self, **kw: "v2.2.16")
    with pytest.raises(LookalikeError, match=r"Milvus >= 2\.3\.0 needed .* is v2\.2\.16"):
        lookalike.connect(location)
    monkeypatch.setattr(MilvusClient, "get_server_version", lambda self, **kw: "v2.3.0")
    lookalike.connect(location).close()
