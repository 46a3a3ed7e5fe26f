"""Bounds on what one client can cost the server (issue 18, items 7 and 8): slow request headers,
filters with too many branches or values, and the pixels being decoded at once."""
from __future__ import annotations

import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient

import lookalike
from lookalike.server import create_app
from lookalike.server.run import protocol_with_header_timeout
from lookalike.testing.servers import serving



@pytest.fixture
def db(tmp_path):
    database = lookalike.connect(tmp_path / "data", allow_file=False)
    database.collection("c", create=True, model="none", dim=3).upsert(
        [{"_id": "a", "_vector": [1, 0, 0], "n": 1}, {"_id": "b", "_vector": [0, 1, 0], "n": 2}])
    yield database
    database.close()


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_a_client_dripping_its_headers_is_disconnected(db, http):
    with serving(create_app(db), http=protocol_with_header_timeout(1.0, http)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            started = time.monotonic()
            closed = False
            for byte in b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                slow.settimeout(0.3)
                try:
                    if slow.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
            took = time.monotonic() - started
        assert closed, "the server kept a connection whose headers never completed"
        assert took < 8
        # kept-alive connections that send their next request promptly are unaffected
        with httpx.Client(base_url=url) as c:
            for _ in range(3):
                assert c.get("/v1/health").status_code == 200
                time.sleep(0.4)


def _exchange(url: str, request: bytes) -> bytes:
    """What the server sends back for `request` on a raw connection, until it closes it."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        try:
            conn.sendall(request)
        except OSError:  # closed while sending: what arrived first is the answer
            pass
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("http", ["h11", "httptools"])
def test_request_headers_pending_over_16_kib_are_refused_by_either_protocol(db, http):
    """h11 bounds the bytes of a request's headers not yet complete; httptools does not, so the
    protocol does (a client could otherwise grow the server's memory for `header_timeout`)."""
    with serving(create_app(db), http=protocol_with_header_timeout(5.0, http)) as url:
        huge = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 20_000  # never completed
        assert _exchange(url, huge).startswith(b"HTTP/1.1 400")
        dripped = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"b" * 100)
                                                                        for i in range(300))
        assert _exchange(url, dripped).startswith(b"HTTP/1.1 400")  # never completed, refused by size
        fine = b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 8000 + b"\r\nConnection: close\r\n\r\n"
        assert _exchange(url, fine).startswith(b"HTTP/1.1 200")
        body = b'{"query": {"vector": [1, 0, 0]}, "fields": ["' + b"n" * 40_000 + b'"]}'
        search = (b"POST /v1/collections/c/search HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Connection: close\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        assert _exchange(url, search).startswith(b"HTTP/1.1 200")  # a large body is not a large header


def _search(db, flt):
    c = TestClient(create_app(db))
    return c.post("/v1/collections/c/search", json={"query": {"vector": [1, 0, 0]}, "k": 5, "filter": flt})


def test_a_filter_with_too_many_branches_is_refused_naming_the_limit(db):
    from lookalike.store.filters import MAX_BRANCHES
    under = _search(db, {"$or": [{"n": i} for i in range(MAX_BRANCHES)]})
    assert under.status_code == 200 and {h["_id"] for h in under.json()["hits"]} == {"a", "b"}
    over = _search(db, {"$or": [{"n": i} for i in range(MAX_BRANCHES + 1)]})
    assert over.status_code == 400
    assert f"more than {MAX_BRANCHES} branches" in over.json()["error"]["message"]
    nested = _search(db, {"$and": [{"$or": [{"n": 1}] * 600}, {"$or": [{"n": 2}] * 600}]})
    assert nested.status_code == 400 and "branches" in nested.json()["error"]["message"]


def test_a_filter_with_too_many_in_values_is_refused_naming_the_limit(db):
    from lookalike.store.filters import MAX_IN_VALUES
    under = _search(db, {"n": {"$in": list(range(2, MAX_IN_VALUES + 2))}})
    assert under.status_code == 200 and [h["_id"] for h in under.json()["hits"]] == ["b"]
    over = _search(db, {"n": {"$nin": list(range(MAX_IN_VALUES + 1))}})
    assert over.status_code == 400
    assert f"more than {MAX_IN_VALUES} $in/$nin values" in over.json()["error"]["message"]


def test_too_many_conditions_are_refused():
    from lookalike.errors import BadRequest
    from lookalike.store.filters import MAX_CONDITIONS, parse_filter
    parse_filter({f"f{i}": i for i in range(MAX_CONDITIONS)})
    with pytest.raises(BadRequest, match=f"more than {MAX_CONDITIONS} conditions"):
        parse_filter({f"f{i}": i for i in range(MAX_CONDITIONS + 1)})
