"""An ASGI middleware in front of the API: API keys first, then the request body bound.

Both run before any route code, so an unauthenticated or oversized request is answered
(401/403/413, in the contract's error shape) without reading or parsing its body. Wrong keys
are counted per client address and per key: past the limit (`AuthFailures`) that address or
key gets 429 with Retry-After until its window has passed, so keys cannot be guessed at speed.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: POST routes that only read, so the search key may call them (the contract's read routes).
READ_POSTS = re.compile(r"/v1/collections/[^/]+/(search|search/image|recommend|rerank|match|duplicates)/?")
#: The one route that streams NDJSON (bounded per line there); every other body is bounded here.
UPSERT_PATH = re.compile(r"/v1/collections/[^/]+/records/?")
OPEN_PATHS = {"/v1/health"}
NDJSON_TYPES = ("application/x-ndjson", "application/jsonl", "application/json-lines", "application/ndjson")


@dataclass(frozen=True)
class Keys:
    """The configured keys; with neither, everything is allowed (loopback development mode)."""

    admin: str | None = None
    search: str | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.admin or self.search)


class AuthFailures:
    """Failed API-key attempts per client (address, or wrong key) in a sliding window.

    A client with `limit` failures within the last `window_s` seconds is refused (429) until the
    oldest of them leaves the window. `clock` is injectable for tests; at most `max_tracked`
    clients are remembered (the least recently failing are forgotten first), so a flood of
    addresses cannot grow memory without bound.
    """

    def __init__(self, limit: int = 10, window_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_tracked: int = 100_000) -> None:
        if limit < 1 or not window_s > 0:
            raise ValueError("AuthFailures needs limit >= 1 and window_s > 0")
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.max_tracked = max_tracked
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, clients: list[str]) -> int | None:
        """Seconds until every one of `clients` may try again, or None when none is blocked."""
        now = self.clock()
        waits = []
        for client in clients:
            times = self._failures.get(client)
            if times is None:
                continue
            while times and times[0] <= now - self.window_s:
                times.popleft()
            if not times:
                del self._failures[client]
            elif len(times) >= self.limit:
                waits.append(times[0] + self.window_s - now)
        return max(1, math.ceil(max(waits))) if waits else None

    def record(self, clients: list[str]) -> None:
        now = self.clock()
        for client in clients:
            times = self._failures.pop(client, None) or deque(maxlen=self.limit)
            times.append(now)
            self._failures[client] = times  # most recent last
        while len(self._failures) > self.max_tracked:
            self._failures.popitem(last=False)


def required_role(method: str, path: str) -> str | None:
    """None (no key), 'search' or 'admin' for a request, by the contract's rules."""
    if not path.startswith("/v1/") or path.rstrip("/") in OPEN_PATHS:
        return None
    if method in ("GET", "HEAD") or (method == "POST" and READ_POSTS.fullmatch(path)):
        return "search"
    return "admin"


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()


def _wire_bytes(token: str) -> bytes:
    """The header's own bytes (headers are decoded as latin-1), so UTF-8 keys match too."""
    try:
        return token.encode("latin-1")
    except UnicodeEncodeError:
        return token.encode("utf-8")


def role_of(token: str | None, keys: Keys) -> str | None:
    """'admin', 'search' or None for a bearer token.

    Both keys are always compared, in constant time, as SHA-256 digests of equal length:
    how long a wrong key takes to refuse says nothing about its length or shared prefix.
    """
    if token is None:
        return None
    given = _digest(_wire_bytes(token))
    is_admin = hmac.compare_digest(given, _digest((keys.admin or "").encode())) and bool(keys.admin)
    is_search = hmac.compare_digest(given, _digest((keys.search or "").encode())) and bool(keys.search)
    return "admin" if is_admin else "search" if is_search else None


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    return None


def header(scope: Scope, wanted: bytes) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == wanted:
            return value.decode("latin-1")
    return None


