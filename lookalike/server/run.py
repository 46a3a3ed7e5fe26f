"""`lookalike serve`: open the data folder, check the keys against the bind address, run uvicorn.

Slow and numerous clients are bounded here: uvicorn's `limit_concurrency` caps connections and
in-flight requests (503 beyond), its `timeout_keep_alive` closes idle kept-alive connections, and
the protocol (`protocol.py`: httptools' C parser when installed, else h11) closes a connection
whose request headers have not all arrived within `header_timeout` seconds (uvicorn has no such
option; a client dripping headers held a connection forever). The event loop is uvicorn's
`auto` choice: uvloop when installed.
"""
from __future__ import annotations

import ipaddress
import os
import sys
from typing import Any

from ..collection import connect
from ..errors import BadRequest
from ..ingest import fetch
from ..models.images import DEFAULT_MAX_PIXELS
from .app import DEFAULT_MAX_BODY_BYTES, create_app
from .guard import AuthFailures
from .protocol import DEFAULT_HEADER_TIMEOUT_S, protocol_with_header_timeout

#: Shortest API key not warned about at startup.
MIN_KEY_LENGTH = 16
#: Defaults for the slow-client bounds (each a `serve` option and an environment variable).
DEFAULT_MAX_CONNECTIONS = 1000
DEFAULT_KEEP_ALIVE_S = 5


def key_warnings(admin_key: str | None, search_key: str | None) -> list[str]:
    """A warning for each configured key shorter than MIN_KEY_LENGTH (guessable)."""
    return [f"the {role} key is {len(key)} characters long; use at least {MIN_KEY_LENGTH} random characters"
            for role, key in (("admin", admin_key), ("search", search_key)) if key and len(key) < MIN_KEY_LENGTH]


def _number(given: Any, env: str, default: float, flag: str, *, minimum: float, integer: bool = False) -> Any:
    """An option's value: given, else `$env`, else the default; BadRequest naming both when invalid."""
    raw = given if given is not None else os.environ.get(env) or default
    try:
        value = int(raw) if integer else float(raw)
    except (TypeError, ValueError):
        raise BadRequest(f"{flag} / {env} must be a{'n integer' if integer else ' number'}, got {raw!r}") from None
    if not value >= minimum:
        raise BadRequest(f"{flag} / {env} must be at least {minimum}, got {value}")
    return value


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
    Bounds against slow or hostile clients, each also read from its environment variable:
    `url_deadline` (seconds per image URL fetch, retries included; LOOKALIKE_URL_DEADLINE, 20),
    `max_url_fetches` (URL fetches at once, 503 beyond; LOOKALIKE_MAX_URL_FETCHES, 16),
    `auth_failures` (wrong keys per minute per address and per key before 429, 0 turns it off;
    LOOKALIKE_AUTH_FAILURES, 10), `auth_window` (LOOKALIKE_AUTH_WINDOW, 60 s),
    `header_timeout` (LOOKALIKE_HEADER_TIMEOUT, 10 s), `max_connections` (uvicorn's
    limit_concurrency; LOOKALIKE_MAX_CONNECTIONS, 1000), `keep_alive` (LOOKALIKE_KEEP_ALIVE, 5 s).
    """
    import uvicorn

    admin_key = admin_key or os.environ.get("LOOKALIKE_ADMIN_KEY") or None
    search_key = search_key or os.environ.get("LOOKALIKE_SEARCH_KEY") or None
    warning = check_keys(host, admin_key, search_key)
    max_body = int(options.get("max_body_bytes") or DEFAULT_MAX_BODY_BYTES)
    if max_body < 1024:
        raise BadRequest("--max-body-bytes must be at least 1024")
    max_pixels = _max_pixels(options.get("max_pixels"), DEFAULT_MAX_PIXELS)
    fetch.configure(
        deadline_s=_number(options.get("url_deadline"), "LOOKALIKE_URL_DEADLINE", fetch.URL_DEADLINE_S,
                           "--url-deadline", minimum=0.1),
        max_fetches=_number(options.get("max_url_fetches"), "LOOKALIKE_MAX_URL_FETCHES", fetch.MAX_URL_FETCHES,
                            "--max-url-fetches", minimum=1, integer=True))
    failures = _number(options.get("auth_failures"), "LOOKALIKE_AUTH_FAILURES", 10, "--auth-failures",
                       minimum=0, integer=True)
    window = _number(options.get("auth_window"), "LOOKALIKE_AUTH_WINDOW", 60, "--auth-window", minimum=1)
    header_timeout = _number(options.get("header_timeout"), "LOOKALIKE_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT_S,
                             "--header-timeout", minimum=0.1)
    max_connections = _number(options.get("max_connections"), "LOOKALIKE_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS,
                              "--max-connections", minimum=1, integer=True)
    keep_alive = _number(options.get("keep_alive"), "LOOKALIKE_KEEP_ALIVE", DEFAULT_KEEP_ALIVE_S,
                         "--keep-alive", minimum=1, integer=True)
    for text in ([warning] if warning else []) + key_warnings(admin_key, search_key):
        print(f"lookalike: warning: {text}", file=sys.stderr)
    db = connect(data, allow_file=False, max_pixels=max_pixels)
    try:
        app = create_app(db, admin_key=admin_key, search_key=search_key,
                         cors_origins=options.get("cors_origins") or (), max_body_bytes=max_body,
                         auth_failures=AuthFailures(failures, window) if failures else False,
                         models_dir=options.get("models_dir"))
        print(f"lookalike: serving {data} on http://{host}:{port} (API docs at /docs)", file=sys.stderr)
        uvicorn.run(app, host=host, port=port, log_level=options.get("log_level", "info"),
                    access_log=options.get("access_log", True), http=protocol_with_header_timeout(header_timeout),
                    limit_concurrency=max_connections, timeout_keep_alive=keep_alive)
    finally:
        db.close()
