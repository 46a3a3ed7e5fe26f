"""`lookalike.Client` against a real server: the same calls give the same results and the
same exceptions as the embedded API, and image searches over HTTP give the same hits.
"""
from __future__ import annotations

import base64
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import lookalike
from lookalike.errors import BadRequest, Conflict, Forbidden, LookalikeError, NotAnImage, NotFound, Unauthorized
from lookalike.sample import COLORS, draw_item

from conftest import jpeg_bytes, read_jsonl
from test_server_process import ServerProcess

ADMIN, SEARCH = "client-admin", "client-search"
LIMIT = 300 * 1024  # small: a batch of images is over it, so the client must split


@pytest.fixture(scope="module")
def server(tmp_path_factory, pattern_db_dir: Path):
    data = tmp_path_factory.mktemp("client") / "data"
    shutil.copytree(pattern_db_dir, data)
    with ServerProcess(data, "--admin-key", ADMIN, "--search-key", SEARCH, "--max-body-bytes", str(LIMIT)) as proc:
        yield proc


@pytest.fixture(scope="module")
def client(server):
    with lookalike.Client(server.url, key=ADMIN) as c:
        yield c


@pytest.fixture(scope="module")
def embedded(pattern_db_dir: Path):
    db = lookalike.connect(pattern_db_dir, read_only=True)
    yield db
    db.close()


def outcome(call: Callable[[], Any]) -> Any:
    """A call's result without timings, or its exception as (class, code)."""
    try:
        return strip(call())
    except LookalikeError as exc:
        return (type(exc).__name__, exc.code)


def strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k != "took_ms"}
    if isinstance(value, list):
        return [strip(v) for v in value]
    if isinstance(value, tuple):
        return tuple(strip(v) for v in value)
    if hasattr(value, "name") and hasattr(value, "search"):  # a collection object
        return ("collection", value.name)
    return value


