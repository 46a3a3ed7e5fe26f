"""Issue 18 items 2, 3, 6, 10, 11, 12: what a client sends never reaches another record,
never half-saves, never skips the body limit, and the page never leaks viewers to other hosts.

Each test drives the real app (FastAPI's TestClient on create_app over a tmp data folder)
with `model: none` collections and `_vector` records, so no image model is needed except
where a URL record's thumbnail is checked (a tiny TorchScript model made here).
"""
from __future__ import annotations

import asyncio
import io
import json
import os
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.errors import BadRequest
from lookalike.sample import COLORS, draw_item
from lookalike.server.app import create_app
from lookalike.testing.servers import serving_files

from conftest import jpeg_bytes

ADMIN, SEARCH = "hygiene-admin-key", "hygiene-search-key"
V = [1.0, 0.0, 0.0, 0.0]


@pytest.fixture
def served(tmp_path):
    """(TestClient without keys, the Database it serves, the data folder) with collection 'c': dd, ee."""
    folder = tmp_path / "data"
    db = lookalike.connect(folder, allow_file=False)
    http = TestClient(create_app(db, max_body_bytes=64 * 1024), raise_server_exceptions=False)
    assert http.put("/v1/collections/c", json={"model": "none", "dim": 4}).status_code == 201
    http.post("/v1/collections/c/records", json={"records": [{"_id": "dd", "_vector": V},
                                                             {"_id": "ee", "_vector": [0, 1, 0, 0]}]})
    yield http, db, folder
    http.close()
    db.close()