def is_ndjson(scope: Scope) -> bool:
    ctype = (header(scope, b"content-type") or "").split(";")[0].strip().lower()
    return ctype in NDJSON_TYPES


def streams_ndjson(scope: Scope) -> bool:
    """True for an NDJSON upload to the records route, the only body not read whole here."""
    return scope["method"] == "POST" and bool(UPSERT_PATH.fullmatch(scope["path"])) and is_ndjson(scope)


async def send_error(send: Send, status: int, code: str, message: str, extra_headers: list | None = None) -> None:
    body = json.dumps({"error": {"code": code, "message": message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra_headers or [])})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Checks the API key of each `/v1` request and bounds request bodies.

    JSON and multipart bodies are read here up to `max_body_bytes` (413 beyond) and replayed
    to the app; NDJSON streams on the records route (and only there) pass through, bounded per
    line by the route itself, so a catalogue of any length can be streamed in. A request
    refused for its key, or to an open page, never has its body read.
    """

    def __init__(self, app: ASGIApp, keys: Keys, max_body_bytes: int,
                 auth_failures: AuthFailures | None = None) -> None:
        self.app = app
        self.keys = keys
        self.max_body_bytes = max_body_bytes
        self.auth_failures = auth_failures

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        role = required_role(scope["method"], scope["path"])
        if role is not None and self.keys.enabled and not await self._allowed(scope, role, send):
            return  # answered before a byte of the body is read
        if role is None:  # open pages (health, docs, the web page) take no body: never buffer one
            await self.app(scope, _without_body(receive), send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE") and not header(scope, b"content-length") \
                and not header(scope, b"transfer-encoding"):
            await self.app(scope, receive, send)
            return
        if streams_ndjson(scope):
            await self.app(scope, receive, send)
            return
        length = header(scope, b"content-length")
        declared = int(length) if length is not None and length.strip().isdigit() else None
        if declared is not None and declared > self.max_body_bytes:
            await self._too_large(send)
            return
        body = await self._read(receive)
        if body is None:
            await self._too_large(send)
            return
        await self.app(scope, _replay(body, receive), send)

    async def _allowed(self, scope: Scope, role: str, send: Send) -> bool:
        token = bearer_token(scope)
        clients = _clients(scope, token)
        if self.auth_failures is not None:
            wait = self.auth_failures.retry_after(clients)
            if wait is not None:  # refused before the key is checked: no guess is answered meanwhile
                await send_error(send, 429, "too_many_requests",
                                 f"too many wrong API keys from this client; try again in {wait} s",
                                 [(b"retry-after", str(wait).encode())])
                return False
        granted = role_of(token, self.keys)
        if granted is None:
            if token is not None and self.auth_failures is not None:
                self.auth_failures.record(clients)
            message = ("missing API key: send 'Authorization: Bearer KEY'" if token is None
                       else "invalid API key")
            await send_error(send, 401, "unauthorized", message, [(b"www-authenticate", b"Bearer")])
            return False
        if role == "admin" and granted != "admin":
            await send_error(send, 403, "forbidden", "the search key may only read and search; "
                                                     "this route needs the admin key")
            return False
        return True

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None once it grows over the limit."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def _too_large(self, send: Send) -> None:
        await send_error(send, 413, "too_large", f"request body is larger than the server's limit of "
                                                 f"{self.max_body_bytes} bytes (split the batch, or stream NDJSON)")


def _clients(scope: Scope, token: str | None) -> list[str]:
    """Who an attempt counts against: the client address, and the key itself when one was sent."""
    client = scope.get("client")
    clients = [f"addr:{client[0] if client else 'unknown'}"]
    if token:
        clients.append("key:" + _digest(_wire_bytes(token)).hex()[:32])
    return clients


def _without_body(receive: Receive) -> Receive:
    """A receive() that hands the app an empty body at once; later calls (a streaming response
    listening for the client to leave) drop body chunks until the disconnect."""
    first = True

    async def empty() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message
    return empty


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands the buffered body over once, then waits on the real one."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()
    return replay
