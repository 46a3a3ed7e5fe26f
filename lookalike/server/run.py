"""`lookalike serve`: open the data folder, check the keys against the bind address, run uvicorn."""
from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

from ..errors import BadRequest


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another host name: treat as reachable from outside


def check_keys(host: str, admin_key: str | None, search_key: str | None) -> str | None:
    """Refuse unsafe setups (BadRequest); return a warning for development mode, else None."""
    if search_key and not admin_key:
        raise BadRequest("a search key needs an admin key too (--admin-key or LOOKALIKE_ADMIN_KEY): "
                         "without one nobody could write")
    if admin_key and search_key and admin_key == search_key:
        raise BadRequest("the admin key and the search key must differ")
    if not admin_key and not is_loopback(host):
        raise BadRequest(f"refusing to serve on {host} without an admin key: anyone who can reach it could "
                         "change or delete your data. Give --admin-key (or LOOKALIKE_ADMIN_KEY), or bind "
                         "to 127.0.0.1")
    if not admin_key:
        return (f"no API keys: development mode, serving on loopback {host} only; every process on this "
                "machine can read and write. Set --admin-key / --search-key before exposing it.")
    return None


def _max_pixels(given: Any, default: int) -> int:
    """The image pixel limit: the option, else `$LOOKALIKE_MAX_PIXELS`, else the default."""
    raw = given if given is not None else os.environ.get("LOOKALIKE_MAX_PIXELS") or default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"--max-pixels / LOOKALIKE_MAX_PIXELS must be an integer, got {raw!r}") from None
    if value < 1:
        raise BadRequest(f"--max-pixels / LOOKALIKE_MAX_PIXELS must be at least 1, got {value}")
    return value


def serve(data: str, host: str = "127.0.0.1", port: int = 8000, admin_key: str | None = None,
          search_key: str | None = None, **options: Any) -> None:
    """Serve the HTTP API (and the web page) for the data folder until interrupted.

    Keys not given fall back to `LOOKALIKE_ADMIN_KEY` / `LOOKALIKE_SEARCH_KEY`. Options:
    `cors_origins` (list of allowed origins; CORS is off without it), `max_body_bytes`,
    `log_level` (uvicorn's, default "info"), `access_log` (default True), `max_pixels` (largest
    image, width x height, default `$LOOKALIKE_MAX_PIXELS` or 64 million; larger ones are 413),
    `models_dir` (the folder user models may come from over HTTP; none by default).
    """
    import uvicorn

    from .. import connect
    from ..models.images import DEFAULT_MAX_PIXELS
    from .app import DEFAULT_MAX_BODY_BYTES, create_app

    admin_key = admin_key or os.environ.get("LOOKALIKE_ADMIN_KEY") or None
    search_key = search_key or os.environ.get("LOOKALIKE_SEARCH_KEY") or None
    warning = check_keys(host, admin_key, search_key)
    max_body = int(options.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES)
    if max_body < 1024:
        raise BadRequest("--max-body-bytes must be at least 1024")
    max_pixels = _max_pixels(options.get("max_pixels"), DEFAULT_MAX_PIXELS)
    if warning:
        print(f"lookalike: warning: {warning}", file=sys.stderr)
    db = connect(data, allow_file=False, max_pixels=max_pixels)
    try:
        app = create_app(db, admin_key=admin_key, search_key=search_key,
                         cors_origins=options.get("cors_origins") or (), max_body_bytes=max_body,
                         models_dir=options.get("models_dir"))
        print(f"lookalike: serving {data} on http://{host}:{port} (API docs at /docs)", file=sys.stderr)
        uvicorn.run(app, host=host, port=port, log_level=options.get("log_level", "info"),
                    access_log=options.get("access_log", True))
    finally:
        db.close()
