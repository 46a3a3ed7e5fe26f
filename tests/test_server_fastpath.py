"""The short path for JSON searches (server/fastpath.py): the same answers as FastAPI's route
for every kind of body, keys still checked, and searches on the event loop only while short."""
from __future__ import annotations

import asyncio
import base64
import io
import threading
import time

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.server import create_app
from lookalike.server.fastpath import FastSearch, Pacer

ADMIN, SEARCH = "admin-key-0123456789", "search-key-0123456789"


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    db = lookalike.connect(tmp_path_factory.mktemp("fastpath"), allow_file=False)
    col = db.collection("c", create=True, model="none", dim=4)
    col.upsert([{"_id": f"r{i}", "_vector": [1, i / 10, (i % 3) / 5, 0], "n": i, "tag": "ab"[i % 2]}
                for i in range(30)])
    yield (TestClient(create_app(db, auth_failures=False)),
           TestClient(create_app(db, auth_failures=False, fast_search=False)), col)
    db.close()


def png() -> str:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


JSON = {"content-type": "application/json"}
CASES = [  # (path, body bytes, headers)
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}, "k": 5}', JSON),
    ("/v1/collections/c/search", b'{"query": {"id": "r3"}, "k": 4, "filter": {"n": {"$lt": 20}}, "fields": ["n"]}',
     JSON),
    ("/v1/collections/c/search", b'{"query": {"vectors": [[1, 0, 0, 0], [0, 1, 0, 0]]}, "k": 2, "group_by": "tag"}',
     JSON),
    ("/v1/collections/c/search", b'{"query": {"ids": ["r1", "r2"]}, "negative": [{"id": "r9"}], "offset": 3}', JSON),
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}}', {"content-type": "application/json; charset=utf-8"}),
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}}', {"content-type": "Application/JSON"}),
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}}', {"content-type": "text/plain"}),
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}}', {}),
    ("/v1/collections/c/search/", b'{"query": {"vector": [1, 0, 0, 0]}}', JSON),
    ("/v1/collections/missing/search", b'{"query": {"vector": [1, 0, 0, 0]}}', JSON),  # 404
    ("/v1/collections/BAD!/search", b'{"query": {"vector": [1, 0, 0, 0]}}', JSON),  # 400 name
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0]}}', JSON),  # 400 dimensions
    ("/v1/collections/c/search", b'{"query": {"id": "nope"}}', JSON),  # 404 record
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}, "filter": {"n": {"$bad": 1}}}', JSON),
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}, "k": 0}', JSON),  # 422
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}, "nope": 1}', JSON),  # 422 unknown key
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}, "k": "5"}', JSON),  # 422 strict
    ("/v1/collections/c/search", b'{"k": 5}', JSON),  # 422 no query
    ("/v1/collections/c/search", b'[1, 2]', JSON),
    ("/v1/collections/c/search", b'', JSON),
    ("/v1/collections/c/search", b'{"query": ', JSON),  # 400 not JSON
    ("/v1/collections/c/search", b'{"query": {"vector": [NaN, 0, 0, 0]}}', JSON),
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}, "k": 123456789012345678901234567890}', JSON),
    ("/v1/collections/c/search", b'{"query": {"vector": [1, 0, 0, 0]}, "fields": ["\\ud800"]}', JSON),
    ("/v1/collections/c/search", b'[' * 3000 + b']' * 3000, JSON),
    ("/v1/collections/c/search", b'{"query": {"color": "#c83232"}, "k": 3}', JSON),  # 400: no model
    ("/v1/collections/c/search", ('{"query": {"base64": "%s"}}' % png()).encode(), JSON),
]


def without_timing(response) -> tuple:
    body = response.json() if response.headers.get("content-type") == "application/json" else response.text
    if isinstance(body, dict):
        body.pop("took_ms", None)
    headers = {k: v for k, v in response.headers.items() if k not in ("content-length", "date")}
    return response.status_code, body, headers


