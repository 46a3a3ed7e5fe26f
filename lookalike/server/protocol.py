"""uvicorn's HTTP/1.1 protocols with the bounds `lookalike serve` adds: request headers must
arrive within `header_timeout` seconds, and (httptools) within MAX_HEADER_BYTES.

uvicorn has no header timeout: a client dripping headers held a connection forever. The
httptools protocol (a C parser, ~0.1 ms less server time per request than h11's pure-Python
one) is used when httptools is installed; h11 caps pending headers at 16 KiB itself, and
httptools has no cap, so the same bound is kept here.
"""
from __future__ import annotations

import asyncio

from uvicorn.protocols.http.h11_impl import H11Protocol

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11 only
    HttpToolsProtocol = None  # type: ignore[assignment, misc]

DEFAULT_HEADER_TIMEOUT_S = 10.0
#: Largest request line plus headers (h11's own limit on an incomplete event).
MAX_HEADER_BYTES = 16 * 1024


class HeaderTimeout:
    """Closes connections whose request headers arrive too slowly (a mixin for uvicorn's protocols).

    The clock starts when the connection opens or a response completes (waiting for the next
    request) and stops once a request's headers are complete; `header_timeout` is set on the
    class by `protocol_with_header_timeout`.
    """

    header_timeout: float = DEFAULT_HEADER_TIMEOUT_S
    _header_timer: asyncio.TimerHandle | None = None
    _header_bytes: int = 0
    # provided by the uvicorn protocol this is mixed into
    cycle: object
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and self._waiting_for_headers():
            self._start_header_timer()  # the next request on a kept-alive connection
        super().data_received(data)  # type: ignore[misc]
        if self._header_timer is not None and not self._waiting_for_headers():
            self._header_timer.cancel()
            self._header_timer = None
        self._count_header_bytes(len(data))

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)  # type: ignore[misc]

    def _count_header_bytes(self, size: int) -> None:
        """Bound the bytes of headers not yet complete (h11 does this itself)."""

    def _waiting_for_headers(self) -> bool:
        cycle = self.cycle
        return cycle is None or cycle.response_complete  # type: ignore[attr-defined]

    def _start_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_timed_out)

    def _header_timed_out(self) -> None:
        self._header_timer = None
        if self._waiting_for_headers() and not self.transport.is_closing():
            self.transport.close()


class HeaderTimeoutH11Protocol(HeaderTimeout, H11Protocol):
    """uvicorn's h11 protocol with the header timeout."""


if HttpToolsProtocol is not None:
    class HeaderTimeoutHttpToolsProtocol(HeaderTimeout, HttpToolsProtocol):
        """uvicorn's httptools protocol with the header timeout and h11's header size bound
        (the parser marks where a request's headers begin and end)."""

        _in_headers = False

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._in_headers = True
            self._header_bytes = 0

        def on_headers_complete(self) -> None:
            self._in_headers = False
            super().on_headers_complete()

        def _count_header_bytes(self, size: int) -> None:
            if not self._in_headers or self.transport.is_closing():
                return
            self._header_bytes += size
            if self._header_bytes > MAX_HEADER_BYTES:
                self.send_400_response(f"Request line and headers are larger than {MAX_HEADER_BYTES} bytes.")


def protocol_with_header_timeout(seconds: float, http: str = "auto") -> type[HeaderTimeout]:
    """The protocol class for uvicorn's `http` option: httptools when installed (or asked
    for), h11 when asked for or without httptools, each with a `seconds` header timeout."""
    if http not in ("auto", "h11", "httptools"):
        raise ValueError(f"http must be auto, h11 or httptools, got {http!r}")
    if http == "httptools" and HttpToolsProtocol is None:
        raise ValueError("http 'httptools' needs the httptools package")
    base = HeaderTimeoutH11Protocol if http == "h11" or HttpToolsProtocol is None else HeaderTimeoutHttpToolsProtocol
    return type(base.__name__, (base,), {"header_timeout": float(seconds)})
