"""A short path for the hot route, `POST /v1/collections/{name}/search` with a JSON body.

Through FastAPI a vector search spent more time in the framework than in the engine (route
matching over every route, dependency solving, and a hop to a worker thread and back). This
ASGI layer, inside the Guard (keys and body limits are checked first), answers the common
case itself with the same steps as the route: the body read by `load_json`, validated once
by the route's own model (`SearchBody`), `Collection.search`, the answer by the same
response class and the same error handler. Anything else (another content type, JSON that
does not parse, a body the model refuses, a trailing slash, a mounted root path) goes on to
FastAPI untouched, so every error body is the one the route gives.

Where the search runs: `Pacer` runs a search on the event loop when its query needs no model
or network (vector, id), the store is the embedded one, and that collection's recent searches
were short; in a worker thread otherwise (a first search, an image or text query, a large
exact scan, a search waiting for a writer, a Milvus store), so the loop is never held long.
"""
from __future__ import annotations

import re
import threading
import time
from typing import Any, Callable

from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from ..errors import LookalikeError
from ..jsontext import load_json
from ..store import EmbeddedStore
from . import schemas as S
from .errors import ok, on_lookalike_error
from .guard import ASGIApp, Receive, Scope, Send, _replay, header

SEARCH_PATH = re.compile(r"/v1/collections/([^/]+)/search")
#: Query anchors answered from stored vectors alone (no model, no image, no URL fetch); a
#: batch (`vectors`) is work for a thread.
INLINE_ANCHORS = frozenset({"id", "ids", "vector"})
#: Body keys that add no model or image work to such a query.
INLINE_OPTIONS = frozenset({"query", "k", "offset", "filter", "group_by", "boost", "fields", "min_score",
                            "negative", "negative_weight"})
#: At most this many anchor ids, and hits asked for (k + offset), on the loop.
INLINE_MAX_IDS = 32
INLINE_MAX_HITS = 100


class Pacer:
    """Runs short calls on the event loop and long ones in worker threads, per key (a collection).

    A key's calls run in a thread until one has been timed, then on the loop while the moving
    average of their CPU time stays under `inline_max_s`; a call that took longer sends the
    next ones back to threads, where they are timed too, so the key comes back once they are
    short again. CPU time, not wall time: on a busy machine a short call is often preempted,
    and in a thread it waits for the GIL, neither of which says the call is long. What CPU time
    misses, a call on the loop that waited (for a writer's index lock, a slow disk), counts by
    wall time: one that held the loop over `stall_s` keeps the key off it for `cooldown_s`, or
    longer in proportion to the stall. On the loop a search costs its own time; the hop to a
    worker thread and back added ~0.2 ms of the server's time and two thread wake-ups.
    """

    def __init__(self, inline_max_s: float = 0.002, stall_s: float = 0.05, cooldown_s: float = 1.0,
                 weight: float = 0.2) -> None:
        self.inline_max_s = inline_max_s
        self.stall_s = stall_s
        self.cooldown_s = cooldown_s
        self.weight = weight
        self._average: dict[str, float] = {}
        self._off_loop_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def inline(self, key: str) -> bool:
        average = self._average.get(key)
        return (average is not None and average <= self.inline_max_s
                and self._off_loop_until.get(key, 0.0) <= time.monotonic())

    def _timed(self, key: str, fn: Callable[[], Any], on_loop: bool) -> Any:
        """fn(), its time counted for `key` once it returns (so keys are real collections: a
        client naming missing ones cannot grow the tables)."""
        wall, cpu = time.perf_counter(), time.thread_time()
        result = fn()
        cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
        with self._lock:
            average = self._average.get(key)
            # one long call is enough to leave the loop; a short one only nudges the average down
            self._average[key] = cpu if average is None or cpu > self.inline_max_s \
                else average + self.weight * (cpu - average)
            if on_loop and wall > self.stall_s:
                self._off_loop_until[key] = time.monotonic() + self.cooldown_s * wall / self.stall_s
        return result

    async def run(self, key: str, fn: Callable[[], Any], may_inline: bool) -> Any:
        """fn() on the loop or in a worker thread; calls that may not run inline are not timed."""
        if not may_inline:
            return await run_in_threadpool(fn)
        if self.inline(key):
            return self._timed(key, fn, True)
        return await run_in_threadpool(self._timed, key, fn, False)


def _json_content(scope: Scope) -> bool:
    """`Content-Type: application/json` (parameters allowed), which FastAPI reads as JSON too."""
    value = header(scope, b"content-type")
    return value is not None and value.partition(";")[0].strip().lower() == "application/json"


def _inline_query(params: dict) -> bool:
    """True for a query of one vector or a few stored records, for a page of hits."""
    query = params.get("query")
    anchors = [query, *(params.get("negative") or [])]
    return (params.keys() <= INLINE_OPTIONS
            and params.get("k", 10) + params.get("offset", 0) <= INLINE_MAX_HITS
            and len(anchors) <= INLINE_MAX_IDS
            and all(isinstance(a, dict) and a and a.keys() <= INLINE_ANCHORS
                    and (not isinstance(a.get("ids"), list) or len(a["ids"]) <= INLINE_MAX_IDS) for a in anchors))


async def _body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class FastSearch:
    """The search route's common case answered without FastAPI's routing (see the module doc)."""

    def __init__(self, app: ASGIApp, pacer: Pacer | None = None) -> None:
        self.app = app
        self.pacer = pacer or Pacer()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = SEARCH_PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" \
            and not scope.get("root_path") else None
        if match is None or not _json_content(scope):
            await self.app(scope, receive, send)
            return
        body = await _body(receive)
        params = _validated(body)
        if params is None:  # FastAPI parses it again and answers its own error
            await self.app(scope, _replay(body, receive), send)
            return
        name = match.group(1)
        db = scope["app"].state.db
        query = params.pop("query")

        def search() -> dict:
            return db.collection(name).search(query, **params)
        # the embedded store searches in this process (CPU work); an external one (Milvus) waits
        # on its server, which would hold the loop whatever the CPU time says
        may_inline = isinstance(db.store, EmbeddedStore) and _inline_query({"query": query, **params})
        try:
            result = await self.pacer.run(name, search, may_inline)
        except LookalikeError as exc:
            response = await on_lookalike_error(Request(scope), exc)
        else:
            response = ok(result)
        await response(scope, receive, send)


def _validated(body: bytes) -> dict | None:
    """The body as the route's keyword arguments, or None when the route would refuse it."""
    if not body:
        return None
    try:
        data = load_json(body)
        return S.SearchBody.model_validate(data).model_dump(exclude_unset=True)
    except (ValueError, ValidationError, RecursionError):
        return None
