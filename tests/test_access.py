"""Access control through a real server: keys, roles, logs, names and ids.

- the search key cannot write: every write route (taken from the OpenAPI document, so a
  new one is covered automatically) answers 403 and changes nothing;
- a missing or wrong key is 401 on every `/v1` route but health;
- keys are compared in constant time (hmac.compare_digest over equal-length digests);
- neither key ever appears in the server's output, even at debug level with access logs;
- collection names that try to leave the data folder are 400/404 and touch no file;
- record ids with `/`, `..`, `%`, `?`, unicode are opaque keys: stored, read and deleted by
  their URL-encoded form, never used as paths.
"""
from __future__ import annotations

import hmac
import http.client
import json
import os
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

import lookalike
from lookalike.errors import BadRequest, NotFound
from lookalike.server import guard
from lookalike.server.guard import Keys, role_of
from test_server_process import ServerProcess

ADMIN = "adm-7f3c9e1b2a4d4e8f9a0b1c2d3e4f5a6b"
SEARCH = "srch-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
#: POST routes the search key may call (the contract's read routes).
READ_POSTS = {"search", "search/image", "recommend", "rerank", "match", "duplicates"}


class LoudServer(ServerProcess):
    """A server logging as much as it can: debug level, access log on."""

    def command(self) -> list[str]:
        cmd = [c for c in super().command() if c != "--no-access-log"]
        return cmd + ["--log-level", "debug"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("access") / "data"
    # the wrong-key rate limit (tests/test_auth_limits.py) is off: this module sends hundreds of wrong keys
    with LoudServer(data, "--admin-key", ADMIN, env={"LOOKALIKE_SEARCH_KEY": SEARCH,
                                                     "LOOKALIKE_AUTH_FAILURES": "0"}) as proc:
        yield proc


def client(server, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.Client(base_url=server.url + "/v1", headers=headers, timeout=60)


@pytest.fixture(scope="module")
def admin(server):
    with client(server, ADMIN) as c:
        assert c.put("/collections/acc", json={"model": "none", "dim": 3, "index": {"type": "exact"}}).status_code == 201
        records = [{"_id": f"r{i}", "_vector": [1, i, 0], "n": i} for i in range(5)]
        assert c.post("/collections/acc/records", json={"records": records}).status_code == 200
        yield c


@pytest.fixture(scope="module")
def reader(server, admin):
    with client(server, SEARCH) as c:
        yield c


def raw(server, method: str, path: str, key: str | None = ADMIN, body: bytes | None = None,
        headers: dict | None = None) -> tuple[int, dict]:
    """A request whose path goes out byte for byte (httpx would resolve `..` segments)."""
    con = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        if key is not None:
            all_headers["Authorization"] = f"Bearer {key}"
        con.request(method, path, body=body, headers=all_headers)
        response = con.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data)
        except ValueError:
            return response.status, {"raw": data[:200]}
    finally:
        con.close()


def snapshot(admin: httpx.Client) -> dict:
    """Everything a write could change: collections, settings, every record."""
    state = {}
    for col in admin.get("/collections").json()["collections"]:
        info = admin.get(f"/collections/{col['name']}").json()
        info.pop("bytes", None)
        records = admin.get(f"/collections/{col['name']}/records", params={"limit": 1000}).json()
        state[col["name"]] = {"info": info, "records": records}
    return state


def files_of(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# -- the search key cannot write ----------------------------------------------------------
def write_routes(server) -> list[tuple[str, str]]:
    """Every /v1 operation the search key must not call, from the server's OpenAPI document."""
    doc = httpx.get(server.url + "/openapi.json").json()
    routes = []
    for path, ops in doc["paths"].items():
        for method in ops:
            tail = path.split("/collections/{name}/")[-1] if "/collections/{name}/" in path else None
            if method == "get" or (method == "post" and tail in READ_POSTS):
                continue
            routes.append((method.upper(), path))
    return sorted(routes)


WRITE_BODIES = {
    "/v1/collections/{name}": {"model": "none", "dim": 3, "metric": "dot"},
    "/v1/collections/{name}/records": {"records": [{"_id": "sneaky", "_vector": [9, 9, 9]}]},
    "/v1/collections/{name}/records/delete": {"ids": ["r1", "r2"]},
    "/v1/collections/{name}/duplicates": {"threshold": 0.9},
}


def test_write_routes_are_the_expected_ones(server) -> None:
    """The contract's write routes are all found (so the loop below covers them)."""
    assert set(write_routes(server)) >= {
        ("PUT", "/v1/collections/{name}"), ("DELETE", "/v1/collections/{name}"),
        ("POST", "/v1/collections/{name}/records"), ("DELETE", "/v1/collections/{name}/records/{record_id}"),
        ("POST", "/v1/collections/{name}/records/delete")}


def test_search_key_gets_403_on_every_write_route_and_nothing_changes(server, admin, reader) -> None:
    before = snapshot(admin)
    routes = write_routes(server)
    for method, path in routes:
        url = path.replace("/v1", "", 1).replace("{name}", "acc").replace("{record_id}", "r1")
        body = WRITE_BODIES.get(path)
        r = reader.request(method, url, json=body) if body is not None else reader.request(method, url)
        assert r.status_code == 403, (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"] == "forbidden"
    # NDJSON streams and other content types are refused the same way, before the body is read
    nd = reader.post("/collections/acc/records", content=b'{"_id": "nd", "_vector": [1, 1, 1]}\n',
                     headers={"Content-Type": "application/x-ndjson"})
    assert nd.status_code == 403
    assert reader.put("/collections/newone", json={"model": "none", "dim": 3}).status_code == 403
    assert snapshot(admin) == before
    assert admin.get("/collections/newone").status_code == 404


def test_search_key_can_read(reader) -> None:
    assert reader.get("/collections").status_code == 200
    assert reader.get("/collections/acc/records/r1").json()["n"] == 1
    assert reader.post("/collections/acc/search", json={"query": {"id": "r1"}, "k": 2}).status_code == 200
    assert reader.post("/collections/acc/recommend", json={"id": "r1"}).status_code == 200


# -- missing and wrong keys ---------------------------------------------------------------
WRONG = ["", "nope", ADMIN[:-1], ADMIN + "x", ADMIN.upper(), SEARCH[:-1], "\t", f"{ADMIN} {SEARCH}",
         ADMIN[:8]]


def every_route(server) -> list[tuple[str, str]]:
    doc = httpx.get(server.url + "/openapi.json").json()
    return sorted((m.upper(), p) for p, ops in doc["paths"].items() for m in ops if p != "/v1/health")


def test_missing_or_wrong_key_is_401_on_every_route(server, admin) -> None:
    before = snapshot(admin)
    for method, path in every_route(server):
        url = path.replace("{name}", "acc").replace("{record_id}", "r1")
        for key in [None, *WRONG]:
            status, body = raw(server, method, url, key=key, body=json.dumps(WRITE_BODIES.get(path, {})).encode())
            assert status == 401, (method, path, key, status, body)
            assert body["error"]["code"] == "unauthorized"
        for header in (f"Basic {ADMIN}", ADMIN, f"Token {ADMIN}", "Bearer"):
            status, _ = raw(server, method, url, key=None, headers={"Authorization": header})
            assert status == 401, (method, path, header)
    assert snapshot(admin) == before
    assert httpx.get(server.url + "/v1/health").status_code == 200


def test_keys_are_compared_in_constant_time(monkeypatch) -> None:
    """Both keys are always compared, with hmac.compare_digest, on equal-length digests."""
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((len(a), len(b)))
        return real(a, b)
    monkeypatch.setattr(guard.hmac, "compare_digest", spy)
    keys = Keys(ADMIN, SEARCH)
    for token, role in [("x", None), (ADMIN[:-1], None), (ADMIN * 50, None), (ADMIN, "admin"), (SEARCH, "search")]:
        calls.clear()
        assert role_of(token, keys) == role
        assert len(calls) == 2, "both keys must be compared whatever the token"
        assert len({n for pair in calls for n in pair}) == 1, f"lengths leak: {calls}"


def test_utf8_keys_work(tmp_path: Path) -> None:
    key = "clé-secrète-ü"
    with ServerProcess(tmp_path / "d", "--admin-key", key) as server:
        for token, status in ((key.encode(), 200), ("clé-secrète-u".encode(), 401)):
            con = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            con.putrequest("GET", "/v1/collections")
            con.putheader("Authorization", b"Bearer " + token)
            con.endheaders()
            assert con.getresponse().status == status
            con.close()
        assert key not in server.output()


# -- keys never logged --------------------------------------------------------------------
def test_keys_never_appear_in_the_logs(server, admin, reader) -> None:
    anonymous = client(server, None)
    reader.get("/collections/acc/records/r1")
    reader.post("/collections/acc/records", json={"records": []})                  # 403
    anonymous.get("/collections", headers={"Authorization": f"Bearer {ADMIN}x"})   # 401 near miss
    admin.post("/collections/acc/search", json={"query": {"id": "nope"}})         # 404
    admin.post("/collections/acc/search", content=b"{bad json", headers={"Content-Type": "application/json"})
    admin.post("/collections/acc/records", content=b"[" * 5000, headers={"Content-Type": "application/json"})
    admin.get("/collections/acc/records/r1", headers={"X-Api-Key": SEARCH})      # a key in another header
    anonymous.close()
    log = server.output()
    assert "lookalike: serving" in log and "GET /v1/collections" in log, "the access log was not captured"
    for secret in (ADMIN, SEARCH, ADMIN[:16], SEARCH[:16]):
        assert secret not in log, f"a key appears in the server log: {secret[:4]}..."


# -- collection names ---------------------------------------------------------------------
BAD_NAMES = ["..", ".", "../x", "..%2Fx", "%2e%2e", "%2E%2E%2Fetc", "a/b", "a%2Fb", "..%5C..%5Cx", "a%00b", "%00",
             "Upper", "-lead", "_lead", "x" * 65, "caf%C3%A9", "a%20b", ".hidden", "a.b", "~root", "a;b"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_collection_names_are_refused_without_touching_files(server, admin, name) -> None:
    data = Path(server.data)
    before_files, outside = files_of(data), set(os.listdir(data.parent))
    before = snapshot(admin)
    for method, tail, body in (("PUT", "", {"model": "none", "dim": 3}), ("GET", "", None), ("DELETE", "", None),
                               ("POST", "/records", {"records": [{"_id": "x", "_vector": [1, 2, 3]}]}),
                               ("POST", "/search", {"query": {"vector": [1, 2, 3]}}),
                               ("GET", "/records/r1", None), ("DELETE", "/records/r1", None)):
        status, reply = raw(server, method, f"/v1/collections/{name}{tail}",
                            body=json.dumps(body).encode() if body is not None else None)
        assert status in (400, 404, 405), (method, name, tail, status, reply)
        assert "error" in reply, reply
    assert snapshot(admin) == before
    assert files_of(data) == before_files
    assert set(os.listdir(data.parent)) == outside


def test_bad_names_in_the_python_api_touch_no_file(tmp_path: Path) -> None:
    with lookalike.connect(tmp_path / "data") as db:
        before = files_of(tmp_path)
        for name in ("..", "../x", "a/b", "/etc", "x" * 65, "a\0b", ""):
            with pytest.raises(BadRequest):
                db.collection(name, create=True, model="none", dim=3)
            with pytest.raises(BadRequest):
                db.collection(name)
        assert files_of(tmp_path) == before


def test_static_files_do_not_escape_their_folder(server) -> None:
    for path in ("/ui/../../pyproject.toml", "/ui/..%2F..%2Fpyproject.toml", "/ui/%2e%2e/%2e%2e/lookalike/cli/main.py",
                 "/ui/....//....//etc/passwd"):
        status, reply = raw(server, "GET", path, key=None)
        assert status in (400, 404), (path, status)
        assert b"[project]" not in str(reply).encode() and b"root:" not in str(reply).encode()


# -- record ids are opaque ----------------------------------------------------------------
IDS = ["a/b", "../x", "..", ".", "../../etc/passwd", "%2e%2e", "a?b#c", " spaced ", "x\\y", "ünï €", "😀/..",
       "%", "a%2Fb", "r1/../r2", "x" * 256]


def id_path(rid: str) -> str:
    return quote(rid, safe="").replace(".", "%2E")


def test_ids_are_opaque_keys(server, admin) -> None:
    admin.put("/collections/ids", json={"model": "none", "dim": 3, "index": {"type": "exact"}})
    data = Path(server.data)
    before_files = files_of(data)
    records = [{"_id": rid, "_vector": [1, i + 1, 2], "which": rid} for i, rid in enumerate(IDS)]
    results = admin.post("/collections/ids/records", json={"records": records}).json()["results"]
    assert [r["status"] for r in results] == ["inserted"] * len(IDS)
    assert admin.get("/collections/ids").json()["count"] == len(IDS)
    for rid in IDS:  # by URL-encoded id, byte for byte
        status, doc = raw(server, "GET", f"/v1/collections/ids/records/{id_path(rid)}")
        assert status == 200 and doc["which"] == rid, (rid, status, doc)
    with lookalike.Client(server.url, key=ADMIN) as remote:  # the client encodes ids the same way
        col = remote.collection("ids")
        assert all(col.get(rid)["which"] == rid for rid in IDS)
        assert col.delete(["../x"]) == 1
    for rid in ("a/b", "..", "../../etc/passwd", "ünï €"):
        status, reply = raw(server, "DELETE", f"/v1/collections/ids/records/{id_path(rid)}")
        assert status == 200 and reply == {"deleted": 1}, (rid, status, reply)
        status, _ = raw(server, "GET", f"/v1/collections/ids/records/{id_path(rid)}")
        assert status == 404
    remaining = {r["_id"] for r in admin.get("/collections/ids/records", params={"limit": 100}).json()["records"]}
    assert remaining == set(IDS) - {"../x", "a/b", "..", "../../etc/passwd", "ünï €"}
    assert files_of(data) == before_files, "ids must never become file names"
    too_long = admin.post("/collections/ids/records", json={"records": [{"_id": "y" * 257, "_vector": [1, 1, 1]}]})
    assert too_long.json()["results"][0]["status"] == "error"


def test_unknown_ids_are_404_not_errors(admin) -> None:
    for rid in ("../acc", "..", "r1/..", "%00"):
        status = admin.get(f"/collections/acc/records/{id_path(rid)}").status_code
        assert status == 404, rid
    with pytest.raises(NotFound):
        with lookalike.Client(admin.base_url.scheme + "://" + admin.base_url.netloc.decode(), key=ADMIN) as c:
            c.collection("acc").get("../r1")
