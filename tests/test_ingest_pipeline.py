"""The ingest pipeline: concurrent URL fetching with retries, resumable file ingest, backends."""
from __future__ import annotations

import http.server
import threading
import time

import numpy as np
import pytest

import lookalike
import lookalike.ingest.pipeline as ingest_mod
from lookalike.ingest import triage
from lookalike.sample import COLORS, draw_item

from conftest import jpeg_bytes


class ImageServer:
    """A loopback HTTP server with scripted answers per path; counts concurrent requests."""

    def __init__(self) -> None:
        self.routes: dict[str, list] = {}
        self.active = 0
        self.peak = 0
        self.hits: dict[str, int] = {}
        lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep test output clean
                pass

            def do_GET(self):
                with lock:
                    outer.active += 1
                    outer.peak = max(outer.peak, outer.active)
                    outer.hits[self.path] = outer.hits.get(self.path, 0) + 1
                    script = outer.routes.get(self.path, [(404, "text/plain", b"no")])
                    status, ctype, body, *delay = script.pop(0) if len(script) > 1 else script[0]
                try:
                    if delay:
                        time.sleep(delay[0])
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                finally:
                    with lock:
                        outer.active -= 1

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()


@pytest.fixture
def server():
    s = ImageServer()
    yield s
    s.close()


def test_url_ingest_concurrent_retries_and_errors(db, server, monkeypatch):
    monkeypatch.setattr("lookalike.ingest.fetch.BACKOFF_S", 0.01)
    img = jpeg_bytes(draw_item("stripes", COLORS["red"], seed=3))
    for i in range(24):
        server.routes[f"/ok{i}.jpg"] = [(200, "image/jpeg", img, 0.15)]
    server.routes["/flaky.jpg"] = [(503, "text/plain", b"busy"), (200, "image/jpeg", img)]
    server.routes["/text.jpg"] = [(200, "text/html", b"<html>")]
    server.routes["/down.jpg"] = [(503, "text/plain", b"busy")]
    col = db.collection("urls", create=True)
    records = [{"_id": f"ok{i}", "_url": f"{server.url}/ok{i}.jpg"} for i in range(24)]
    records += [{"_id": "flaky", "_url": f"{server.url}/flaky.jpg"}, {"_id": "missing", "_url": f"{server.url}/nope.jpg"},
                {"_id": "text", "_url": f"{server.url}/text.jpg"}, {"_id": "down", "_url": f"{server.url}/down.jpg"}]
    res = {r["_id"]: r for r in col.upsert(records, batch_size=64)}
    assert all(res[f"ok{i}"]["status"] == "inserted" for i in range(24))
    assert res["flaky"]["status"] == "inserted" and server.hits["/flaky.jpg"] == 2  # retried once
    assert "HTTP 404" in res["missing"]["error"]
    assert "not an image (content-type text/html)" in res["text"]["error"]
    assert "failed after 4 tries" in res["down"]["error"]
    assert 4 < server.peak <= 16  # fetched concurrently, within the connection bound
    # re-ingest: the same URLs are unchanged without fetching again
    before = dict(server.hits)
    again = col.upsert(records[:24])
    assert {r["status"] for r in again} == {"unchanged"} and server.hits == before


def test_resumed_folder_ingest_skips_unchanged_files_without_reading(tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        draw_item("dots", COLORS["blue"], seed=i).save(folder / f"{i}.jpg")
    reads: list[str] = []
    real_read = ingest_mod.read_file
    counted = lambda p, *a, **k: reads.append(p.name) or real_read(p, *a, **k)  # noqa: E731
    monkeypatch.setattr(ingest_mod, "read_file", counted)
    monkeypatch.setattr(triage, "read_file", counted)  # files are first read to hash them
    records = lambda: [{"_id": str(i), "_file": str(folder / f"{i}.jpg")} for i in range(6)]  # noqa: E731
    with lookalike.connect(tmp_path / "data") as db:
        col = db.collection("files", create=True)
        # an "interrupted" first run: only half the folder got in
        assert [r["status"] for r in col.upsert(records()[:3])] == ["inserted"] * 3
    reads.clear()
    with lookalike.connect(tmp_path / "data") as db:
        col = db.collection("files")
        statuses = [r["status"] for r in col.upsert(records())]
        assert statuses == ["unchanged"] * 3 + ["inserted"] * 3
        assert sorted(reads) == ["3.jpg", "4.jpg", "5.jpg"]  # the done half was not even read
        reads.clear()
        draw_item("stripes", COLORS["green"], seed=9).save(folder / "1.jpg")  # one file changes
        statuses = [r["status"] for r in col.upsert(records())]
        assert statuses == ["unchanged", "updated", "unchanged", "unchanged", "unchanged", "unchanged"]
        assert reads == ["1.jpg"]  # read once: digest and decode share the bytes


def test_onnx_and_torch_backends_agree():
    from lookalike.models.efficientnet import EfficientNetLiteEncoder
    onnx = EfficientNetLiteEncoder(backend="onnx")
    torch_enc = EfficientNetLiteEncoder(backend="torch")
    assert onnx.backend == "onnxruntime" and torch_enc.backend == "torch"
    pixels = np.stack([np.asarray(draw_item(p, COLORS["red"], seed=1, size=224)) for p in ("dots", "rings")])
    a, b = onnx.embed(pixels), torch_enc.embed(pixels)
    np.testing.assert_allclose(a.vectors, b.vectors, atol=1e-4)
    assert [x[0]["label"] for x in a.labels] == [x[0]["label"] for x in b.labels]


def test_content_hash_follows_model_version_and_text_fields(tmp_path, monkeypatch):
    """A model computing other vectors (new version, new checkpoint) or new text_fields re-embed on re-ingest."""
    from lookalike.models import registry
    from lookalike.records import content_identity

    base = content_identity("efficientnet-lite0-style")
    assert base.startswith("efficientnet-lite0-style@")
    assert content_identity("efficientnet-lite0-style", ["title"]) != base
    assert content_identity("none") == "none"  # precomputed vectors: nothing but the vector decides
    monkeypatch.setitem(registry._VERSIONS, "efficientnet-lite0-style", "other")
    assert content_identity("efficientnet-lite0-style") != base
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"one")
    first = content_identity(f"torchscript:{weights}")
    weights.write_bytes(b"other checkpoint")
    assert content_identity(f"torchscript:{weights}") != first