def message(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return response.json()["error"]["message"]


def ids_of(db, name: str = "c") -> set[str]:
    return {r["_id"] for r in db.collection(name).records(limit=1000)["records"]}


def client_of(http: TestClient) -> lookalike.Client:
    """The Python client, its requests going to the in-process app."""
    client = lookalike.Client("http://testserver")
    client._http = TestClient(http.app, base_url="http://testserver/v1", raise_server_exceptions=False)
    return client


def raw_post(http: TestClient, path: str, body: bytes, ctype: str = "application/json") -> httpx.Response:
    return http.post(path, content=body, headers={"Content-Type": ctype})


# -- item 2: an id with a trailing newline addresses another record ------------------------
def test_trailing_newline_in_a_path_reaches_no_other_record(served) -> None:
    http, db, folder = served
    assert "control character" in message(http.get("/v1/collections/c/records/dd%0A"), 400)
    assert "control character" in message(http.delete("/v1/collections/c/records/dd%0A"), 400)
    assert http.get("/v1/collections/c/records/dd").json()["_id"] == "dd"
    assert ids_of(db) == {"dd", "ee"}
    assert http.put("/v1/collections/nl%0A", json={"model": "none", "dim": 4}).status_code == 400
    assert http.delete("/v1/collections/c%0A").status_code == 400
    assert [c["name"] for c in http.get("/v1/collections").json()["collections"]] == ["c"]
    assert not [p for p in folder.rglob("*") if "\n" in p.name]


def test_newline_ids_are_refused_the_same_way_everywhere(served) -> None:
    http, db, _ = served
    results = http.post("/v1/collections/c/records", json={"records": [
        {"_id": "dd\n", "_vector": [0, 0, 1, 0]}, {"_id": "ok", "_vector": V}]}).json()["results"]
    assert results[0]["status"] == "error" and "control character" in results[0]["error"]
    assert results[1]["status"] == "inserted"
    for path, body in (("search", {"query": {"id": "dd\n"}}), ("search", {"query": {"ids": ["ee", "dd\n"]}}),
                       ("rerank", {"ids": ["dd\n"], "query": {"id": "ee"}}), ("recommend", {"id": "dd\n"}),
                       ("match", {"query": {"id": "dd\n"}}),
                       ("records/delete", {"ids": ["dd\x00"]})):
        assert "control character" in message(http.post(f"/v1/collections/c/{path}", json=body), 400), path
    assert ids_of(db) == {"dd", "ee", "ok"}
    col = db.collection("c")
    for call in (lambda: col.get("dd\n"), lambda: col.delete(["dd\n"]), lambda: col.search({"id": "dd\n"})):
        with pytest.raises(BadRequest, match="control character"):
            call()
    with pytest.raises(BadRequest, match="invalid collection name"):
        db.collection("nl\n", create=True, model="none", dim=4)


def test_python_client_never_reaches_another_record(served) -> None:
    http, db, _ = served
    client = client_of(http)
    remote = client.collection("c")
    with pytest.raises(BadRequest, match="control character"):
        remote.get("dd\n")
    with pytest.raises(BadRequest, match="control character"):
        remote.delete("dd\n")
    with pytest.raises(BadRequest, match="invalid collection name"):
        client.collection("c\n")
    assert remote.get("dd")["_id"] == "dd" and ids_of(db) == {"dd", "ee"}


# -- item 3: a lone surrogate --------------------------------------------------------------
SURROGATE_BATCH = (b'{"records": [{"_id": "s1", "_vector": [1, 0, 0, 0]}, {"_id": "\\ud800", "_vector": [1, 0, 0, 0]},'
                   b' {"_id": "s2", "_vector": [0, 1, 0, 0], "title": "x\\udc00"},'
                   b' {"_id": "s3", "_vector": [0, 1, 0, 0], "\\ud801": 1}, {"_id": "s4", "_vector": [0, 0, 1, 0]}]}')


def test_lone_surrogate_is_one_records_error_and_the_batch_is_stored(served) -> None:
    http, db, _ = served
    r = raw_post(http, "/v1/collections/c/records", SURROGATE_BATCH)
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["inserted", "error", "error", "error", "inserted"]
    assert results[1]["_id"] == "\ud800"  # echoed exactly as sent (as a JSON escape)
    assert all("lone surrogate" in x["error"] for x in results[1:4])
    assert ids_of(db) == {"dd", "ee", "s1", "s4"}
    lines = b'{"_id": "n1", "_vector": [1, 0, 0, 0]}\n{"_id": "n\\udfff", "_vector": [1, 0, 0, 0]}\n' \
            b'{"_id": "n2", "_vector": [1, 0, 0, 0]}\n'
    results = raw_post(http, "/v1/collections/c/records", lines, "application/x-ndjson").json()["results"]
    assert [x["status"] for x in results] == ["inserted", "error", "inserted"]
    assert http.get("/v1/collections/c").json()["count"] == 6


def test_lone_surrogate_elsewhere_is_400_and_nothing_is_half_created(served) -> None:
    http, db, _ = served
    r = http.put("/v1/collections/half", content=b'{"model": "none", "dim": 4, "group_field": "\\ud800"}',
                 headers={"Content-Type": "application/json"})
    assert "lone surrogate" in message(r, 400) and "group_field" in message(r, 400)
    assert http.get("/v1/collections/half").status_code == 404
    assert [c["name"] for c in http.get("/v1/collections").json()["collections"]] == ["c"]
    for path, body in (("rerank", b'{"ids": ["\\ud800"], "query": {"id": "dd"}}'),
                       ("search", b'{"query": {"id": "dd"}, "filter": {"t": "\\ud800"}}'),
                       ("search", b'{"query": {"vector": [1, 0, 0, 0]}, "fields": ["\\udc00"]}'),
                       ("records/delete", b'{"ids": ["dd", "\\ud800"]}')):
        assert "lone surrogate" in message(raw_post(http, f"/v1/collections/c/{path}", body), 400), path
    facets = http.get("/v1/collections/c/facets", params={"filter": '{"t": "\\ud800"}'})
    assert "lone surrogate" in message(facets, 400)
    form = {"params": '{"filter": {"t": "\\ud800"}}'}
    image = {"image": ("x.jpg", jpeg_bytes(draw_item("dots", COLORS["red"], size=64)), "image/jpeg")}
    assert "lone surrogate" in message(http.post("/v1/collections/c/search/image", data=form, files=image), 400)
    assert ids_of(db) == {"dd", "ee"}


def test_python_client_sends_the_rest_of_a_batch_around_a_surrogate(served) -> None:
    http, db, _ = served
    remote = client_of(http).collection("c")
    results = remote.upsert([{"_id": "a", "_vector": V}, {"_id": "b\ud800", "_vector": V}, {"_id": "c", "_vector": V}])
    assert [r["status"] for r in results] == ["inserted", "error", "inserted"]
    assert "lone surrogate" in results[1]["error"]
    with pytest.raises(BadRequest, match="lone surrogate"):
        remote.search({"id": "dd"}, filter={"t": "\ud800"})
    assert ids_of(db) == {"dd", "ee", "a", "c"}


# -- item 6: the body limit and NDJSON -----------------------------------------------------
def test_ndjson_content_type_does_not_skip_the_body_limit(served) -> None:
    http, _, _ = served
    big = b'{"query": {"id": "dd"}, "k": 1}' + b" " * (100 * 1024)
    for path in ("search", "rerank", "match", "duplicates", "records/delete"):
        r = raw_post(http, f"/v1/collections/c/{path}", big, "application/x-ndjson")
        assert "limit of 65536 bytes" in message(r, 413), path
    assert http.put("/v1/collections/x", content=big, headers={"Content-Type": "application/x-ndjson"}
                    ).status_code == 413
    lines = b"".join(b'{"_id": "r%d", "_vector": [1, 0, 0, 0]}\n' % i for i in range(3000))  # > limit, short lines
    assert len(lines) > 64 * 1024
    r = raw_post(http, "/v1/collections/c/records", lines, "application/x-ndjson")
    assert r.status_code == 200 and len(r.json()["results"]) == 3000  # the upsert route streams


def _call(app, method: str, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, int]:
    """(status, how many times the app asked for the body) for one request sent to the ASGI app."""
    reads = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": reads < 1000}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "server": ("t", 80),
             "client": ("127.0.0.1", 1), "headers": [(b"host", b"t"), (b"content-length", b"1024000"), *headers]}
    asyncio.run(app(scope, receive, send))
    return next(m["status"] for m in sent if m["type"] == "http.response.start"), reads


