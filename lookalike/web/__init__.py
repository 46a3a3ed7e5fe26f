"""The web page at `/`: browse a collection, search by example, filter by its metadata.

`mount(app, db)` is called by the server's `create_app`. It adds the page (plain HTML,
JS and CSS shipped in `static/`, nothing fetched from elsewhere) and three read routes
the page needs, all under `/v1` so the server's key checks cover them (the search key
is enough):

    GET /v1/collections/{name}/records?offset=&limit=&filter=&fields=   a page of records
    GET /v1/collections/{name}/facets?filter=&top=                        values and ranges
    GET /v1/collections/{name}/records/{id}/thumbnail[?optional=true]     the kept JPEG (404/204 if none)

Images shown are only those kept by the server (thumbnails), never a record's `_url`: a
viewer's browser contacts no third-party host. The page and its assets are sent with a
Content-Security-Policy that allows nothing from elsewhere, and may not be framed.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request, Security
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles

from ..collection import Database
from ..errors import BadRequest
from ..records import check_id, check_json_text

STATIC = Path(__file__).parent / "static"
#: The page runs only its own script and style, shows images from this server (blob: URLs of
#: fetched thumbnails), talks only to this server, and cannot be framed (clickjacking).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer"}


def _json_param(name: str, raw: str | None) -> Any:
    """A query-string parameter holding JSON (filters, field lists); 400 naming it if malformed."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"'{name}' is not valid JSON: {exc}") from None
    check_json_text(value, f"the query parameter '{name}'")
    return value


def browse_routes(db: Database) -> APIRouter:
    """The read routes behind the page's grid, filters and thumbnails."""
    bearer = HTTPBearer(auto_error=False, description="The admin key or the search key.")
    router = APIRouter(prefix="/v1", tags=["browse"], dependencies=[Security(bearer)])

    @router.get("/collections/{name}/records", summary="A page of records in write order (browsing)")
    def list_records(name: str, offset: int = Query(0, description="How many matching records to skip."),
                     limit: int = Query(50, description="Records per page, 1..1000."),
                     filter: str | None = Query(None, description="A filter as JSON, as in search."),
                     fields: str | None = Query(None, description="JSON list of fields to return; default all.")
                     ) -> JSONResponse:
        page = db.collection(name).records(offset=offset, limit=limit, filter=_json_param("filter", filter),
                                           fields=_json_param("fields", fields))
        return JSONResponse(page)

    @router.get("/collections/{name}/facets", summary="Metadata values with counts and numeric ranges")
    def facets(name: str, filter: str | None = Query(None, description="Count only records matching this JSON filter."),
               top: int = Query(20, description="Most frequent values listed per field, 1..1000.")) -> JSONResponse:
        return JSONResponse(db.collection(name).facets(filter=_json_param("filter", filter), top=top))

    @router.get("/collections/{name}/records/{record_id:path}/thumbnail", summary="The small JPEG kept for a record",
                responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(request: Request, name: str, record_id: str,
                  optional: bool = Query(False, description="Answer 204 instead of 404 when none is kept "
                                                            "(the page asks so, to keep the console clean).")
                  ) -> Response:
        col = db.collection(name)
        raw = request.scope.get("raw_path")
        if isinstance(raw, bytes) and not raw.endswith(b"/thumbnail"):
            # A record id may hold '/': sent as `x%2Fthumbnail` (as the client and the page encode
            # ids), '/thumbnail' is part of the id, and this is GET of that record.
            return JSONResponse(col.get(record_id + "/thumbnail"))
        check_id(record_id)
        if optional and col.kept_thumbnail(record_id) is None:
            col.get(record_id)  # 404 for an unknown record all the same
            return Response(status_code=204)
        data = col.thumbnail(record_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300",
                                                                "X-Content-Type-Options": "nosniff"})

    return router


def mount(app: FastAPI, db: Database) -> None:
    """Serve the page at `/`, its assets under `/ui/`, and the browse routes (ahead of `/records/{id:path}`)."""
    before = len(app.router.routes)
    app.include_router(browse_routes(db))
    added = app.router.routes[before:]
    # The server's GET /records/{id:path} would otherwise swallow .../records/{id}/thumbnail.
    del app.router.routes[before:]
    app.router.routes[0:0] = added

    app.mount("/ui", _with_headers(StaticFiles(directory=STATIC), PAGE_HEADERS), name="ui")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache", **PAGE_HEADERS})


def _with_headers(app: Any, headers: dict[str, str]) -> Any:
    """An ASGI app whose responses carry `headers` too (for the static assets)."""
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]

    async def wrapped(scope: dict, receive: Any, send: Any) -> None:
        async def send_with(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)
        await app(scope, receive, send_with)
    return wrapped