def scenario(db: Any) -> list[Any]:
    """The same user code, run on `lookalike.connect()` and on `lookalike.Client`."""
    out: list[Any] = []
    out.append(outcome(lambda: db.collection("scn-missing")))
    out.append(outcome(lambda: db.collection("Bad Name")))
    col = db.collection("scn", create=True, model="none", dim=3, group_field="product")
    out.append(outcome(lambda: db.ensure_collection("scn", model="none", dim=3)))
    records = [{"_id": "r1", "_vector": [1, 0, 0], "product": "p1", "color": "red", "price": 10},
               {"_id": "r2", "_vector": [0.9, 0.1, 0], "product": "p1", "color": "red", "price": 20},
               {"_id": "r3", "_vector": [0.8, 0.2, 0.1], "product": "p2", "color": "red", "price": 30, "a": {"b": 1}},
               {"_id": "b1", "_vector": [0, 1, 0], "product": "p3", "color": "blue", "price": 40},
               {"_vector": [0, 0, 1]}, {"_id": "w", "_vector": [1, 1]}, {"_id": "c", "_labels": []},
               {"_id": "g1", "_vector": [0.1, 0.2, 1], "product": "p4", "color": "green", "price": 50, "tags": ["x"]}]
    batches: list[int] = []
    out.append(outcome(lambda: col.upsert(records, batch_size=3, on_batch=lambda b: batches.append(len(b)))))
    out.append(batches)
    out.append(outcome(lambda: list(col.upsert_iter(records[:2] + [{"_id": "r3", "_vector": [0.8, 0.2, 0.1]}]))))
    out.append(outcome(lambda: col.get("r3")))
    out.append(outcome(lambda: col.get("nope")))
    out.append(outcome(lambda: col.count()))
    out.append(outcome(lambda: {k: v for k, v in col.info().items() if k != "bytes"}))
    for args, kwargs in [(({"id": "r1"},), {"k": 3}), (({"vector": [1, 0, 0]},), {"filter": {"price": {"$gt": 15}}}),
                         (({"id": "r1"},), {"group_by": False, "k": 2, "offset": 1}),
                         (({"ids": ["r1", "g1"]},), {"negative": [{"id": "b1"}], "fields": ["price"]}),
                         (({"vector": [1, 0, 0]},), {"boost": [{"filter": {"color": "green"}, "weight": 1.5}]}),
                         (({"id": "r1"},), {"k": 0}), (({"id": "r1"},), {"k": "3"}), (({"text": "red"},), {}),
                         (({"nope": 1},), {}), (({"id": "r1"},), {"filter": {"a": {"$regex": "x"}}}),
                         (({"id": "zz"},), {}), (({"vector": [1, 0]},), {}), (({"file": "/no/such.jpg"},), {})]:
        out.append(outcome(lambda: col.search(*args, **kwargs)))
    out.append(outcome(lambda: col.recommend("r1", k=5)))
    out.append(outcome(lambda: col.recommend("r1", filter={"color": "blue"})))
    out.append(outcome(lambda: col.recommend("zz")))
    out.append(outcome(lambda: col.rerank(["g1", "r2", "zz", "b1"], {"id": "r1"})))
    out.append(outcome(lambda: col.rerank([], {"id": "r1"})))
    out.append(outcome(lambda: col.match({"id": "r1"})))
    out.append(outcome(lambda: col.match({"id": "r1"}, threshold=2.0)))
    out.append(outcome(lambda: col.duplicates()))
    out.append(outcome(lambda: col.evaluate([{"query": {"id": "r1"}, "relevant": ["r2", "r3"]}], k=3)))
    out.append(outcome(lambda: col.records(limit=2, offset=1, fields=["price"])))
    out.append(outcome(lambda: col.records(filter={"color": "red"})))
    out.append(outcome(lambda: col.facets(top=3)))
    out.append(outcome(lambda: col.thumbnail("r1")))
    out.append(outcome(lambda: col.delete(["r1", "zz"])))
    out.append(outcome(lambda: col.delete("r2")))
    out.append(outcome(lambda: col.delete(filter={"color": "blue"})))
    out.append(outcome(lambda: col.delete()))
    out.append(outcome(lambda: col.delete(filter={"x": {"$bad": 1}})))
    out.append(outcome(lambda: col.count()))
    out.append(outcome(lambda: db.ensure_collection("scn", model="none", dim=4)))
    out.append(outcome(lambda: [c for c in db.collections() if c["name"].startswith("scn")]))
    out.append(outcome(lambda: db.drop("scn")))
    out.append(outcome(lambda: db.collection("scn")))
    out.append(outcome(lambda: db.drop("scn")))
    return out


def test_client_mirrors_the_embedded_api(client, tmp_path: Path) -> None:
    with lookalike.connect(tmp_path / "embedded") as db:
        expected = scenario(db)
    remote = scenario(client)
    for i, (a, b) in enumerate(zip(expected, remote)):
        assert a == b, f"step {i}: embedded {a!r} != http {b!r}"
    assert len(expected) == len(remote)
    assert ("NotFound", "not_found") in remote and ("BadRequest", "bad_request") in remote
    assert ("Conflict", "conflict") in remote


def same_hits(a: dict, b: dict) -> None:
    assert [h["_id"] for h in a["hits"]] == [h["_id"] for h in b["hits"]]
    for x, y in zip(a["hits"], b["hits"]):
        assert abs(x["_score"] - y["_score"]) <= 1e-5
        assert {k: v for k, v in x.items() if k != "_score"} == {k: v for k, v in y.items() if k != "_score"}


