"""The web page at `/`: browse a collection, search by example, filter by its metadata.

`mount(app)` (called by the server's `create_app`) serves the page: plain HTML, JS and CSS
shipped in `static/`, nothing fetched from elsewhere. The read routes it calls are API routes
(`server/routes/browse.py`: a page of records, facets, thumbnails).

Images shown are only those kept by the server (thumbnails), never a record's `_url`: a
viewer's browser contacts no third-party host. The page and its assets are sent with a
Content-Security-Policy that allows nothing from elsewhere, and may not be framed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
#: The page runs only its own script and style, shows images from this server (blob: URLs of
#: fetched thumbnails), talks only to this server, and cannot be framed (clickjacking).
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                "Referrer-Policy": "no-referrer"}


def mount(app: FastAPI) -> None:
    """Serve the page at `/` and its assets under `/ui/` (its read routes are the server's, routes/browse.py)."""
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
