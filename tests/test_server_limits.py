"""Bounds on what one client can cost the server (issue 18, items 7 and 8): slow request headers,
filters with too many branches or values, and the pixels being decoded at once."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

import lookalike
from lookalike.server import create_app
from lookalike.server.run import protocol_with_header_timeout

from test_server_process import free_port


@pytest.fixture
def db(tmp_path):
    database = lookalike.connect(tmp_path / "data", allow_file=False)
    database.collection("c", create=True, model="none", dim=3).upsert(
        [{"_id": "a", "_vector": [1, 0, 0], "n": 1}, {"_id": "b", "_vector": [0, 1, 0], "n": 2}])
    yield database
    database.close()


def test_a_client_dripping_its_headers_is_disconnected(db):
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(db), host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, http=protocol_with_header_timeout(1.0)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
            started = time.monotonic()
            closed = False
            for byte in b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 40:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    closed = True
                    break
                slow.settimeout(0.3)
                try:
                    if slow.recv(1) == b"":
                        closed = True
                        break
                except TimeoutError:
                    pass
            took = time.monotonic() - started
        assert closed, "the server kept a connection whose headers never completed"
        assert took < 8
        # kept-alive connections that send their next request promptly are unaffected
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as c:
            for _ in range(3):
                assert c.get("/v1/health").status_code == 200
                time.sleep(0.4)
    finally:
        server.should_exit = True
        thread.join(15)