def test_refused_and_open_requests_never_have_their_body_read(tmp_path) -> None:
    with lookalike.connect(tmp_path / "d", allow_file=False) as db:
        app = create_app(db, admin_key=ADMIN, search_key=SEARCH)
        json_type = [(b"content-type", b"application/json")]
        ndjson = [(b"content-type", b"application/x-ndjson")]
        assert _call(app, "POST", "/v1/collections/c/search", json_type) == (401, 0)
        assert _call(app, "POST", "/v1/collections/c/records", ndjson) == (401, 0)
        wrong = [(b"authorization", b"Bearer nope")]
        assert _call(app, "POST", "/v1/collections/c/records", ndjson + wrong) == (401, 0)
        reader = [(b"authorization", f"Bearer {SEARCH}".encode())]
        assert _call(app, "POST", "/v1/collections/c/records", ndjson + reader) == (403, 0)
        assert _call(app, "POST", "/v1/health", json_type) == (405, 0)  # open route: the body is not read
        assert _call(app, "POST", "/", json_type)[1] == 0


# -- item 10: the web page -----------------------------------------------------------------
def test_page_and_assets_send_security_headers(served) -> None:
    http, _, _ = served
    for path in ("/", "/ui/app.js", "/ui/style.css"):
        r = http.get(path)
        assert r.status_code == 200, path
        csp = r.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"


