"""Reading image bytes from a record's source: a local file or an http(s) URL.

URL fetches are bounded in size and time and retried with exponential backoff on
transient failures (connection errors, timeouts, 429 and 5xx answers); anything else fails
at once with the reason, for that record alone.

Server-side request forgery is refused: only http/https; the host is resolved first and
loopback, private, link-local (cloud metadata), multicast and reserved addresses are
refused unless allowed (`LOOKALIKE_URL_ALLOW`: comma-separated hosts or CIDRs, or `*`);
the connection goes to the checked address (no DNS rebinding in between), and every
redirect is checked the same way.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import time
from pathlib import Path
from urllib.parse import urljoin

import httpx

from ..errors import BadRequest, NotAnImage, TooLarge

MAX_IMAGE_BYTES = 50 * 1024 * 1024
URL_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
URL_CONNECTIONS = 16
RETRIES = 3
BACKOFF_S = 0.25
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_REDIRECTS = 5


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
    return httpx.Client(timeout=URL_TIMEOUT, follow_redirects=False, limits=limits,
                        headers={"User-Agent": "lookalike/0.1 (image fetcher)"})


class UrlPolicy:
    """Which hosts a URL may point at: public addresses always, private ones if allowed."""

    def __init__(self, allow: str | None = None) -> None:
        spec = os.environ.get("LOOKALIKE_URL_ALLOW", "") if allow is None else allow
        items = [x.strip() for x in spec.split(",") if x.strip()]
        self.allow_all = "*" in items
        self.hosts = {x.lower() for x in items if not _is_network(x)}
        self.networks = [ipaddress.ip_network(x, strict=False) for x in items if _is_network(x)]

    def resolve(self, url: str) -> tuple[httpx.URL, str]:
        """The parsed URL and the checked IP address to connect to; BadRequest if refused."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise BadRequest(f"invalid URL {url!r}") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise BadRequest(f"only http:// and https:// URLs with a host are fetched, not {url!r}")
        host = parsed.host
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise BadRequest(f"cannot resolve host {host!r} of {url}: {exc}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        for addr in addresses:
            if not self.allowed(host, ipaddress.ip_address(addr.split("%")[0])):
                raise BadRequest(f"refusing to fetch {url}: {host} resolves to the non-public address {addr} "
                                 "(allow it with LOOKALIKE_URL_ALLOW)")
        return parsed, addresses[0]

    def allowed(self, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.allow_all or host.lower() in self.hosts or any(ip in net for net in self.networks):
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
        return True
    except ValueError:
        return False


def fetch_url(url: str, client: httpx.Client | None = None, max_bytes: int = MAX_IMAGE_BYTES,
              retries: int = RETRIES, policy: UrlPolicy | None = None) -> bytes:
    """GET an image, retrying transient failures; errors name the URL and the reason."""
    own = client is None
    client = client or http_client()
    policy = policy or UrlPolicy()
    try:
        for attempt in range(retries + 1):
            try:
                return _fetch_following(client, url, max_bytes, policy)
            except _Transient as exc:
                if attempt == retries:
                    raise BadRequest(f"fetching {url} failed after {retries + 1} tries: {exc}") from None
                time.sleep(BACKOFF_S * 2 ** attempt)
        raise AssertionError("unreachable")
    finally:
        if own:
            client.close()


def _fetch_following(client: httpx.Client, url: str, max_bytes: int, policy: UrlPolicy) -> bytes:
    """Fetch, following redirects ourselves so that every hop passes the policy."""
    for _ in range(MAX_REDIRECTS + 1):
        parsed, ip = policy.resolve(url)
        location = _fetch_once(client, url, parsed, ip, max_bytes)
        if isinstance(location, bytes):
            return location
        url = urljoin(url, location)
    raise BadRequest(f"fetching {url} failed: more than {MAX_REDIRECTS} redirects")


def _fetch_once(client: httpx.Client, url: str, parsed: httpx.URL, ip: str, max_bytes: int) -> bytes | str:
    """The body, or the Location of a redirect; connects to the already checked `ip`."""
    headers = {"Host": parsed.netloc.decode("ascii")}
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    try:
        with client.stream("GET", parsed.copy_with(host=ip), headers=headers, extensions=extensions) as resp:
            if resp.is_redirect and resp.headers.get("location"):
                return resp.headers["location"]
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
