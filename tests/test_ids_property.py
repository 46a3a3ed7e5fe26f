"""Property-based: ids, collection names and field names with newlines, surrogates, NULs,
slashes, dots and percent signs, over HTTP (uvicorn on loopback serving create_app) and the
Python client. A real server, not Starlette's TestClient: that one percent-decodes paths twice
(`%252F` arrives as '/'), which uvicorn does not.

Whatever is accepted round-trips exactly (upsert -> get returns the same id and fields,
delete deletes exactly that record); whatever is refused is refused with a 400/422 naming the
problem (a per-record error in upsert), never a 500, and no other record is touched.
"""
from __future__ import annotations

import json
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

import lookalike
from lookalike.errors import BadRequest
from lookalike.records import MAX_ID_LENGTH
from lookalike.server.app import create_app
from lookalike.store.base import NAME_RE
from lookalike.testing.servers import serving

V = [1.0, 0.0, 0.0, 0.0]
SENTINEL = "sentinel"
PIECES = ["a", "Z", "0", "-", "_", "\n", "\r", "\t", "\x00", "\x7f", "\x85", "\u2028", "\ud800", "\udfff", "/",
          ".", "..", "%", "%2F", "%0A", "%00", "?", "#", " ", "é", "\U0001f600", "thumbnail", "/thumbnail",
          "records", "delete", "+", "&", "\\", "~", ":", "*"]
ANY_CHAR = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, blacklist_categories=())  # surrogates too
TEXT = st.one_of(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8).map("".join),
                 st.text(ANY_CHAR, min_size=1, max_size=12), st.just("x" * (MAX_ID_LENGTH + 1)))
PROPERTY = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def segment(value: str) -> str:
    """A path segment as the Python client and the page send it ('/', '.', '%' escaped)."""
    return quote(value, safe="").replace(".", "%2E")


def has_surrogate(value: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in value)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """(httpx.Client, Database, lookalike.Client) on a server over one data folder with
    collection 'p' holding the sentinel record."""
    folder = tmp_path_factory.mktemp("prop")
    db = lookalike.connect(folder, allow_file=False)
    with serving(create_app(db)) as url, httpx.Client(base_url=url, timeout=30) as http:
        assert http.put("/v1/collections/p", json={"model": "none", "dim": 4}).status_code == 201
        assert http.post("/v1/collections/p/records",
                         json={"records": [{"_id": SENTINEL, "_vector": V}]}).status_code == 200
        client = lookalike.Client(url)
        yield http, db, client
        client.close()
    db.close()


def post_json(http: httpx.Client, path: str, body: dict):
    """POST with every non-ASCII character escaped, so lone surrogates travel as valid JSON."""
    return http.post(path, content=json.dumps(body, ensure_ascii=True), headers={"Content-Type": "application/json"})


def stored_ids(db) -> set[str]:
    return {r["_id"] for r in db.collection("p").records(limit=1000)["records"]}


def refused(response, *words: str) -> str:
    """The message of a 400/422 answer, which must name one of `words`."""
    assert response.status_code in (400, 422), (response.status_code, response.text)
    text = response.json()["error"]["message"]
    assert any(w in text for w in words), text
    return text


ID_WORDS = ("control character", "lone surrogate", "characters")


def carried(value: str) -> str:
    """`value` as it arrives through JSON: an escaped high+low surrogate pair is one character."""
    return json.loads(json.dumps(value))


@PROPERTY
@given(rid=TEXT)
@example(rid="\ud800\udfff")
def test_an_id_round_trips_exactly_or_is_refused_everywhere(env, rid: str) -> None:
    http, db, _ = env
    rid = carried(rid)
    assume(rid != SENTINEL)
    r = post_json(http, "/v1/collections/p/records", {"records": [{"_id": rid, "_vector": V}]})
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result["_id"] == rid  # echoed exactly, even when refused
    path = None if has_surrogate(rid) else f"/v1/collections/p/records/{segment(rid)}"
    if result["status"] == "error":
        assert any(w in result["error"] for w in ID_WORDS), result
        if path:
            refused(http.get(path), *ID_WORDS)
            refused(http.get(path + "/thumbnail?optional=true"), *ID_WORDS)
            refused(http.delete(path), *ID_WORDS)
        refused(post_json(http, "/v1/collections/p/search", {"query": {"id": rid}}), *ID_WORDS)
        refused(post_json(http, "/v1/collections/p/records/delete", {"ids": [rid]}), *ID_WORDS)
        assert stored_ids(db) == {SENTINEL}
        return
    assert result["status"] == "inserted"
    assert path is not None
    got = http.get(path)
    assert got.status_code == 200 and got.json()["_id"] == rid
    assert http.get(path + "/thumbnail?optional=true").status_code == 204  # made from a vector: none kept
    hits = post_json(http, "/v1/collections/p/search", {"query": {"id": rid}, "k": 5})
    assert hits.status_code == 200 and [h["_id"] for h in hits.json()["hits"]] == [SENTINEL]
    assert stored_ids(db) == {SENTINEL, rid}
    deleted = http.delete(path)
    assert deleted.status_code == 200 and deleted.json() == {"deleted": 1}
    assert http.get(path).status_code == 404
    assert stored_ids(db) == {SENTINEL}


