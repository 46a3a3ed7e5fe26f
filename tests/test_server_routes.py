"""Every route of the HTTP contract and its status codes, through a real server process.

The server runs with an admin key (flag), a search key (environment), one CORS origin and a
small body limit; collections are `model: "none"` with tiny vectors, so this is fast.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from test_server_process import ServerProcess

ADMIN, SEARCH = "admin-secret-key", "search-secret-key"
LIMIT = 64 * 1024
ORIGIN = "https://shop.example"
CONTRACT_ROUTES = {
    ("get", "/v1/health"), ("get", "/v1/collections"), ("put", "/v1/collections/{name}"),
    ("get", "/v1/collections/{name}"), ("delete", "/v1/collections/{name}"),
    ("post", "/v1/collections/{name}/records"), ("get", "/v1/collections/{name}/records/{record_id}"),
    ("delete", "/v1/collections/{name}/records/{record_id}"), ("post", "/v1/collections/{name}/records/delete"),
    ("post", "/v1/collections/{name}/search"), ("post", "/v1/collections/{name}/search/image"),
    ("post", "/v1/collections/{name}/recommend"), ("post", "/v1/collections/{name}/rerank"),
    ("post", "/v1/collections/{name}/match"), ("post", "/v1/collections/{name}/duplicates"),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("routes") / "data"
    proc = ServerProcess(data, "--admin-key", ADMIN, "--cors-origin", ORIGIN, "--max-body-bytes", str(LIMIT),
                         env={"LOOKALIKE_SEARCH_KEY": SEARCH})
    with proc:
        yield proc


@pytest.fixture(scope="module")
def admin(server):
    with httpx.Client(base_url=server.url + "/v1", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def reader(server):
    with httpx.Client(base_url=server.url + "/v1", headers={"Authorization": f"Bearer {SEARCH}"}, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def anonymous(server):
    with httpx.Client(base_url=server.url + "/v1", timeout=60) as c:
        yield c


def error_of(response: httpx.Response, status: int, code: str) -> str:
    """Assert the contract's error shape and return the message."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]["message"]


VECTORS = {  # 3-d vectors, two product groups
    "r1": [1.0, 0.0, 0.0], "r2": [0.9, 0.1, 0.0], "r3": [0.7, 0.3, 0.0], "b1": [0.0, 1.0, 0.0],
    "b2": [0.1, 0.9, 0.1], "g1": [0.0, 0.0, 1.0],
}


def make_collection(admin: httpx.Client, name: str, **settings) -> list[dict]:
    r = admin.put(f"/collections/{name}", json={"model": "none", "dim": 3, **settings})
    assert r.status_code == 201, r.text
    records = [{"_id": rid, "_vector": vec, "color": rid[0], "product": f"p-{rid[0]}", "price": i * 10,
                "attrs": {"size": "L" if i % 2 else "S"}} for i, (rid, vec) in enumerate(VECTORS.items())]
    r = admin.post(f"/collections/{name}/records", json={"records": records})
    assert r.status_code == 200 and all(x["status"] == "inserted" for x in r.json()["results"])
    return records


# -- health, docs, unknown routes ---------------------------------------------------------
def test_health_needs_no_key(anonymous) -> None:
    r = anonymous.get("/health")
    assert r.status_code == 200 and r.json() == {"status": "ok"}


