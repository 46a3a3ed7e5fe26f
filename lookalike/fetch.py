"""Reading image bytes from a record's source: a local file or an http(s) URL."""
from __future__ import annotations

from pathlib import Path

import httpx

from .errors import BadRequest, NotAnImage, TooLarge

MAX_IMAGE_BYTES = 50 * 1024 * 1024
URL_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


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


def fetch_url(url: str, client: httpx.Client | None = None, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """GET an image, bounded in size and time; errors name the URL and the reason."""
    own = client is None
    client = client or httpx.Client(timeout=URL_TIMEOUT, follow_redirects=True)
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise BadRequest(f"fetching {url} failed: HTTP {resp.status_code}")
            ctype = resp.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype and not (ctype.startswith("image/") or ctype in ("application/octet-stream", "binary/octet-stream")):
                raise NotAnImage(f"{url} is not an image (content-type {ctype})")
            chunks, total = [], 0
            for chunk in resp.iter_bytes():
                total += len(chunk)
                if total > max_bytes:
                    raise TooLarge(f"{url} is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except httpx.HTTPError as exc:
        raise BadRequest(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
    finally:
        if own:
            client.close()
