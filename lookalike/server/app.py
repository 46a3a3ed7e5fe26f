"""The FastAPI application: the contract's routes over `lookalike.collection`.

The server is a thin layer: every route validates the body's shape, then calls the same
`Database` / `Collection` method as the Python API in a worker thread (encoding and store
writes never run on the event loop), and maps `LookalikeError` to its status and the
contract's `{"error": {"code", "message"}}` body. JSON searches take a shorter path to the
same answers (`fastpath.py`), on the event loop while they are measured short.
"""
from __future__ import annotations

import logging
from pathlib import Path as FilePath
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..collection import Database
from ..errors import LookalikeError
from ..records import CONTROL_CHARS
from .errors import (COMMON_ERRORS, ERROR_DOCS, on_http_error, on_lookalike_error, on_unexpected,
                     on_validation_error)
from .fastpath import FastSearch
from .guard import AuthFailures, Guard, Keys, send_error
from .routes import api_routes, system_routes
from .. import web
from ..version import __version__

log = logging.getLogger("lookalike.server")

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
TAGS = [{"name": "collections", "description": "Create, inspect and drop collections."},
        {"name": "records", "description": "Insert, update, read and delete records."},
        {"name": "search", "description": "Similarity search, recommendations, re-ranking and matching."},
        {"name": "system", "description": "Health."}]


# -- the app ------------------------------------------------------------------------------
def create_app(db: Database, *, admin_key: str | None = None, search_key: str | None = None,
               cors_origins: list[str] | tuple[str, ...] = (), max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               ingest_batch_size: int = 32, auth_failures: AuthFailures | None | bool = True,
               models_dir: str | FilePath | None = None, fast_search: bool = True) -> FastAPI:
    """The HTTP API over `db` (open it with `allow_file=False`: `_file` is refused over HTTP).

    `auth_failures`: the wrong-key limiter (True: 10 per minute per address and per key; False: off).
    `models_dir`: the only folder `model: "torchscript:PATH"` may name over HTTP (None: user
    models are refused), so an admin request cannot probe the server's files.
    `fast_search`: answer JSON searches by `fastpath.FastSearch` (False: every request goes
    through FastAPI's routing; the answers are the same).
    """
    app = _fastapi(title="lookalike", version=__version__, openapi_tags=TAGS,
                   description="Self-hosted visual similarity search: HTTP API v1. Send "
                               "`Authorization: Bearer KEY` when the server has keys.")
    app.state.db = db
    app.state.max_body_bytes = max_body_bytes
    app.state.ingest_batch_size = ingest_batch_size
    app.state.models_dir = models_dir
    app.add_exception_handler(LookalikeError, on_lookalike_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
    app.include_router(system_routes())
    app.include_router(api_routes())
    _mount_web(app)
    _document_errors(app)
    limiter = AuthFailures() if auth_failures is True else auth_failures or None
    if fast_search:
        app.add_middleware(FastSearch)
    app.add_middleware(RefuseControlPaths)
    app.add_middleware(Guard, keys=Keys(admin_key or None, search_key or None), max_body_bytes=max_body_bytes,
                       auth_failures=limiter)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    return app


class RefuseControlPaths:
    """400 for a URL path holding a control character (after percent-decoding).

    Starlette's route patterns end in `$`, which also matches before a final newline: without
    this, `GET /records/dd%0A` would answer record `dd` and `PUT /collections/nl%0A` would name a
    collection `nl`. No id or collection name can hold one (records.check_id), so none is lost.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            bad = CONTROL_CHARS.search(scope.get("path", ""))
            if bad:
                await send_error(send, 400, "bad_request", f"the URL path contains the control character "
                                 f"{bad.group()!r}: record ids and collection names cannot hold control characters")
                return
        await self.app(scope, receive, send)


def _fastapi(**kwargs: Any) -> FastAPI:
    """FastAPI whose /docs and /redoc pages use bundled assets, not a CDN (self-hosted, offline)."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        return FastAPI(**kwargs)
    return FastAPIOffline(**kwargs)


def _mount_web(app: FastAPI) -> None:
    """The web page at `/`; if it cannot be mounted, `/` shows the API docs (the API is unaffected:
    the page's read routes are API routes)."""
    try:
        web.mount(app)
        return
    except Exception:  # a broken page must not take the API down
        log.exception("could not mount the web page; / redirects to /docs")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")


def _document_errors(app: FastAPI) -> None:
    """Every `/v1` operation (the web page's too) lists the errors the server can answer,
    all in the contract's shape (FastAPI's own 422 schema is replaced: ours is answered)."""
    generate = app.openapi
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = generate()
        for path, operations in doc.get("paths", {}).items():
            if not path.startswith("/v1/"):
                continue
            for op in operations.values():
                responses = op.setdefault("responses", {})
                for status in sorted({400, *COMMON_ERRORS}):
                    current = responses.get(str(status))
                    schema = str(((current or {}).get("content", {}).get("application/json", {})
                                  .get("schema", {})).get("$ref", ""))
                    if current is None or schema.endswith("/HTTPValidationError"):
                        responses[str(status)] = {"description": ERROR_DOCS[status], "content": ref}
        doc.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        doc.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        return doc
    app.openapi = openapi  # type: ignore[method-assign]
