"""Reading image bytes from a record's source: a local file or an http(s) URL.

URL fetches are bounded in size and time and retried with exponential backoff on
transient failures (connection errors, timeouts, 429 and 5xx answers); anything else fails
at once with the reason, for that record alone.
"""
from __future__ import annotations

import time
from pathlib import Path

import httpx

from .errors import BadRequest, NotAnImage, TooLarge

MAX_IMAGE_BYTES = 50 * 1024 * 1024
URL_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
URL_CONNECTIONS = 16
RETRIES = 3
BACKOFF_S = 0.25
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _Transient(Exception):
    """A failure worth another try."""


def read_file(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Bytes of a local image file, with the reason when it cannot be read."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise TooLarge(f"file {path} is {size} bytes, over the limit of {max_bytes}")
        return path.read_bytes()
    except FileNotFoundError:
        raise BadRequest(f"file not found: {path}") from None
    except IsADirectoryError:
        raise BadRequest(f"not a file: {path}") from None
    except PermissionError:
        raise BadRequest(f"permission denied: {path}") from None


def http_client() -> httpx.Client:
    """A client sized for concurrent image fetches (bounded connections and timeouts)."""
    limits = httpx.Limits(max_connections=URL_CONNECTIONS, max_keepalive_connections=URL_CONNECTIONS)
    return httpx.Client(timeout=URL_TIMEOUT, follow_redirects=True, limits=limits,
                        headers={"User-Agent": "lookalike/0.1 (image fetcher)"})


def fetch_url(url: str, client: httpx.Client | None = None, max_bytes: int = MAX_IMAGE_BYTES,
              retries: int = RETRIES) -> bytes:
    """GET an image, retrying transient failures; errors name the URL and the reason."""
    own = client is None
    client = client or http_client()
    try:
        for attempt in range(retries + 1):
            try:
                return _fetch_once(client, url, max_bytes)
            except _Transient as exc:
                if attempt == retries:
                    raise BadRequest(f"fetching {url} failed after {retries + 1} tries: {exc}") from None
                time.sleep(BACKOFF_S * 2 ** attempt)
        raise AssertionError("unreachable")
    finally:
        if own:
            client.close()


def _fetch_once(client: httpx.Client, url: str, max_bytes: int) -> bytes:
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code in _TRANSIENT_STATUS:
                raise _Transient(f"HTTP {resp.status_code}")
            if resp.status_code != 200:
                raise BadRequest(f"fetching {url} failed: HTTP {resp.status_code}")
            ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype and not (ctype.startswith("image/") or ctype in ("application/octet-stream", "binary/octet-stream")):
                raise NotAnImage(f"{url} is not an image (content-type {ctype})")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(f"{url} is {declared} bytes, over the limit of {max_bytes}")
            chunks, total = [], 0
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise TooLarge(f"{url} is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from None
    except httpx.HTTPError as exc:
        raise BadRequest(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