def test_embedded_and_http_give_identical_hits(client, embedded, pattern_catalog: Path, tmp_path: Path) -> None:
    local, remote = embedded.collection("patterns"), client.collection("patterns")
    query = draw_item("dots", COLORS["red"], seed=4242, size=300, shape="shirt")
    path = tmp_path / "q.jpg"
    query.save(path, quality=88)
    b64 = base64.b64encode(path.read_bytes()).decode()
    vector = local._store.vectors(["stripes-blue-square"])["stripes-blue-square"].tolist()
    cases = [({"id": "stripes-red-square"}, {}), ({"id": "dots-blue-circle"}, {"k": 5, "offset": 3}),
             ({"ids": ["stripes-red-square", "dots-green-circle"]}, {"k": 8}),
             ({"id": "stripes-red-square"}, {"negative": [{"id": "stripes-blue-square"}], "k": 6}),
             ({"id": "dots-red-square"}, {"filter": {"price": {"$lt": 30}, "shape": "square"}, "fields": ["price"]}),
             ({"id": "dots-red-square"}, {"group_by": "product_id"}),
             ({"id": "dots-red-square"}, {"boost": [{"filter": {"color": "black"}, "weight": 0.3}], "k": 12}),
             ({"file": str(path)}, {"k": 10}), ({"base64": b64}, {"k": 10}), ({"vector": vector}, {"k": 7}),
             ({"image": path.read_bytes()}, {"k": 4, "filter": {"tags": "dots"}})]
    for q, kw in cases:
        expected = local.search(q, **kw)
        assert expected["hits"], (q, kw)
        same_hits(expected, remote.search(q, **kw))
    same_hits(local.search({"file": str(path)}, k=10), remote.search_image(path.read_bytes(), k=10))
    same_hits(local.recommend("stripes-green-circle", k=6), remote.recommend("stripes-green-circle", k=6))
    for group_by in (False, "color"):
        expected = local.recommend("stripes-green-circle", k=12, group_by=group_by)
        assert expected["hits"]
        same_hits(expected, remote.recommend("stripes-green-circle", k=12, group_by=group_by))
    ids = ["dots-red-square", "stripes-red-square", "dots-black-circle", "nope"]
    expected, got = local.rerank(ids, {"file": str(path)}), remote.rerank(ids, {"file": str(path)})
    same_hits(expected, got)
    assert got["missing"] == expected["missing"] == ["nope"]
    assert remote.get("dots-red-square") == local.get("dots-red-square")
    copy = tmp_path / "copy.jpg"
    copy.write_bytes((pattern_catalog.parent / "img" / "dots-blue-square.jpg").read_bytes())
    expected = outcome(lambda: local.match({"file": str(copy)}))
    got = outcome(lambda: remote.match({"file": str(copy)}))
    assert expected == got
    if isinstance(got, dict):
        assert got["hits"][0]["_id"] == "dots-blue-square" and got["hits"][0]["_match"]["kind"] == "exact"
    assert outcome(lambda: local.duplicates()) == outcome(lambda: remote.duplicates())
    assert remote.count() == local.count() == 24


def same_batch(a: dict, b: dict) -> None:
    """same_hits for one query's hits, or for each of a `vectors` batch's lists."""
    if a["hits"] and isinstance(a["hits"][0], list):
        assert len(a["hits"]) == len(b["hits"])
        for x, y in zip(a["hits"], b["hits"]):
            same_hits({"hits": x}, {"hits": y})
    else:
        same_hits(a, b)


def test_numpy_query_vectors_give_the_embedded_hits(client, embedded) -> None:
    """A NumPy `vector` / `vectors` / negative anchor reaches the server as the same numbers: the
    embedded API's hits, key for key; a wrong dtype or shape fails locally with the embedded error."""
    local, remote = embedded.collection("patterns"), client.collection("patterns")
    stored = local._store.vectors(["stripes-blue-square", "dots-red-circle"])
    v32 = stored["stripes-blue-square"].astype(np.float32) + np.float32(0.013)  # not the stored row
    v64 = stored["dots-red-circle"].astype(np.float64) * 1.7
    cases = [({"vector": v32}, {"k": 7}), ({"vector": v64}, {"k": 5, "offset": 2}),
             ({"vectors": np.stack([v32, v64.astype(np.float32)])}, {"k": 6}),
             ({"vectors": [v32, v64]}, {"k": 6}),
             ({"vector": v32}, {"negative": [{"vector": v64}], "k": 6})]
    for q, kw in cases:
        expected = local.search(q, **kw)
        assert expected["hits"], (q, kw)
        same_batch(expected, remote.search(q, **kw))
        as_lists = {k: (v.tolist() if isinstance(v, np.ndarray) else [x.tolist() for x in v]) for k, v in q.items()}
        same_batch(expected, remote.search(as_lists, **kw))
    for bad in ({"vector": v32.astype(np.float16)}, {"vector": np.stack([v32, v32])}, {"vectors": v32}):
        expected = outcome(lambda: local.search(bad))
        assert expected[0] == "BadRequest"
        with pytest.raises(BadRequest) as err:
            remote.search(bad)
        assert "NumPy array" in str(err.value)