def test_openapi_documents_every_route_and_its_errors(server) -> None:
    doc = httpx.get(server.url + "/openapi.json").json()
    routes = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert CONTRACT_ROUTES <= routes
    assert "HTTPBearer" in doc["components"]["securitySchemes"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), (method, path)
            for status in ("401", "404", "413", "422", "500"):
                ref = op["responses"][status]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), (method, path, status)
            if (method, path) != ("get", "/v1/health"):
                assert op["security"] == [{"HTTPBearer": []}]
    assert {"application/json", "application/x-ndjson"} <= set(
        doc["paths"]["/v1/collections/{name}/records"]["post"]["requestBody"]["content"])
    upload = doc["paths"]["/v1/collections/{name}/search/image"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert "501" in doc["paths"]["/v1/collections/{name}/match"]["post"]["responses"]
    assert "409" in doc["paths"]["/v1/collections/{name}"]["put"]["responses"]
    docs = httpx.get(server.url + "/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn." not in docs.text, "the docs page must work offline"
    import re
    for asset in re.findall(r'(?:src|href)="(/[^"]+\.(?:js|css))"', docs.text):
        assert httpx.get(server.url + asset).status_code == 200, asset
    assert re.findall(r'src="(/[^"]+\.js)"', docs.text)


def test_unknown_route_and_method(admin) -> None:
    error_of(admin.get("/nope"), 404, "not_found")
    error_of(admin.patch("/collections/x"), 405, "method_not_allowed")


# -- keys ---------------------------------------------------------------------------------
def test_missing_or_wrong_key_is_401(anonymous, server) -> None:
    r = anonymous.get("/collections")
    assert "missing API key" in error_of(r, 401, "unauthorized")
    assert r.headers["www-authenticate"] == "Bearer"
    error_of(anonymous.get("/collections", headers={"Authorization": "Bearer nope"}), 401, "unauthorized")
    error_of(anonymous.get("/collections", headers={"Authorization": f"Basic {ADMIN}"}), 401, "unauthorized")
    error_of(anonymous.get("/collections", headers={"Authorization": f"Bearer {ADMIN}x"}), 401, "unauthorized")
    # a write without a key is refused before its body is even read
    error_of(anonymous.post("/collections/k/records", content=b"x" * (LIMIT * 2)), 401, "unauthorized")


def test_search_key_reads_but_cannot_write(admin, reader) -> None:
    make_collection(admin, "keys")
    assert reader.get("/collections").status_code == 200
    assert reader.get("/collections/keys").status_code == 200
    assert reader.get("/collections/keys/records/r1").status_code == 200
    assert reader.post("/collections/keys/search", json={"query": {"id": "r1"}}).status_code == 200
    assert reader.post("/collections/keys/recommend", json={"id": "r1"}).status_code == 200
    assert reader.post("/collections/keys/rerank", json={"ids": ["r2"], "query": {"id": "r1"}}).status_code == 200
    assert reader.post("/collections/keys/match", json={"query": {"id": "r1"}}).status_code != 403
    assert reader.post("/collections/keys/duplicates", json={}).status_code == 200  # a read (the web page's)
    files = {"image": ("x.jpg", b"not an image", "image/jpeg")}
    assert reader.post("/collections/keys/search/image", files=files).status_code == 400  # model none, not 403
    writes = [("PUT", "/collections/keys", {"model": "none", "dim": 3}), ("DELETE", "/collections/keys", None),
              ("POST", "/collections/keys/records", {"records": []}), ("DELETE", "/collections/keys/records/r1", None),
              ("POST", "/collections/keys/records/delete", {"ids": ["r1"]})]
    for method, path, body in writes:
        r = reader.request(method, path, json=body) if body is not None else reader.request(method, path)
        assert "admin key" in error_of(r, 403, "forbidden"), (method, path)
    assert admin.get("/collections/keys").json()["count"] == len(VECTORS), "a refused write changed nothing"


# -- collections --------------------------------------------------------------------------
def test_collection_create_get_list_drop(admin) -> None:
    r = admin.put("/collections/shoes", json={"model": "none", "dim": 3, "group_field": "product"})
    assert r.status_code == 201
    info = r.json()
    assert info["name"] == "shoes" and info["count"] == 0 and info["dim"] == 3 and info["model"] == "none"
    assert {"index", "bytes", "metric", "group_field"} <= set(info) and info["group_field"] == "product"
    again = admin.put("/collections/shoes", json={"model": "none", "dim": 3})
    assert again.status_code == 200 and again.json()["group_field"] == "product", "unchanged when not given"
    assert admin.put("/collections/shoes").status_code == 200  # no body at all
    listed = admin.get("/collections").json()["collections"]
    assert {"name": "shoes", "count": 0, "model": "none"} in listed
    got = admin.get("/collections/shoes").json()
    assert got["count"] == 0 and got["dim"] == 3 and got["model"] == "none" and "bytes" in got and "index" in got
    assert admin.delete("/collections/shoes").json() == {"name": "shoes", "deleted": True}
    error_of(admin.get("/collections/shoes"), 404, "not_found")
    error_of(admin.delete("/collections/shoes"), 404, "not_found")
    assert all(c["name"] != "shoes" for c in admin.get("/collections").json()["collections"])


def test_collection_errors(admin) -> None:
    assert "invalid collection name" in error_of(admin.put("/collections/Bad!Name", json={}), 400, "bad_request")
    error_of(admin.get("/collections/-bad"), 400, "bad_request")
    assert "needs 'dim'" in error_of(admin.put("/collections/nodim", json={"model": "none"}), 400, "bad_request")
    assert "colour" in error_of(admin.put("/collections/unk", json={"model": "none", "dim": 2, "colour": 1}),
                                400, "bad_request")
    assert "dim" in error_of(admin.put("/collections/strdim", json={"model": "none", "dim": "3"}), 422,
                             "validation_error")
    error_of(admin.put("/collections/badmetric", json={"model": "none", "dim": 2, "metric": "l7"}), 400, "bad_request")
    make_collection(admin, "full")
    msg = error_of(admin.put("/collections/full", json={"model": "none", "dim": 5}), 409, "conflict")
    assert "create a new collection" in msg
    assert admin.get("/collections/full").json()["dim"] == 3


# -- records ------------------------------------------------------------------------------
def test_batch_ingest_bad_records_fail_alone(admin) -> None:
    admin.put("/collections/batch", json={"model": "none", "dim": 3})
    records = [{"_id": "a", "_vector": [1, 0, 0], "n": 1},
               {"_vector": [0, 1, 0]},
               {"_id": "f", "_file": "/etc/hostname"},
               {"_id": "w", "_vector": [1, 2]},
               "not an object",
               {"_id": "u", "_url": "ftp://x"},
               {"_id": "b", "_vector": [0, 1, 0], "_labels": []},
               {"_id": "c", "_vector": [0, 0, 1], "nested": {"x": {"y": [1, 2]}}}]
    results = admin.post("/collections/batch/records", json={"records": records}).json()["results"]
    assert [r["status"] for r in results] == ["inserted", "error", "error", "error", "error", "error", "error",
                                              "inserted"]
    assert [r["_id"] for r in results] == ["a", None, "f", "w", None, "u", "b", "c"]
    assert "_id" in results[1]["error"]
    assert "not over HTTP" in results[2]["error"]
    assert "3" in results[3]["error"]
    again = [{"_id": "a", "_vector": [1, 0, 0], "n": 1}, {"_id": "c", "_vector": [0, 0, 1], "nested": {"x": 1}}]
    assert [r["status"] for r in admin.post("/collections/batch/records", json={"records": again}).json()["results"]] \
        == ["unchanged", "updated"]
    assert admin.get("/collections/batch").json()["count"] == 2
    assert admin.get("/collections/batch/records/c").json()["nested"] == {"x": 1}
    assert admin.post("/collections/batch/records", json={"records": []}).json() == {"results": []}


def test_ingest_request_errors(admin) -> None:
    admin.put("/collections/reqerr", json={"model": "none", "dim": 3})
    bad_json = admin.post("/collections/reqerr/records", content=b'{"records": [',
                          headers={"Content-Type": "application/json"})
    assert "not valid JSON" in error_of(bad_json, 400, "bad_request")
    error_of(admin.post("/collections/reqerr/records", json={"records": 5}), 422, "validation_error")
    error_of(admin.post("/collections/reqerr/records", json={"rows": []}), 422, "validation_error")
    error_of(admin.post("/collections/reqerr/records", json=[{"_id": "a"}]), 422, "validation_error")
    text = admin.post("/collections/reqerr/records", content=b"a,b", headers={"Content-Type": "text/csv"})
    error_of(text, 415, "unsupported_media_type")
    error_of(admin.post("/collections/missing/records", json={"records": []}), 404, "not_found")
    assert admin.get("/collections/reqerr").json()["count"] == 0


def test_body_over_the_limit_is_413_and_changes_nothing(admin) -> None:
    make_collection(admin, "big")
    records = [{"_id": f"x{i}", "_vector": [1, 0, i], "pad": "x" * 1000} for i in range(100)]
    r = admin.post("/collections/big/records", json={"records": records})
    assert "limit" in error_of(r, 413, "too_large")

    def chunked():  # no Content-Length: counted while read
        body = json.dumps({"records": records}).encode()
        for i in range(0, len(body), 4096):
            yield body[i:i + 4096]
    error_of(admin.post("/collections/big/records", content=chunked(), headers={"Content-Type": "application/json"}),
             413, "too_large")
    error_of(admin.post("/collections/big/search", json={"query": {"vector": [1.0] * 20000}}), 413, "too_large")
    assert admin.get("/collections/big").json()["count"] == len(VECTORS)
    assert admin.post("/collections/big/search", json={"query": {"id": "r1"}}).status_code == 200


def test_ndjson_streaming_ingest(admin) -> None:
    admin.put("/collections/stream", json={"model": "none", "dim": 3})
    lines = [json.dumps({"_id": f"s{i}", "_vector": [1, i, 0], "i": i}) for i in range(100)]
    lines[10] = "{not json"
    lines[20] = json.dumps({"_id": "huge", "_vector": [1, 0, 0], "pad": "x" * (LIMIT + 10)})
    lines[30] = ""
    body = ("\n".join(lines) + "\n").encode()
    assert len(body) > LIMIT, "a stream may be larger than the body limit; only each line is bounded"

    def chunks():
        for i in range(0, len(body), 1000):
            yield body[i:i + 1000]
    r = admin.post("/collections/stream/records", content=chunks(), headers={"Content-Type": "application/x-ndjson"})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert len(results) == 99  # the blank line is no record
    errors = [x for x in results if x["status"] == "error"]
    assert [e["error"].split(" is ")[0] for e in errors] == ["line 11", "line 21"]
    assert "longer than" in errors[1]["error"]
    assert sum(x["status"] == "inserted" for x in results) == 97
    assert admin.get("/collections/stream").json()["count"] == 97
    assert admin.get("/collections/stream/records/s99").json()["i"] == 99


def test_ingest_runs_beside_searches(admin, server) -> None:
    """A paused NDJSON upload holds its request open; reads go on and see its committed batches."""
    make_collection(admin, "live")
    gate, sent_first = threading.Event(), threading.Event()
    first = "".join(json.dumps({"_id": f"l{i}", "_vector": [1, 1, i]}) + "\n" for i in range(64)).encode()
    rest = "".join(json.dumps({"_id": f"m{i}", "_vector": [1, 1, i]}) + "\n" for i in range(10)).encode()

    def body():
        yield first
        sent_first.set()
        gate.wait(60)
        yield rest
    outcome: dict = {}

    def upload():
        with httpx.Client(timeout=120, headers={"Authorization": f"Bearer {ADMIN}"}) as c:
            outcome["r"] = c.post(server.url + "/v1/collections/live/records", content=body(),
                                  headers={"Content-Type": "application/x-ndjson"})
    thread = threading.Thread(target=upload)
    thread.start()
    try:
        assert sent_first.wait(30)
        count = 0
        for _ in range(200):  # the first 64 records are 2 batches of 32: committed while the upload waits
            count = admin.get("/collections/live").json()["count"]
            assert admin.post("/collections/live/search", json={"query": {"id": "r1"}, "k": 3}).status_code == 200
            assert httpx.get(server.url + "/v1/health").status_code == 200
            if count >= len(VECTORS) + 32:
                break
        assert count >= len(VECTORS) + 32, "batches of a running upload become searchable"
        assert "r" not in outcome, "the upload is still open"
    finally:
        gate.set()
        thread.join(60)
    assert outcome["r"].status_code == 200
    assert len(outcome["r"].json()["results"]) == 74
    assert admin.get("/collections/live").json()["count"] == len(VECTORS) + 74


def test_get_and_delete_one_record(admin) -> None:
    admin.put("/collections/ids", json={"model": "none", "dim": 2})
    odd = ["a/b/c", "sp ace", "..", "q?x=1#f", "100%", "é"]
    results = admin.post("/collections/ids/records",
                         json={"records": [{"_id": i, "_vector": [1, 2], "k": i} for i in odd]}).json()["results"]
    assert all(r["status"] == "inserted" for r in results)
    from urllib.parse import quote
    for rid in odd:
        path = "/collections/ids/records/" + quote(rid, safe="").replace(".", "%2E")
        got = admin.get(path)
        assert got.status_code == 200 and got.json()["_id"] == rid and got.json()["k"] == rid
        assert admin.delete(path).json() == {"deleted": 1}
        error_of(admin.get(path), 404, "not_found")
        error_of(admin.delete(path), 404, "not_found")
    error_of(admin.get("/collections/nope/records/a"), 404, "not_found")
    assert admin.get("/collections/ids").json()["count"] == 0


def test_delete_by_ids_and_filter(admin) -> None:
    make_collection(admin, "del")
    assert admin.post("/collections/del/records/delete", json={"ids": ["r1", "zz", "r1"]}).json() == {"deleted": 1}
    assert admin.post("/collections/del/records/delete", json={"filter": {"color": "b"}}).json() == {"deleted": 2}
    assert admin.post("/collections/del/records/delete",
                      json={"filter": {"attrs.size": "L", "price": {"$gte": 0}}}).json() == {"deleted": 2}  # r2, g1
    left = admin.get("/collections/del").json()["count"]
    assert left == len(VECTORS) - 5
    error_of(admin.post("/collections/del/records/delete", json={}), 400, "bad_request")
    error_of(admin.post("/collections/del/records/delete", json={"ids": ["a"], "filter": {"a": 1}}), 400, "bad_request")
    assert "$regex" in error_of(admin.post("/collections/del/records/delete", json={"filter": {"a": {"$regex": "x"}}}),
                                400, "bad_request")
    error_of(admin.post("/collections/del/records/delete", json={"filter": {}}), 400, "bad_request")
    error_of(admin.post("/collections/del/records/delete", json={"ids": "r2"}), 422, "validation_error")
    assert admin.get("/collections/del").json()["count"] == left


# -- search -------------------------------------------------------------------------------
def test_search(admin) -> None:
    make_collection(admin, "srch")
    r = admin.post("/collections/srch/search", json={"query": {"id": "r1"}, "k": 3})
    body = r.json()
    assert r.status_code == 200 and set(body) == {"hits", "took_ms"}
    assert [h["_id"] for h in body["hits"]] == ["r2", "r3", "b2"]
    scores = [h["_score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.99
    assert body["hits"][0]["color"] == "r" and body["hits"][0]["attrs"] == {"size": "L"}
    page2 = admin.post("/collections/srch/search", json={"query": {"id": "r1"}, "k": 2, "offset": 2}).json()["hits"]
    assert [h["_id"] for h in page2] == ["b2", "b1"]
    filtered = admin.post("/collections/srch/search",
                          json={"query": {"vector": [1, 0, 0]}, "filter": {"price": {"$gt": 10}}, "fields": ["price"]})
    hits = filtered.json()["hits"]
    assert [h["_id"] for h in hits][:2] == ["r3", "b2"] and all(h["price"] > 10 for h in hits)
    assert set(hits[0]) == {"_id", "_score", "price"}
    grouped = admin.post("/collections/srch/search", json={"query": {"vector": [1, 0, 0]}, "group_by": "product"})
    hits = grouped.json()["hits"]
    assert [h["_group"] for h in hits] == ["p-r", "p-b", "p-g"]
    neg = admin.post("/collections/srch/search", json={"query": {"id": "r2"}, "negative": [{"id": "r1"}], "k": 6})
    ids = [h["_id"] for h in neg.json()["hits"]]
    assert "r1" not in ids and "r2" not in ids
    boosted = admin.post("/collections/srch/search",
                         json={"query": {"vector": [1, 0, 0]}, "boost": [{"filter": {"color": "g"}, "weight": 2}]})
    assert boosted.json()["hits"][0]["_id"] == "g1"
    several = admin.post("/collections/srch/search", json={"query": {"ids": ["r1", "b1"]}, "k": 6}).json()["hits"]
    assert {"r1", "b1"}.isdisjoint(h["_id"] for h in several)


def test_search_errors(admin) -> None:
    make_collection(admin, "serr")
    post = lambda body: admin.post("/collections/serr/search", json=body)  # noqa: E731
    assert "unknown query kind" in error_of(post({"query": {"shape": "x"}}), 400, "bad_request")
    assert "only accepted by the CLI" in error_of(post({"query": {"file": "/etc/passwd"}}), 400, "bad_request")
    error_of(post({"query": {"id": "r1", "ids": ["r2"]}}), 400, "bad_request")
    error_of(post({"query": {"vector": [1, 0]}}), 400, "bad_request")
    for huge in ([1e39, 1, 1], [3e38, 3e38, 0]):  # beyond float32, or scores that would overflow: 400, never NaN
        assert "too long" in error_of(post({"query": {"vector": huge}}), 400, "bad_request")
    big = "9" * 400  # JSON allows integers no float can hold
    for body in (f'{{"query": {{"vector": [{big}, 1, 1]}}}}',
                 f'{{"query": {{"id": "r1"}}, "filter": {{"price": {big}}}}}',
                 f'{{"query": {{"id": "r1"}}, "boost": [{{"filter": {{"price": 1}}, "weight": {big}}}]}}',
                 '{"query": {"id": "r1"}, "boost": [{"filter": {"price": 10}, "weight": 1e39}]}'):
        r = admin.post("/collections/serr/search", content=body.encode(), headers={"Content-Type": "application/json"})
        error_of(r, 400, "bad_request")
    records = (f'{{"records": [{{"_id": "z", "_vector": [1, 1, 1], "n": {big}}}, '
               f'{{"_id": "y", "_vector": [{big}, 1, 1]}}]}}')
    r = admin.post("/collections/serr/records", content=records.encode(), headers={"Content-Type": "application/json"})
    assert [x["status"] for x in r.json()["results"]] == ["error", "error"]
    error_of(post({"query": {"base64": "%%%"}}), 400, "bad_request")
    assert "has no 'weight'" in error_of(post({"query": {"id": "r1"}, "boost": [{"filter": {"price": 1}}]}),
                                         400, "bad_request")
    assert "$near" in error_of(post({"query": {"id": "r1"}, "filter": {"x": {"$near": 1}}}), 400, "bad_request")
    error_of(post({"query": {"id": "nope"}}), 404, "not_found")
    error_of(post({"query": {"id": "r1"}, "k": 0}), 422, "validation_error")
    error_of(post({"query": {"id": "r1"}, "k": 1001}), 422, "validation_error")
    error_of(post({"query": {"id": "r1"}, "unknown": 1}), 422, "validation_error")
    error_of(post({"k": 3}), 422, "validation_error")
    bad = admin.post("/collections/serr/search", content=b"{", headers={"Content-Type": "application/json"})
    error_of(bad, 400, "bad_request")
    for query in ({"text": "red"}, {"color": "#ff0000"}):  # 501 until built; then a real answer
        r = post({"query": query})
        if r.status_code == 501:
            error_of(r, 501, "not_implemented")
        elif r.status_code >= 400:
            error_of(r, r.status_code, r.json()["error"]["code"])
        else:
            assert "hits" in r.json()
    error_of(admin.post("/collections/none/search", json={"query": {"id": "r1"}}), 404, "not_found")


def test_search_image_multipart(admin) -> None:
    make_collection(admin, "simg")
    files = {"image": ("a.jpg", b"\xff\xd8 not really", "image/jpeg")}
    assert "model 'none'" in error_of(admin.post("/collections/simg/search/image", files=files), 400, "bad_request")
    error_of(admin.post("/collections/simg/search/image", files=files, data={"params": "{oops"}), 400, "bad_request")
    error_of(admin.post("/collections/simg/search/image", files=files, data={"params": '{"k": 0}'}), 422,
             "validation_error")
    error_of(admin.post("/collections/simg/search/image", files=files, data={"params": '{"query": {"id": "r1"}}'}),
             400, "bad_request")
    error_of(admin.post("/collections/simg/search/image", data={"params": "{}"}), 422, "validation_error")


def test_recommend_and_rerank(admin) -> None:
    admin.put("/collections/rec", json={"model": "none", "dim": 3, "group_field": "product"})
    make_collection(admin, "rec2")
    r = admin.post("/collections/rec2/recommend", json={"id": "r1", "k": 3})
    assert r.status_code == 200 and [h["_id"] for h in r.json()["hits"]] == ["r2", "r3", "b2"]
    records = [{"_id": rid, "_vector": v, "product": f"p-{rid[0]}"} for rid, v in VECTORS.items()]
    admin.post("/collections/rec/records", json={"records": records})
    hits = admin.post("/collections/rec/recommend", json={"id": "r1"}).json()["hits"]
    assert [h["_group"] for h in hits] == ["p-b", "p-g"], "its own group is left out"
    error_of(admin.post("/collections/rec/recommend", json={"id": "zz"}), 404, "not_found")
    error_of(admin.post("/collections/rec/recommend", json={"k": 2}), 422, "validation_error")
    rr = admin.post("/collections/rec2/rerank", json={"ids": ["g1", "b2", "r3", "nope", "r2"], "query": {"id": "r1"}})
    body = rr.json()
    assert [h["_id"] for h in body["hits"]] == ["r2", "r3", "b2", "g1"] and body["missing"] == ["nope"]
    error_of(admin.post("/collections/rec2/rerank", json={"ids": [], "query": {"id": "r1"}}), 400, "bad_request")
    error_of(admin.post("/collections/rec2/rerank", json={"ids": ["r1"], "query": {"nope": 1}}), 400, "bad_request")


def test_match_and_duplicates(admin) -> None:
    """Answered by the engine (501 while not built, never a stub); the image cases are in test_client."""
    make_collection(admin, "dup")
    r = admin.post("/collections/dup/match", json={"query": {"id": "r1"}})
    if r.status_code == 501:
        error_of(r, 501, "not_implemented")
    else:  # vector records have no image fingerprint to match
        assert "fingerprint" in error_of(r, 400, "bad_request")
    for body in ({"threshold": 0.9}, None):
        r = admin.post("/collections/dup/duplicates", json=body) if body else admin.post("/collections/dup/duplicates")
        if r.status_code == 501:
            error_of(r, 501, "not_implemented")
        else:
            assert r.status_code == 200 and isinstance(r.json()["clusters"], list), r.text
    error_of(admin.post("/collections/dup/match", json={"threshold": 0.5}), 422, "validation_error")
    error_of(admin.post("/collections/dup/match", json={"query": {"id": "r1"}, "k": 0}), 422, "validation_error")
    error_of(admin.post("/collections/nope/duplicates", json={}), 404, "not_found")


# -- CORS ---------------------------------------------------------------------------------
def test_cors_only_for_the_configured_origin(server) -> None:
    pre = httpx.options(server.url + "/v1/collections", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ORIGIN
    other = httpx.options(server.url + "/v1/collections", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in other.headers
    simple = httpx.get(server.url + "/v1/health", headers={"Origin": ORIGIN})
    assert simple.headers["access-control-allow-origin"] == ORIGIN


def test_cors_off_by_default(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "d") as server:
        r = httpx.get(server.url + "/v1/health", headers={"Origin": ORIGIN})
        assert r.status_code == 200 and "access-control-allow-origin" not in r.headers
        pre = httpx.options(server.url + "/v1/collections", headers={"Origin": ORIGIN,
                                                                     "Access-Control-Request-Method": "GET"})
        assert "access-control-allow-origin" not in pre.headers
        root = httpx.get(server.url + "/", follow_redirects=True)
        assert root.status_code == 200
