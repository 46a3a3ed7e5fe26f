"""Reading image bytes from a record's source: a local file or an http(s) URL.

URL fetches are bounded in size and time and retried with exponential backoff on
transient failures (connection errors, timeouts, 429 and 5xx answers); anything else fails
at once with the reason, for that record alone. Each fetch has one overall deadline, retries,
redirects and every socket read included (`URL_DEADLINE_S`, env `LOOKALIKE_URL_DEADLINE`): a
host that drips a byte every few seconds cannot hold a worker longer than that. At most
`max_fetches` fetches run at once in this process (env `LOOKALIKE_MAX_URL_FETCHES`); beyond
them a fetch waits briefly for a slot, then fails with `Busy` (HTTP 503 with Retry-After).

Server-side request forgery is refused: only http/https; the host is resolved first and
loopback, private, link-local (cloud metadata), multicast and reserved addresses are
refused unless allowed (`LOOKALIKE_URL_ALLOW`: comma-separated hosts or CIDRs, or `*`), as are
IPv6 forms that embed such an IPv4 address (mapped, compatible, 6to4, Teredo, NAT64); the
connection goes to the checked address (no DNS rebinding in between), and every redirect is
checked the same way. Every refusal reads the same and never names the resolved address.
"""
from __future__ import annotations

import ipaddress
import math
import os
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.parse import urljoin

import httpcore
import httpx

from ..errors import BadRequest, LookalikeError, NotAnImage, TooLarge

MAX_IMAGE_BYTES = 50 * 1024 * 1024
URL_TIMEOUT = httpx.Timeout(10.0, connect=5.0)
URL_CONNECTIONS = 16
RETRIES = 3
BACKOFF_S = 0.25
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}
MAX_REDIRECTS = 5
#: Overall time for one URL fetch, all tries, redirects and reads included.
URL_DEADLINE_S = 20.0
#: URL fetches running at once in this process (the ingest pipeline's fetch pool fits in it).
MAX_URL_FETCHES = URL_CONNECTIONS
#: How long a fetch waits for a free slot before failing with Busy.
SLOT_WAIT_S = 1.0
#: IPv6 prefixes that carry an IPv4 address in their last 32 bits (NAT64 well-known and IPv4-compatible).
_EMBEDS_V4_LOW = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("::/96"))
#: Local-use NAT64 (RFC 8215): the embedded address may sit anywhere; refused whole.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")


class Busy(LookalikeError):
    """Too many URL fetches at once: try again after `retry_after` seconds (HTTP 503)."""

    code, status = "unavailable", 503

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Transient(Exception):
    """A failure worth another try."""


def _positive(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {raw!r}") from None
    if not value > 0 or not math.isfinite(value):
        raise BadRequest(f"{name} must be a positive number, got {raw!r}")
    return value


@dataclass
class FetchLimits:
    """The process's URL fetch bounds: overall deadline per fetch and fetches at once."""

    deadline_s: float = URL_DEADLINE_S
    max_fetches: int = MAX_URL_FETCHES
    slot_wait_s: float = SLOT_WAIT_S

    def __post_init__(self) -> None:
        if not (self.deadline_s > 0 and math.isfinite(self.deadline_s)):
            raise BadRequest(f"the URL fetch deadline must be a positive number of seconds, got {self.deadline_s}")
        if self.max_fetches < 1:
            raise BadRequest(f"the number of URL fetches at once must be at least 1, got {self.max_fetches}")
        self._slots = threading.BoundedSemaphore(self.max_fetches)

    @classmethod
    def from_env(cls) -> "FetchLimits":
        return cls(deadline_s=_positive("LOOKALIKE_URL_DEADLINE", URL_DEADLINE_S),
                   max_fetches=int(_positive("LOOKALIKE_MAX_URL_FETCHES", MAX_URL_FETCHES)))

    @contextmanager
    def slot(self, url: str) -> Iterator[None]:
        """Hold one fetch slot; Busy when none frees within `slot_wait_s`."""
        if not self._slots.acquire(timeout=self.slot_wait_s):
            raise Busy(f"too many image URLs are being fetched at once ({self.max_fetches}); not fetching {url} "
                       "now, try again shortly", retry_after=max(1, math.ceil(min(self.deadline_s, 30))))
        try:
            yield
        finally:
            self._slots.release()


_limits: FetchLimits | None = None
_limits_lock = threading.Lock()


def limits() -> FetchLimits:
    """The process's fetch limits (from the environment, until `configure` sets others)."""
    global _limits
    with _limits_lock:
        if _limits is None:
            _limits = FetchLimits.from_env()
        return _limits


def configure(deadline_s: float | None = None, max_fetches: int | None = None,
              slot_wait_s: float | None = None) -> FetchLimits:
    """Set the process's fetch limits (the server does, from its options); None keeps the current value."""
    global _limits
    current = limits()
    new = FetchLimits(deadline_s=current.deadline_s if deadline_s is None else float(deadline_s),
                      max_fetches=current.max_fetches if max_fetches is None else int(max_fetches),
                      slot_wait_s=current.slot_wait_s if slot_wait_s is None else float(slot_wait_s))
    with _limits_lock:
        _limits = new
    return new


# -- the overall deadline, enforced at every socket operation -------------------------------
_deadline = threading.local()


def _remaining(timeout: float | None) -> float:
    """`timeout` shortened to what is left of this thread's fetch deadline (raise once it passed)."""
    end = getattr(_deadline, "end", None)
    if end is None:
        return timeout  # type: ignore[return-value]
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("the fetch's overall deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits no longer than the current fetch's deadline.

    The deadline is the calling thread's, so a kept-alive connection reused by another fetch
    obeys that fetch's deadline.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _remaining(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):  # type: ignore[no-untyped-def]
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _remaining(timeout)))

    def get_extra_info(self, info: str):  # type: ignore[no-untyped-def]
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.SyncBackend):
    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        return _DeadlineStream(super().connect_tcp(host, port, _remaining(timeout), local_address, socket_options))


