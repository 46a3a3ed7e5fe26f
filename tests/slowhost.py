"""A real local HTTP host that drips its answer one byte at a time (for fetch deadline tests)."""
from __future__ import annotations

import socket
import threading

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n" + b"\xff" * 64


class DrippingHost:
    """Listens on 127.0.0.1 (a free port); each connection gets one byte every `interval` s.

    Bounded: a connection is closed after `max_bytes` bytes, and everything stops on `close()`.
    """

    def __init__(self, interval: float = 1.0, max_bytes: int = 60) -> None:
        self.interval = interval
        self.max_bytes = max_bytes
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/slow.jpg"
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            for i in range(min(self.max_bytes, len(ANSWER))):
                if self._stop.wait(self.interval):
                    return
                try:
                    conn.sendall(ANSWER[i:i + 1])
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self) -> "DrippingHost":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