def test_file_records_are_sent_as_images(client, embedded, pattern_catalog: Path) -> None:
    """`_file` records upload the file's bytes: the vectors equal those ingested embedded.

    The server's body limit is below one batch of images, so the client splits batches."""
    remote = client.collection("viahttp", create=True)
    records = read_jsonl(pattern_catalog)
    records.insert(3, {"_id": "missing-file", "_file": "img/nope.jpg"})
    records.insert(5, {"_id": "too-big", "_vector": None, "_file": records[0]["_file"], "pad": "x" * LIMIT})
    results = remote.upsert(records, base_dir=pattern_catalog.parent)
    assert [r["_id"] for r in results] == [r["_id"] for r in records]
    by_id = {r["_id"]: r for r in results}
    assert by_id["missing-file"]["status"] == "error" and "file not found" in by_id["missing-file"]["error"]
    assert by_id["too-big"]["status"] == "error" and "limit" in by_id["too-big"]["error"]
    assert sum(r["status"] == "inserted" for r in results) == 24
    local = embedded.collection("patterns")
    for rid in ("stripes-red-square", "dots-purple-circle"):
        same_hits(local.search({"id": rid}, k=10, fields=["price"]), remote.search({"id": rid}, k=10, fields=["price"]))
    again = remote.upsert(read_jsonl(pattern_catalog), base_dir=pattern_catalog.parent)
    assert {r["status"] for r in again} == {"unchanged"}
    client.drop("viahttp")


def test_typed_errors_carry_codes(server, client, tmp_path: Path) -> None:
    with pytest.raises(Unauthorized) as info:
        lookalike.Client(server.url, key="wrong").collections()
    assert info.value.code == "unauthorized" and info.value.status == 401
    with pytest.raises(Unauthorized):
        lookalike.Client(server.url).collection("patterns")
    reader = lookalike.Client(server.url, key=SEARCH)
    col = reader.collection("patterns")
    assert col.search({"id": "dots-red-square"}, k=2)["hits"]
    with pytest.raises(Forbidden) as info:
        col.upsert([{"_id": "x", "_vector": [1.0]}])
    assert info.value.code == "forbidden" and info.value.status == 403
    with pytest.raises(Forbidden):
        reader.drop("patterns")
    with pytest.raises(NotFound) as nf:
        client.collection("patterns").get("nope")
    assert nf.value.status == 404 and "nope" in nf.value.message
    garbage = tmp_path / "not-an-image.jpg"
    garbage.write_bytes(b"this is text, not pixels")
    with pytest.raises(NotAnImage) as bad:
        client.collection("patterns").search({"file": str(garbage)})
    assert bad.value.status == 415
    with pytest.raises(NotAnImage):
        client.collection("patterns").search_image(garbage.read_bytes())
    with pytest.raises(BadRequest):
        client.collection("patterns").search({"url": "ftp://x"})
    with pytest.raises(Conflict):
        client.ensure_collection("patterns", model="none", dim=3)
    assert client.health() == {"status": "ok"}
    assert client.collection("patterns").count() == 24, "nothing above changed the data"


def test_uploaded_image_search_finds_its_class(client) -> None:
    image = draw_item("stripes", COLORS["green"], seed=77, size=260, shape="square")
    hits = client.collection("patterns").search_image(jpeg_bytes(image), k=3)["hits"]
    assert [h["_id"].split("-")[0] for h in hits] == ["stripes"] * 3
