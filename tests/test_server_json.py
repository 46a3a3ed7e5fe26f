"""The server's JSON responses (orjson, with the standard encoder where orjson would differ):
the same JSON value as `json.dumps` gave, the same error for NaN and infinity, ASCII escapes
for lone surrogates, and non-ASCII ids as UTF-8; batched searches over HTTP and the client.
"""
from __future__ import annotations

import json
import math

import pytest
from fastapi.testclient import TestClient
from starlette.responses import JSONResponse

import lookalike
from lookalike.server import create_app
from lookalike.server.errors import SafeJSONResponse

CONTENTS = [
    {"hits": [{"_id": "é/ü/日本-😀", "_score": 0.912345, "title": "Crème brûlée", "tags": ["a", "ß"]}],
     "took_ms": 0.123},
    {"hits": [{"_id": "x", "_score": 1e-07, "big": 10**16, "neg": -2**63, "f": 0.1 + 0.2, "e": 1e16,
               "nested": {"a": [1, 2.5, {"b": True}]}, "line": "a\u2028b\x1f\"\\"}], "took_ms": 1e-3},
    {"hits": [{"_id": "none", "_score": 0.5, "missing": None}], "took_ms": 0.1},  # null: the standard path
    {"results": [{"_id": "huge", "status": "inserted", "n": 2**70}]},  # past 64 bits: the standard path
    [{"_id": "a", "status": "error", "error": "bad id '\ud800'"}],  # lone surrogate: ASCII escapes
    {"empty": {}, "list": [], "zero": 0, "negzero": -0.0},
]


def standard(content) -> bytes:
    """The body the server sent before orjson: starlette's encoder, ASCII for lone surrogates."""
    try:
        return JSONResponse(content).body
    except UnicodeEncodeError:
        return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


@pytest.mark.parametrize("content", CONTENTS)
def test_responses_hold_the_same_json_as_the_standard_encoder(content):
    body = SafeJSONResponse(content).body
    assert json.loads(body) == json.loads(standard(content)) == json.loads(json.dumps(content))
    body.decode("utf-8")  # valid UTF-8 (lone surrogates escaped, not encoded)
    if "😀" in json.dumps(content, ensure_ascii=False):
        assert "é/ü/日本-😀".encode() in body  # non-ASCII as UTF-8, not \u escapes


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_refused_as_before(bad):
    content = {"hits": [{"_id": "x", "_score": bad}]}
    with pytest.raises(ValueError):
        JSONResponse(content)
    with pytest.raises(ValueError):  # not written as null: the route fails as it did (a 500)
        SafeJSONResponse(content)


@pytest.fixture(scope="module")
def app_and_col(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("json"), allow_file=False)
    col = db.collection("c", create=True, model="none", dim=4)
    col.upsert([{"_id": rid, "_vector": v, "label": label} for rid, v, label in [
        ("é/ü/日本", [1, 0, 0, 0], "Crème"), ("😀-2", [0.9, 0.1, 0, 0], "ß"), ("plain", [0, 1, 0, 0], "x"),
        ("n", [0, 0, 1, 0], None)]])
    yield create_app(db, auth_failures=False), col
    db.close()


def test_search_over_http_gives_the_python_api_result(app_and_col):
    app, col = app_and_col
    with TestClient(app) as http:
        for body in ({"query": {"vector": [1, 0, 0, 0]}, "k": 4},
                     {"query": {"vectors": [[1, 0, 0, 0], [0, 0, 1, 0]]}, "k": 2},
                     {"query": {"vector": [1, 0, 0, 0]}, "filter": {"label": "Crème"}}):
            response = http.post("/v1/collections/c/search", json=body)
            assert response.status_code == 200 and response.headers["content-type"] == "application/json"
            got = response.json()
            params = dict(body)
            want = col.search(params.pop("query"), **params)
            assert got["hits"] == want["hits"] and isinstance(got["took_ms"], float)
        assert "é/ü/日本".encode() in http.post("/v1/collections/c/search",
                                               json={"query": {"vector": [1, 0, 0, 0]}, "k": 1}).content
        batched = http.post("/v1/collections/c/search", json={"query": {"vectors": [[0, 1, 0, 0]] * 2}, "k": 1})
        assert [[h["_id"] for h in hits] for hits in batched.json()["hits"]] == [["plain"], ["plain"]]
        refused = http.post("/v1/collections/c/search", json={"query": {"vectors": [[1, 0, 0]]}})
        assert refused.status_code == 400 and "3 dimensions" in refused.json()["error"]["message"]


@pytest.mark.parametrize("body", [
    b'{"query": {"vector": [1, 0, 0, 0]}, "k": 2}',
    b'\xef\xbb\xbf{"query": {"vector": [1, 0, 0, 0]}}',  # a BOM: json.loads takes it, orjson does not
    b'{"query": {"vector": [NaN, 0, 0, 0]}}',  # NaN: json.loads reads it, the query check refuses it
    b'{"query": {"vector": [1, 0, 0, 0]}, "k": 123456789012345678901234567890}',  # > 64 bits
    b'{"query": {"vector": [1, 0, 0, 0]}, "fields": ["\\ud800"]}',  # a lone surrogate
    b'{"query": ', b'{"query": {"vector": [1, 0, 0, 0]}}}', b'[' * 5000 + b']' * 5000, b'\xff\xfe{}',
])
def test_request_bodies_parse_as_json_loads_parses_them(app_and_col, body):
    """Bodies go through orjson where it reads what json.loads reads; the rest through json.loads:
    the same value, or the same error, as before."""
    app, col = app_and_col
    with TestClient(app) as http:
        response = http.post("/v1/collections/c/search", content=body, headers={"content-type": "application/json"})
    try:
        value = json.loads(body)
    except json.JSONDecodeError as exc:
        assert response.status_code == 400
        assert response.json()["error"]["message"] == f"request body is not valid JSON: {exc.msg}"
        return
    except (RecursionError, UnicodeDecodeError):
        assert response.status_code == 400
        return
    if isinstance(value, dict) and value.get("k") == 123456789012345678901234567890:
        assert response.status_code == 422  # k past its limit: read as the integer it is, not a float
    elif isinstance(value, dict) and "fields" in value:
        assert response.status_code == 400 and "surrogate" in response.json()["error"]["message"]
    elif math.isnan(value["query"]["vector"][0]):
        assert response.status_code == 400 and "NaN" in response.json()["error"]["message"]
    else:
        assert response.status_code == 200
        assert response.json()["hits"] == col.search(value.pop("query"), **value)["hits"]