class _DeadlineTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool whose sockets obey the fetch deadline."""

    def __init__(self, limits: httpx.Limits) -> None:  # no super().__init__(): its pool would be discarded
        self._pool = httpcore.ConnectionPool(  # the pool httpx builds by default, with our network backend
            ssl_context=httpx.create_ssl_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=_DeadlineBackend())


@contextmanager
def _until(seconds: float) -> Iterator[float]:
    """Set this thread's fetch deadline for the block; yields the monotonic end time."""
    previous = getattr(_deadline, "end", None)
    end = time.monotonic() + seconds
    _deadline.end = end if previous is None else min(previous, end)
    try:
        yield _deadline.end
    finally:
        _deadline.end = previous


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
    """A client sized for concurrent image fetches (bounded connections, timeouts and deadline)."""
    limits = httpx.Limits(max_connections=URL_CONNECTIONS, max_keepalive_connections=URL_CONNECTIONS)
    return httpx.Client(timeout=URL_TIMEOUT, follow_redirects=False, transport=_DeadlineTransport(limits),
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
                # One message for every refusal: which internal address a name resolves to stays unsaid.
                raise BadRequest(f"refusing to fetch {url}: its host resolves to a non-public address "
                                 "(allow such hosts with LOOKALIKE_URL_ALLOW)")
        return parsed, addresses[0]

    def allowed(self, host: str, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if self.allow_all or host.lower() in self.hosts or any(ip in net for net in self.networks):
            return True
        return is_public(ip)


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for a globally routable unicast address that embeds no non-public IPv4 address.

    `is_global` alone passes site-local IPv6 (fec0::/10) and 6to4 (2002::/16) whatever IPv4
    address the latter wraps; mapped, compatible, Teredo and NAT64 forms are unwrapped too.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)
    if ip.is_site_local or ip in _LOCAL_NAT64:
        return False
    embedded = [ip.ipv4_mapped, ip.sixtofour]
    if ip.teredo:
        embedded.extend(ip.teredo)  # (server, client): either may be aimed inside
    embedded.extend(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) for net in _EMBEDS_V4_LOW if ip in net)
    embedded_v4 = [v4 for v4 in embedded if v4 is not None]
    if embedded_v4:
        return all(is_public(v4) for v4 in embedded_v4)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local)


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
        return True
    except ValueError:
        return False


def fetch_url(url: str, client: httpx.Client | None = None, max_bytes: int = MAX_IMAGE_BYTES,
              retries: int = RETRIES, policy: UrlPolicy | None = None, deadline_s: float | None = None) -> bytes:
    """GET an image, retrying transient failures within one overall deadline.

    Errors name the URL and the reason; `deadline_s` defaults to the process's `limits()`.
    A fetch holds one of the process's fetch slots while it runs (Busy when none is free).
    """
    bounds = limits()
    deadline_s = bounds.deadline_s if deadline_s is None else deadline_s
    own = client is None
    policy = policy or UrlPolicy()
    with bounds.slot(url):
        client = client or http_client()
        try:
            with _until(deadline_s) as end:
                return _fetch_retrying(client, url, max_bytes, retries, policy, end, deadline_s)
        finally:
            if own:
                client.close()


def _fetch_retrying(client: httpx.Client, url: str, max_bytes: int, retries: int, policy: UrlPolicy,
                    end: float, deadline_s: float) -> bytes:
    late = BadRequest(f"fetching {url} took longer than the deadline of {deadline_s:g} s (retries included)")
    for attempt in range(retries + 1):
        try:
            return _fetch_following(client, url, max_bytes, policy)
        except _Transient as exc:
            left = end - time.monotonic()
            if left <= 0:
                raise late from None
            if attempt == retries:
                raise BadRequest(f"fetching {url} failed after {retries + 1} tries: {exc}") from None
            pause = BACKOFF_S * 2 ** attempt
            if pause >= left:
                raise BadRequest(f"fetching {url} failed ({exc}) and no retry fits in the deadline of "
                                 f"{deadline_s:g} s") from None
            time.sleep(pause)
    raise AssertionError("unreachable")


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
            end = getattr(_deadline, "end", None)
            for chunk in resp.iter_bytes():
                if end is not None and time.monotonic() > end:  # also for clients not from http_client()
                    raise _Transient("the fetch's overall deadline passed")
                total += len(chunk)
                if total > max_bytes:
                    raise TooLarge(f"{url} is larger than {max_bytes} bytes")
                chunks.append(chunk)
            return b"".join(chunks)
    except (httpx.TransportError, httpx.TimeoutException) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from None
    except httpx.HTTPError as exc:
        raise BadRequest(f"fetching {url} failed: {type(exc).__name__}: {exc}") from None