@pytest.mark.parametrize("path,body,headers", CASES)
def test_the_short_path_answers_as_the_route_does(apps, path, body, headers):
    fast, slow, _ = apps
    got = fast.post(path, content=body, headers=headers)
    want = slow.post(path, content=body, headers=headers)
    assert without_timing(got) == without_timing(want)
    assert got.status_code != 500


def test_hits_match_the_python_api(apps):
    fast, _, col = apps
    body = {"query": {"vector": [1, 0.5, 0, 0]}, "k": 7, "filter": {"tag": "a"}}
    got = fast.post("/v1/collections/c/search", json=body)
    assert got.status_code == 200
    want = col.search(body["query"], k=7, filter={"tag": "a"})["hits"]
    assert got.json()["hits"] == want and len(want) == 7 and all(h["tag"] == "a" for h in want)


def test_keys_are_checked_before_the_short_path(tmp_path):
    db = lookalike.connect(tmp_path / "data", allow_file=False)
    db.collection("c", create=True, model="none", dim=2).upsert([{"_id": "a", "_vector": [1, 0]}])
    http = TestClient(create_app(db, admin_key=ADMIN, search_key=SEARCH, auth_failures=False, max_body_bytes=2048))
    body = {"query": {"vector": [1, 0]}}
    missing = http.post("/v1/collections/c/search", json=body)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert http.post("/v1/collections/c/search", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = http.post("/v1/collections/c/search", json=body, headers={"Authorization": f"Bearer {SEARCH}"})
    assert ok.status_code == 200 and ok.json()["hits"][0]["_id"] == "a"
    big = http.post("/v1/collections/c/search", json={"query": {"vector": [1.0] * 1000}},
                    headers={"Authorization": f"Bearer {SEARCH}"})
    assert big.status_code == 413
    db.close()


class Inner:
    """An ASGI app recording the bodies that reached it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        message = await receive()
        self.bodies.append(message.get("body", b""))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"route"})


def call(app, db, path: str, body: bytes) -> tuple[int, bytes]:
    class State:
        pass
    holder = type("App", (), {"state": State()})()
    holder.state.db = db
    scope = {"type": "http", "method": "POST", "path": path, "root_path": "", "app": holder, "query_string": b"",
             "headers": [(b"content-type", b"application/json")]}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        sent.append(message)
    asyncio.run(app(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


def test_the_short_path_answers_itself_and_hands_on_what_it_does_not_take(tmp_path):
    db = lookalike.connect(tmp_path / "data", allow_file=False)
    db.collection("c", create=True, model="none", dim=2).upsert([{"_id": "a", "_vector": [1, 0]},
                                                                 {"_id": "b", "_vector": [1, 1]}])
    inner = Inner()
    app = FastSearch(inner)
    status, body = call(app, db, "/v1/collections/c/search", b'{"query": {"id": "a"}}')
    assert status == 200 and b'"_id":"b"' in body and inner.bodies == []
    status, body = call(app, db, "/v1/collections/nope/search", b'{"query": {"id": "a"}}')
    assert status == 404 and b"not_found" in body and inner.bodies == []
    for refused in (b'{"query": {"id": "a"}, "k": -1}', b'{"query"', b''):
        assert call(app, db, "/v1/collections/c/search", refused) == (299, b"route")
        assert inner.bodies[-1] == refused  # the body reached the route whole
    assert call(app, db, "/v1/collections/c/match", b'{"query": {"id": "a"}}') == (299, b"route")
    db.close()


def test_the_pacer_runs_a_key_on_the_loop_only_while_its_calls_are_short():
    pacer = Pacer(inline_max_s=0.05, stall_s=10.0)
    where: list[str] = []

    def work(seconds: float = 0.0):
        def fn() -> float:
            where.append("loop" if threading.current_thread() is threading.main_thread() else "thread")
            end = time.thread_time() + seconds
            while time.thread_time() < end:  # CPU work: counted on the loop and in threads alike
                pass
            return seconds
        return fn

    async def scenario() -> None:
        await pacer.run("c", work(), True)  # first call: a thread, timed there
        await pacer.run("c", work(), True)
        await pacer.run("c", work(0.06), True)  # on the loop, but too long ...
        await pacer.run("c", work(), True)  # ... so the next ones go to threads
        assert where == ["thread", "loop", "loop", "thread"]
        for _ in range(40):  # short calls in threads bring the key back to the loop
            await pacer.run("c", work(), True)
            if where[-1] == "loop":
                break
        assert where[-1] == "loop"
        await pacer.run("c", work(), False)  # never on the loop, and not timed
        await pacer.run("other", work(), True)  # keys are separate
        assert where[-2:] == ["thread", "thread"]
    asyncio.run(scenario())
    assert pacer.inline("c") and pacer.inline("other") and not pacer.inline("never-called")


def test_a_call_that_held_the_loop_waiting_keeps_its_key_off_the_loop_for_a_while():
    pacer = Pacer(inline_max_s=0.01, stall_s=0.05, cooldown_s=0.2)
    where: list[str] = []

    def work(wait: float = 0.0):
        def fn() -> None:
            where.append("loop" if threading.current_thread() is threading.main_thread() else "thread")
            time.sleep(wait)  # waiting (as for a lock) costs no CPU time
        return fn

    async def scenario() -> None:
        await pacer.run("c", work(), True)
        await pacer.run("c", work(0.1), True)  # on the loop, held it 0.1 s: off it for ~0.4 s
        await pacer.run("c", work(), True)
        assert where == ["thread", "loop", "thread"]
        await asyncio.sleep(0.6)
        await pacer.run("c", work(), True)
        assert where[-1] == "loop"
    asyncio.run(scenario())


class Recording:
    """A Database whose searches note whether they ran on the event loop (the main thread)."""

    def __init__(self, db, store) -> None:
        self.db, self.store, self.on_loop = db, store, []

    def collection(self, name: str):
        col, on_loop = self.db.collection(name), self.on_loop

        class Searching:
            def search(self, query, **params):
                on_loop.append(threading.current_thread() is threading.main_thread())
                return col.search(query, **params)
        return Searching()


def test_searches_of_the_embedded_store_move_to_the_loop_and_others_stay_in_threads(tmp_path):
    db = lookalike.connect(tmp_path / "data", allow_file=False)
    db.collection("c", create=True, model="none", dim=2).upsert([{"_id": "a", "_vector": [1, 0]},
                                                                 {"_id": "b", "_vector": [1, 1]}])
    for store, expected in ((db.store, [False, True, True, True]), (object(), [False] * 4)):
        recording, app = Recording(db, store), FastSearch(Inner())
        for _ in range(4):
            assert call(app, recording, "/v1/collections/c/search", b'{"query": {"vector": [1, 0]}}')[0] == 200
        assert recording.on_loop == expected
    recording, app = Recording(db, db.store), FastSearch(Inner())
    for _ in range(3):  # a query that may need a model never runs on the loop
        call(app, recording, "/v1/collections/c/search", b'{"query": {"color": "#ff0000"}}')
    assert recording.on_loop == [False] * 3
    db.close()


@pytest.mark.parametrize("params,inline", [
    ({"query": {"vector": [1, 0]}}, True),
    ({"query": {"id": "a"}, "k": 20, "filter": {"n": 1}, "negative": [{"id": "b"}]}, True),
    ({"query": {"ids": ["a"] * 32}}, True),
    ({"query": {"ids": ["a"] * 33}}, False),
    ({"query": {"vectors": [[1, 0]]}}, False),  # a batch
    ({"query": {"vector": [1, 0]}, "k": 90, "offset": 11}, False),  # past a page of hits
    ({"query": {"id": "a", "box": [0, 0, 0.5, 0.5]}}, False),  # a crop: the model
    ({"query": {"vector": [1, 0]}, "text": "red"}, False),  # a text model
    ({"query": {"vector": [1, 0]}, "negative": [{"url": "http://x/y.jpg"}]}, False),  # a fetch
    ({"query": {"base64": "AAAA"}}, False),
    ({"query": {}}, False),
])
def test_which_searches_may_run_on_the_loop(params, inline):
    from lookalike.server.fastpath import _inline_query
    assert _inline_query(params) is inline
