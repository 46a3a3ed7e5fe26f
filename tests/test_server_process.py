"""`lookalike serve` as a process: start-up rules for keys and bind addresses, plus the
helper (`ServerProcess`) the other server tests use to run a real server on a loopback port.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from lookalike.errors import BadRequest
from lookalike.records import InvalidRecord
from lookalike.server.guard import Guard, Keys, required_role, role_of
from lookalike.server.ndjson import iter_records
from lookalike.server.run import check_keys, is_loopback
from lookalike.testing.servers import free_port



class ServerProcess:
    """`python -m lookalike.cli serve` in a subprocess on 127.0.0.1 and a free port."""

    def __init__(self, data: Path, *args: str, env: dict[str, str] | None = None, host: str = "127.0.0.1") -> None:
        self.data, self.args, self.host = data, list(args), host
        self.env = {**os.environ, **(env or {})}
        for name in ("LOOKALIKE_ADMIN_KEY", "LOOKALIKE_SEARCH_KEY"):
            if name not in (env or {}):
                self.env.pop(name, None)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = Path(str(data).rstrip("/") + f"-server-{self.port}.log")
        self.proc: subprocess.Popen | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "lookalike.cli", "serve", "--data", str(self.data), "--host", self.host,
                "--port", str(self.port), "--no-access-log", "--log-level", "warning", *self.args]

    def start(self, timeout: float = 90.0) -> "ServerProcess":
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not answer /v1/health within {timeout}s:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run `lookalike serve` expecting it to refuse to start (returns at once)."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("LOOKALIKE_ADMIN_KEY", "LOOKALIKE_SEARCH_KEY")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "lookalike.cli", "serve", "--data", str(tmp_path / "d"),
                           "--port", str(free_port()), *args], capture_output=True, text=True, timeout=60, env=full_env)


# -- start-up rules -----------------------------------------------------------------------
def test_non_loopback_without_admin_key_refuses_to_start(tmp_path: Path) -> None:
    done = run_serve(tmp_path, "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "refusing to serve on 0.0.0.0 without an admin key" in done.stderr
    assert not (tmp_path / "d").exists(), "nothing may be created when the server refuses to start"


def test_non_loopback_with_only_a_search_key_refuses_to_start(tmp_path: Path) -> None:
    done = run_serve(tmp_path, "--host", "0.0.0.0", env={"LOOKALIKE_SEARCH_KEY": "s"})
    assert done.returncode == 2
    assert "search key needs an admin key" in done.stderr


def test_loopback_without_keys_warns_and_allows_everything(tmp_path: Path) -> None:
    with ServerProcess(tmp_path / "d") as server:
        assert "no API keys: development mode" in server.output()
        r = httpx.put(server.url + "/v1/collections/c", json={"model": "none", "dim": 2})
        assert r.status_code == 201
        r = httpx.post(server.url + "/v1/collections/c/records", json={"records": [{"_id": "a", "_vector": [1, 2]}]})
        assert r.json() == {"results": [{"_id": "a", "status": "inserted"}]}
        assert httpx.get(server.url + "/v1/collections/c").json()["count"] == 1


def test_keys_from_environment(tmp_path: Path) -> None:
    env = {"LOOKALIKE_ADMIN_KEY": "env-admin", "LOOKALIKE_SEARCH_KEY": "env-search"}
    with ServerProcess(tmp_path / "d", env=env) as server:
        assert "development mode" not in server.output()
        assert httpx.get(server.url + "/v1/collections").status_code == 401
        ok = httpx.get(server.url + "/v1/collections", headers={"Authorization": "Bearer env-search"})
        assert ok.status_code == 200
        put = httpx.put(server.url + "/v1/collections/c", json={"model": "none", "dim": 2},
                        headers={"Authorization": "Bearer env-search"})
        assert put.status_code == 403
        put = httpx.put(server.url + "/v1/collections/c", json={"model": "none", "dim": 2},
                        headers={"Authorization": "Bearer env-admin"})
        assert put.status_code == 201


def test_admin_key_allows_a_non_loopback_bind(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "d", "--admin-key", "adm", host="0.0.0.0")
    with server:  # answers on loopback too, and needs the key
        assert httpx.get(server.url + "/v1/collections").status_code == 401
        assert httpx.get(server.url + "/v1/collections", headers={"Authorization": "Bearer adm"}).status_code == 200


# -- the pieces, in-process ---------------------------------------------------------------
def test_check_keys_rules() -> None:
    assert "development mode" in check_keys("127.0.0.1", None, None)
    assert "development mode" in check_keys("localhost", None, None)
    assert check_keys("0.0.0.0", "a", "s") is None
    for host in ("0.0.0.0", "::", "192.168.1.4", "example.com"):
        with pytest.raises(BadRequest, match="without an admin key"):
            check_keys(host, None, None)
    with pytest.raises(BadRequest, match="must differ"):
        check_keys("127.0.0.1", "same", "same")


def test_is_loopback() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.1", "myhost", ""))


def test_required_role_follows_the_contract() -> None:
    assert required_role("GET", "/v1/health") is None
    assert required_role("GET", "/docs") is None
    assert required_role("GET", "/openapi.json") is None
    for path in ("/v1/collections", "/v1/collections/c", "/v1/collections/c/records/x"):
        assert required_role("GET", path) == "search"
    for route in ("search", "search/image", "recommend", "rerank", "match", "duplicates"):
        assert required_role("POST", f"/v1/collections/c/{route}") == "search"
    for method, path in (("PUT", "/v1/collections/c"), ("DELETE", "/v1/collections/c"),
                         ("POST", "/v1/collections/c/records"), ("POST", "/v1/collections/c/records/delete"),
                         ("DELETE", "/v1/collections/c/records/x"), ("POST", "/v1/collections/c/x/duplicates"),
                         ("POST", "/v1/collections/c/records/x/search"), ("PATCH", "/v1/collections/c")):
        assert required_role(method, path) == "admin", (method, path)


def test_role_of_token() -> None:
    keys = Keys("admin-k", "search-k")
    assert role_of("admin-k", keys) == "admin"
    assert role_of("search-k", keys) == "search"
    assert role_of("admin-", keys) is None
    assert role_of("", keys) is None
    assert role_of(None, keys) is None
    assert role_of("", Keys("admin-k", None)) is None


def test_ndjson_lines_split_anywhere() -> None:
    data = b'{"_id": "a"}\r\n\n{bad\n{"_id": "' + b"x" * 60 + b'"}\n{"_id": "b"}'
    for size in (1, 2, 5, 13, len(data)):
        chunks = [data[i:i + size] for i in range(0, len(data), size)]
        out = list(iter_records(chunks, 40))
        assert out[0] == {"_id": "a"} and out[3] == {"_id": "b"} and len(out) == 4
        assert isinstance(out[1], InvalidRecord) and out[1].reason.startswith("line 3 is not valid JSON")
        assert isinstance(out[2], InvalidRecord) and "line 4 is longer than" in out[2].reason


def test_ndjson_refuses_nan() -> None:
    out = list(iter_records([b'{"_id": "a", "x": NaN}\n'], 100))
    assert isinstance(out[0], InvalidRecord) and "NaN" in out[0].reason


def test_serve_passes_its_options_on(tmp_path: Path, monkeypatch) -> None:
    """serve() opens the data without `_file` access and hands the options to the app and uvicorn."""
    import uvicorn

    from lookalike.server import serve
    seen: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    monkeypatch.delenv("LOOKALIKE_ADMIN_KEY", raising=False)
    monkeypatch.setenv("LOOKALIKE_SEARCH_KEY", "from-env")
    serve(str(tmp_path / "d"), "127.0.0.1", 9, "adm", None, cors_origins=["https://a.example"],
          max_body_bytes=4096, max_pixels=1234, log_level="warning", access_log=False)
    app = seen["app"]
    assert seen["host"] == "127.0.0.1" and seen["port"] == 9 and seen["log_level"] == "warning"
    assert seen["access_log"] is False
    assert app.state.max_body_bytes == 4096
    assert app.state.db.max_pixels == 1234 and app.state.db.allow_file is False
    guard = next(m for m in app.user_middleware if m.cls is Guard)
    assert guard.kwargs["keys"] == Keys("adm", "from-env")
    assert any(m.kwargs.get("allow_origins") == ["https://a.example"] for m in app.user_middleware)
    with pytest.raises(BadRequest, match="at least 1024"):
        serve(str(tmp_path / "d"), "127.0.0.1", 9, "adm", None, max_body_bytes=10)
