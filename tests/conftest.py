"""Shared fixtures: a fresh data folder, a database, and images the tests draw themselves."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

import lookalike
from lookalike.sample import COLORS, draw_item


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def db(data_dir: Path):
    database = lookalike.connect(data_dir)
    yield database
    database.close()


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture(scope="session")
def pattern_catalog(tmp_path_factory) -> Path:
    """Two visually distinct classes (striped, dotted), several colours, shapes and sizes.

    Returns the path of a catalog.jsonl whose `_file`s are relative to it; metadata has
    `pattern`, `color`, `shape`, `price`, `product_id`, `tags`.
    """
    folder = tmp_path_factory.mktemp("patterns")
    (folder / "img").mkdir()
    lines = []
    seed = 100
    for pattern in ("stripes", "dots"):
        for i, color in enumerate(["red", "blue", "green", "orange", "purple", "black"]):
            for shape, size in (("square", 224), ("circle", 320)):
                seed += 1
                rid = f"{pattern}-{color}-{shape}"
                draw_item(pattern, COLORS[color], seed=seed, size=size, shape=shape).save(folder / "img" / f"{rid}.jpg",
                                                                                          quality=90)
                lines.append({"_id": rid, "_file": f"img/{rid}.jpg", "pattern": pattern, "color": color,
                              "shape": shape, "price": 10 + i * 5 + (0 if shape == "square" else 1),
                              "product_id": f"{pattern}-{shape}", "tags": [pattern, color]})
    catalog = folder / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return catalog


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def pattern_db_dir(tmp_path_factory, pattern_catalog: Path) -> Path:
    """A data folder with the pattern catalogue ingested into collection 'patterns' (read-only use)."""
    folder = tmp_path_factory.mktemp("pattern-db")
    with lookalike.connect(folder) as database:
        col = database.collection("patterns", create=True)
        results = col.upsert(read_jsonl(pattern_catalog), base_dir=pattern_catalog.parent)
        assert all(r["status"] == "inserted" for r in results), results
    return folder


@pytest.fixture(autouse=True)
def _allow_loopback_urls(monkeypatch, request):
    """Tests serve images from loopback; production refuses it (see test_url_safety.py)."""
    if "no_url_allow" not in request.keywords:
        monkeypatch.setenv("LOOKALIKE_URL_ALLOW", "127.0.0.0/8,::1")


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """One Milvus standalone server for the session (package `milvus`; lookalike/testing/milvus_server.py).

    Skips when the package is missing, unless LOOKALIKE_REQUIRE_MILVUS_SERVER is set (CI).
    """
    import os
    if os.environ.get("LOOKALIKE_REQUIRE_MILVUS_SERVER"):
        import milvus  # noqa: F401  (fails, not skips, in CI)
    else:
        pytest.importorskip("milvus")
    from lookalike.testing.milvus_server import MilvusProcess
    server = MilvusProcess(tmp_path_factory.mktemp("milvus-server"))
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["lite", "server"])
def milvus_backend(request):
    """Which Milvus the module's tests run on: Milvus Lite files, or the session's Milvus server."""
    return request.getfixturevalue("milvus_server") if request.param == "server" else None


@pytest.fixture
def milvus_at(milvus_backend, tmp_path):
    """`milvus_at(name)`: the location of a fresh Milvus store for this test (the same name gives
    the same store again): a Milvus Lite file, or a database of its own on the session's server."""
    from lookalike.testing.milvus_server import Locations
    locations = Locations(milvus_backend, tmp_path)
    yield locations
    locations.drop()