@PROPERTY
@given(rid=TEXT)
@example(rid="\ud800\udfff")
def test_the_python_client_addresses_exactly_the_id_it_is_given(env, rid: str) -> None:
    _, db, client = env
    rid = carried(rid)
    assume(rid != SENTINEL)
    remote = client.collection("p")
    result = remote.upsert([{"_id": rid, "_vector": V}])[0]
    if result["status"] == "error":
        for call in (lambda: remote.get(rid), lambda: remote.delete(rid), lambda: remote.search({"id": rid})):
            with pytest.raises(BadRequest) as caught:
                call()
            assert any(w in caught.value.message for w in ID_WORDS), caught.value.message
        assert stored_ids(db) == {SENTINEL}
        return
    assert remote.get(rid)["_id"] == rid
    assert remote.delete(rid) == 1
    assert stored_ids(db) == {SENTINEL}


@PROPERTY
@given(name=TEXT)
def test_a_collection_name_is_exactly_valid_or_refused(env, name: str) -> None:
    http, db, client = env
    assume(name != "p")
    valid = bool(NAME_RE.fullmatch(name))
    if has_surrogate(name) or "/" in name:  # cannot be one URL segment: only the client can be asked
        with pytest.raises(BadRequest, match="invalid collection name"):
            client.collection(name, create=True, model="none", dim=4)
        assert [c["name"] for c in db.collections()] == ["p"]
        return
    url = f"/v1/collections/{segment(name)}"
    made = http.put(url, json={"model": "none", "dim": 4})
    if not valid:
        refused(made, "invalid collection name", "control character")
        refused(http.get(url), "invalid collection name", "control character")
        refused(http.delete(url), "invalid collection name", "control character")
        with pytest.raises(BadRequest):
            client.collection(name, create=True, model="none", dim=4)
        assert [c["name"] for c in db.collections()] == ["p"]
        return
    assert made.status_code == 201, made.text
    assert http.get(url).json()["name"] == name
    assert sorted(c["name"] for c in db.collections()) == sorted(["p", name])
    assert http.delete(url).json() == {"name": name, "deleted": True}
    assert [c["name"] for c in db.collections()] == ["p"] and stored_ids(db) == {SENTINEL}


FIELD_WORDS = ("lone surrogate", "reserved", "invalid key", "image sources", "computed")


@PROPERTY
@given(key=TEXT, value=st.one_of(TEXT, st.integers(-5, 5), st.dictionaries(TEXT, st.integers(0, 3), max_size=2)))
@example(key="\ud800\udfff", value=1)  # a surrogate pair: one character once it crosses JSON
def test_a_field_name_round_trips_exactly_or_the_record_alone_is_refused(env, key: str, value) -> None:
    http, db, _ = env
    assume(key != "_id")
    record = {"_id": "f", "_vector": V, key: value}
    r = post_json(http, "/v1/collections/p/records", {"records": [record, {"_id": "g", "_vector": V}]})
    assert r.status_code == 200, r.text
    first, second = r.json()["results"]
    assert second["status"] in ("inserted", "unchanged")  # the other record of the batch is stored
    try:
        if first["status"] == "error":
            assert any(w in first["error"] for w in FIELD_WORDS), first
            assert http.get("/v1/collections/p/records/f").status_code == 404
            return
        # what JSON carries: an escaped high+low surrogate pair is one character on the other side
        key, value = json.loads(json.dumps([key, value]))
        doc = http.get("/v1/collections/p/records/f").json()
        assert doc[key] == value
        assert {k for k in doc if not k.startswith("_")} == {key}
        projected = post_json(http, "/v1/collections/p/search", {"query": {"id": "g"}, "k": 3, "fields": [key]})
        assert projected.status_code == 200, projected.text
    finally:
        post_json(http, "/v1/collections/p/records/delete", {"ids": ["f", "g"]})
        assert stored_ids(db) == {SENTINEL}