def test_page_script_never_uses_a_records_url(served) -> None:
    http, _, _ = served
    script = http.get("/ui/app.js").text
    assert "_url" not in script.replace("record's _url", "")  # images come from kept thumbnails only


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    """A TorchScript image model (mean colour, 6-d) in a models folder, with 32-pixel input."""
    import torch

    class Tiny(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(dim=(2, 3))
            return torch.cat([m, m * m], dim=1)

    folder = tmp_path_factory.mktemp("models")
    torch.jit.script(Tiny()).save(str(folder / "tiny.pt"))
    (folder / "tiny.json").write_text(json.dumps({"input_size": 32}))
    return folder / "tiny.pt"


@pytest.fixture
def image_host():
    """A loopback HTTP server with one JPEG at /a.jpg, counting requests."""
    with serving_files({"/a.jpg": jpeg_bytes(draw_item("stripes", COLORS["blue"], seed=3, size=200))}) as host:
        yield host


def test_url_records_keep_a_thumbnail_for_the_page(tmp_path, tiny_model, image_host) -> None:
    base, hits = image_host
    with lookalike.connect(tmp_path / "d") as db:
        col = db.collection("u", create=True, model=f"torchscript:{tiny_model}")
        assert col.upsert([{"_id": "a", "_url": f"{base}/a.jpg"}])[0]["status"] == "inserted"
        thumb = Image.open(io.BytesIO(col.thumbnail("a")))
        assert thumb.format == "JPEG" and min(thumb.size) >= 32
    assert hits == ["/a.jpg"]


# -- item 11: files and models outside their folders ---------------------------------------
def test_catalogue_files_stay_inside_the_catalogue_folder(tmp_path) -> None:
    outside = tmp_path / "secret.jpg"
    draw_item("dots", COLORS["red"], size=64).save(outside)
    folder = tmp_path / "cat" / "sub"
    folder.mkdir(parents=True)
    draw_item("dots", COLORS["blue"], size=64).save(folder / "in.jpg")
    with lookalike.connect(tmp_path / "d") as db:
        col = db.collection("f", create=True, model="efficientnet-lite0-style")
        results = col.upsert([{"_id": "rel", "_file": "../../secret.jpg"}, {"_id": "abs", "_file": str(outside)},
                              {"_id": "dots", "_file": "./x/../../sub/../../secret.jpg"},
                              {"_id": "in", "_file": "in.jpg"}], base_dir=folder)
        assert [r["status"] for r in results] == ["error", "error", "error", "inserted"], results
        assert "outside the catalogue's folder" in results[0]["error"] and "--allow-outside" in results[0]["error"]
        assert "absolute path" in results[1]["error"]
        assert col.count() == 1


def test_cli_ingest_reads_outside_files_only_with_allow_outside(tmp_path) -> None:
    from lookalike.cli import main
    outside = tmp_path / "elsewhere.jpg"
    draw_item("stripes", COLORS["green"], size=64).save(outside)
    folder = tmp_path / "cat"
    folder.mkdir()
    draw_item("dots", COLORS["blue"], size=64).save(folder / "in.jpg")
    catalogue = folder / "catalog.jsonl"
    catalogue.write_text(json.dumps({"_id": "out", "_file": "../elsewhere.jpg"}) + "\n"
                         + json.dumps({"_id": "in", "_file": "in.jpg"}) + "\n")
    data = str(tmp_path / "d")
    main(["ingest", str(catalogue), "-c", "cat", "--data", data, "-q", "--decode", "threads"])
    with lookalike.connect(data) as db:
        assert ids_of(db, "cat") == {"in"}
    main(["ingest", str(catalogue), "-c", "cat", "--data", data, "-q", "--decode", "threads", "--allow-outside"])
    with lookalike.connect(data) as db:
        assert ids_of(db, "cat") == {"in", "out"}


def test_http_user_models_only_from_the_models_folder(tmp_path, tiny_model) -> None:
    existing = tmp_path / "exists.pt"
    existing.write_bytes(b"not a model")
    with lookalike.connect(tmp_path / "d", allow_file=False) as db:
        plain = TestClient(create_app(db), raise_server_exceptions=False)
        r = plain.put("/v1/collections/m", json={"model": f"torchscript:{tiny_model}"})
        assert "--models DIR" in message(r, 400)
        confined = TestClient(create_app(db, models_dir=tiny_model.parent), raise_server_exceptions=False)
        answers = {message(confined.put("/v1/collections/m", json={"model": f"torchscript:{path}"}), 400)
                   .replace(path, "PATH") for path in (str(existing), str(tmp_path / "missing.pt"), "../exists.pt",
                                                       "../missing.pt", "/etc/passwd")}
        assert len(answers) == 1 and "not inside the server's models folder" in answers.pop()  # nothing leaks
        made = confined.put("/v1/collections/m", json={"model": "torchscript:tiny.pt"})
        assert made.status_code == 201, made.text
        assert made.json()["model"] == f"torchscript:{os.path.realpath(tiny_model)}" and made.json()["dim"] == 6
        assert db.collection("m").settings.dim == 6
        assert not [c for c in db.collections() if c["name"] != "m"]
    with lookalike.connect(tmp_path / "d2") as db:  # the Python API keeps local paths
        assert db.collection("p", create=True, model=f"torchscript:{tiny_model}").settings.dim == 6


# -- item 12: '/thumbnail' ids and near-zero vectors ---------------------------------------
def test_an_id_ending_in_thumbnail_is_a_record(served) -> None:
    http, db, _ = served
    http.post("/v1/collections/c/records", json={"records": [{"_id": "x/thumbnail", "_vector": V},
                                                             {"_id": "x", "_vector": V}]})
    assert http.get("/v1/collections/c/records/x%2Fthumbnail").json()["_id"] == "x/thumbnail"
    r = http.get("/v1/collections/c/records/x%2Fthumbnail/thumbnail")  # its thumbnail (none: made from a vector)
    assert "record 'x/thumbnail'" in message(r, 404)
    assert "record 'x'" in message(http.get("/v1/collections/c/records/x/thumbnail"), 404)  # literal: x's
    remote = client_of(http).collection("c")
    assert remote.get("x/thumbnail")["_id"] == "x/thumbnail"
    assert remote.delete("x/thumbnail") == 1 and ids_of(db) == {"dd", "ee", "x"}


def test_near_zero_vectors_one_rule_for_records_and_queries(served) -> None:
    http, _, _ = served
    tiny = [1e-320, 0, 0, 0]
    record = http.post("/v1/collections/c/records", json={"records": [{"_id": "z", "_vector": tiny}]})
    query = http.post("/v1/collections/c/search", json={"query": {"vector": tiny}})
    assert record.json()["results"][0]["status"] == "error"
    assert record.json()["results"][0]["error"] == message(query, 400)
    assert "all zeros" in message(query, 400)
    assert message(http.post("/v1/collections/c/search", json={"query": {"vector": [1e-13, 0, 0, 0]}}), 400)
    assert http.post("/v1/collections/c/search", json={"query": {"vector": [1e-6, 0, 0, 0]}}).status_code == 200
