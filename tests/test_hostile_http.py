"""Hostile input through a real server: each a clear 4xx or per-record error, nothing stored.

Decompression bombs, images over the server's configured pixel limit (`--max-pixels`),
huge dimensions, truncated and corrupt files, non-images with image extensions, deeply
nested or huge JSON, wrong vector sizes, NaN/Inf in vectors. Uploaded as `_base64`
records, NDJSON lines, `/search` base64 queries and `/search/image` multipart uploads.
After everything the server is still up, never answered 500, and only the good records
that rode along are stored.
"""
from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from pathlib import Path

import httpx
import pytest
from PIL import Image

from lookalike.errors import BadRequest
from lookalike.sample import COLORS, draw_item
from lookalike.server.run import _max_pixels
from test_server_process import ServerProcess

ADMIN = "hostile-admin-key"
LIMIT = 2 * 1024 * 1024
MAX_PIXELS = 1_000_000


# -- hostile files ------------------------------------------------------------------------
def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming huge dimensions, with a tiny (short) data stream."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def saved(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def good_jpeg(seed: int = 0) -> bytes:
    return saved(draw_item("stripes", COLORS["red"], seed=seed, size=128), "JPEG", quality=90)


def corrupt_png() -> bytes:
    data = bytearray(saved(draw_item("dots", COLORS["blue"], size=128), "PNG"))
    data[80:400] = bytes(320)  # zero the compressed pixels, keep the header
    return bytes(data)


HOSTILE = {  # name -> (bytes, HTTP status of a query with it, words its error names)
    "bomb": (saved(Image.new("1", (20000, 20000)), "PNG", optimize=True), 413, "bomb"),
    "over_limit": (saved(Image.new("L", (1250, 1000), 128), "PNG"), 413, f"limit of {MAX_PIXELS} pixels"),
    "huge_dims": (png_claiming(100_000, 100_000), 413, "pixels"),
    "tall_thin": (png_claiming(1, 2**31 - 1), 413, "pixels"),
    "truncated_jpeg": (good_jpeg()[:600], 415, "truncated"),
    "corrupt_png": (corrupt_png(), 415, "corrupt"),
    "text_as_jpg": (b"I am a text file with a .jpg name\n" * 20, 415, "not an image"),
    "html_as_png": (b"<!doctype html><html><body><img src=x onerror=alert(1)></body></html>", 415, "not an image"),
    "empty": (b"", 415, "empty"),
}


# -- the server ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("hostile") / "data"
    with ServerProcess(data, "--admin-key", ADMIN, "--max-body-bytes", str(LIMIT),
                       "--max-pixels", str(MAX_PIXELS)) as proc:
        yield proc
        assert proc.proc.poll() is None, "the server died"
        log = proc.output()
        assert "Traceback" not in log and "internal error" not in log, log[-3000:]


@pytest.fixture(scope="module")
def admin(server):
    with httpx.Client(base_url=server.url + "/v1", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120) as c:
        assert c.put("/collections/img", json={"thumbnails": False}).status_code == 201
        assert c.put("/collections/vec", json={"model": "none", "dim": 4}).status_code == 201
        yield c


def count(admin: httpx.Client, name: str) -> int:
    return admin.get(f"/collections/{name}").json()["count"]


def error_of(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    return body["error"]["message"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# -- images -------------------------------------------------------------------------------
def test_hostile_files_are_what_they_claim() -> None:
    """The fixtures really are hostile: the bomb is tiny on the wire, the header claims are huge."""
    assert len(HOSTILE["bomb"][0]) < 100_000
    assert struct.unpack(">II", HOSTILE["huge_dims"][0][16:24]) == (100_000, 100_000)  # the IHDR claims
    with Image.open(io.BytesIO(HOSTILE["over_limit"][0])) as im:
        assert im.size[0] * im.size[1] > MAX_PIXELS
    assert len(HOSTILE["over_limit"][0]) < LIMIT


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_image_record_fails_alone_and_stores_nothing(admin, name) -> None:
    data, _, words = HOSTILE[name]
    before = count(admin, "img")
    records = [{"_id": f"bad-{name}", "_base64": b64(data), "kind": name},
               {"_id": f"good-{name}", "_base64": b64(good_jpeg(len(name))), "kind": "good"}]
    if name == "empty":  # an empty base64 string is refused before decoding
        words = "non-empty"
    r = admin.post("/collections/img/records", json={"records": records})
    assert r.status_code == 200, r.text
    bad, good = r.json()["results"]
    assert bad["status"] == "error" and words in bad["error"], bad
    assert good == {"_id": f"good-{name}", "status": "inserted"}
    assert count(admin, "img") == before + 1
    error_of(admin.get(f"/collections/img/records/bad-{name}"), 404)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_image_queries_are_4xx(admin, name) -> None:
    data, status, words = HOSTILE[name]
    before = count(admin, "img")
    upload = admin.post("/collections/img/search/image", files={"image": (f"{name}.jpg", data, "image/jpeg")},
                        data={"params": json.dumps({"k": 3})})
    assert words in error_of(upload, status)
    if data:
        query = admin.post("/collections/img/search", json={"query": {"base64": b64(data)}})
        assert words in error_of(query, status)
    assert count(admin, "img") == before


def test_bomb_in_an_ndjson_stream_fails_its_line_only(admin) -> None:
    before = count(admin, "img")
    lines = [{"_id": "nd-bomb", "_base64": b64(HOSTILE["bomb"][0])},
             {"_id": "nd-good", "_base64": b64(good_jpeg(3))},
             {"_id": "nd-trunc", "_base64": b64(HOSTILE["truncated_jpeg"][0])}]
    body = "".join(json.dumps(x) + "\n" for x in lines).encode()
    r = admin.post("/collections/img/records", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert [x["status"] for x in r.json()["results"]] == ["error", "inserted", "error"]
    assert count(admin, "img") == before + 1


def test_pixel_limit_setting(monkeypatch) -> None:
    monkeypatch.delenv("LOOKALIKE_MAX_PIXELS", raising=False)
    assert _max_pixels(5000, 64) == 5000
    assert _max_pixels(None, 64) == 64
    for bad in (0, -1, "many"):
        with pytest.raises(BadRequest, match="max-pixels"):
            _max_pixels(bad, 64)


def test_pixel_limit_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("LOOKALIKE_MAX_PIXELS", "1234")
    assert _max_pixels(None, 64) == 1234
    assert _max_pixels(99, 64) == 99  # the flag wins


# -- JSON ---------------------------------------------------------------------------------
def post_raw(admin: httpx.Client, path: str, body: bytes, ctype: str = "application/json") -> httpx.Response:
    return admin.post(path, content=body, headers={"Content-Type": ctype})


DEEP_ARRAY = b"[" * 10_000 + b"]" * 10_000
DEEP_OBJECT = b'{"a":' * 10_000 + b"1" + b"}" * 10_000


@pytest.mark.parametrize("body", [
    b'{"records": ' + DEEP_ARRAY + b"}",
    b'{"records": [{"_id": "deep", "_vector": [1, 2, 3, 4], "m": ' + DEEP_OBJECT + b"}]}",
    DEEP_ARRAY,
], ids=["deep-records", "deep-metadata", "deep-top"])
def test_deeply_nested_json_records_is_400(admin, body) -> None:
    before = count(admin, "vec")
    assert "nested too deeply" in error_of(post_raw(admin, "/collections/vec/records", body), 400)
    assert count(admin, "vec") == before


@pytest.mark.parametrize("route", ["search", "recommend", "rerank", "records/delete"])
def test_deeply_nested_json_on_other_routes_is_400(admin, route) -> None:
    for body in (b'{"query": ' + DEEP_OBJECT + b"}", DEEP_ARRAY):
        assert "nested too deeply" in error_of(post_raw(admin, f"/collections/vec/{route}", body), 400)


def test_deep_filters_and_metadata_that_do_parse_are_refused(admin) -> None:
    admin.post("/collections/vec/records", json={"records": [{"_id": "keep", "_vector": [1, 0, 0, 0]}]})
    for depth in (200, 500):  # 200 parses (the filter parser refuses it), 500 is too deep for JSON itself
        deep_filter = '{"$and": [' * depth + '{"x": 1}' + "]}" * depth
        r = post_raw(admin, "/collections/vec/search", ('{"query": {"id": "keep"}, "filter": ' + deep_filter + "}").encode())
        assert "nested too deeply" in error_of(r, 400)
        r = post_raw(admin, "/collections/vec/records/delete", ('{"filter": ' + deep_filter + "}").encode())
        error_of(r, 400)
    nested: object = 1
    for _ in range(40):
        nested = {"k": nested}
    r = admin.post("/collections/vec/records", json={"records": [{"_id": "deepmeta", "_vector": [1, 1, 0, 0],
                                                                  "m": nested}]})
    assert r.json()["results"][0]["status"] == "error" and "nested" in r.json()["results"][0]["error"]
    error_of(admin.get("/collections/vec/records/deepmeta"), 404)
    assert admin.get("/collections/vec/records/keep").status_code == 200


def test_deep_json_in_multipart_params_is_400(admin) -> None:
    r = admin.post("/collections/img/search/image", files={"image": ("a.jpg", good_jpeg(), "image/jpeg")},
                   data={"params": DEEP_ARRAY.decode()})
    assert "nested too deeply" in error_of(r, 400)


def test_deep_json_in_an_ndjson_line_fails_that_line(admin) -> None:
    before = count(admin, "vec")
    body = b'{"_id": "nd1", "_vector": [1, 2, 3, 4]}\n' + DEEP_ARRAY + b'\n{"_id": "nd2", "_vector": [4, 3, 2, 1]}\n'
    r = post_raw(admin, "/collections/vec/records", body, "application/x-ndjson")
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["inserted", "error", "inserted"]
    assert "line 2" in results[1]["error"] and "nested too deeply" in results[1]["error"]
    assert count(admin, "vec") == before + 2


def test_huge_bodies_are_413_and_store_nothing(admin) -> None:
    before = count(admin, "vec")
    huge = {"records": [{"_id": f"h{i}", "_vector": [1, 2, 3, 4], "pad": "x" * 10_000} for i in range(300)]}
    assert "limit" in error_of(admin.post("/collections/vec/records", json=huge), 413)
    image = ("big.jpg", b"\xff\xd8" + b"\0" * (LIMIT + 10), "image/jpeg")
    error_of(admin.post("/collections/img/search/image", files={"image": image}), 413)
    error_of(admin.post("/collections/vec/search", json={"query": {"vector": [1.0] * 600_000}}), 413)
    line = json.dumps({"_id": "long", "_vector": [1, 2, 3, 4], "pad": "x" * (LIMIT + 1)}).encode()
    r = post_raw(admin, "/collections/vec/records", line + b'\n{"_id": "short", "_vector": [1, 0, 1, 0]}\n',
                 "application/x-ndjson")
    assert [x["status"] for x in r.json()["results"]] == ["error", "inserted"]
    assert count(admin, "vec") == before + 1
    error_of(admin.get("/collections/vec/records/long"), 404)


# -- vectors ------------------------------------------------------------------------------
BAD_VECTORS = {
    "too_short": ([1, 2], "2 dimensions"),
    "too_long": ([1.0] * 5, "5 dimensions"),
    "huge": ([0.5] * 100_000, "100000 dimensions"),
    "empty": ([], "non-empty"),
    "strings": (["1", "2", "3", "4"], "only numbers"),
    "booleans": ([True, False, True, False], "only numbers"),
    "nested": ([[1, 2], [3, 4]], "only numbers"),
    "not_a_list": ("1,2,3,4", "list"),
    "zeros": ([0, 0, 0, 0], "zeros"),
    "inf": ([1, 2, 3, 1e999], "NaN or infinite"),
    "minus_inf": ([-1e999, 2, 3, 4], "NaN or infinite"),
}


@pytest.mark.parametrize("name", sorted(BAD_VECTORS))
def test_bad_vectors_fail_per_record_and_store_nothing(admin, name) -> None:
    vector, words = BAD_VECTORS[name]
    before = count(admin, "vec")
    records = [{"_id": f"bad-{name}", "_vector": vector}, {"_id": f"ok-{name}", "_vector": [1, 2, 3, 4]}]
    body = json.dumps({"records": records}).replace("Infinity", "1e999").encode()
    r = post_raw(admin, "/collections/vec/records", body)
    assert r.status_code == 200, r.text
    bad, good = r.json()["results"]
    assert bad["status"] == "error" and words in bad["error"], bad
    assert good["status"] in ("inserted", "unchanged")
    assert count(admin, "vec") == before + (good["status"] == "inserted")
    error_of(admin.get(f"/collections/vec/records/bad-{name}"), 404)
    query = json.dumps({"query": {"vector": vector}}).replace("Infinity", "1e999").encode()
    assert post_raw(admin, "/collections/vec/search", query).status_code in (400, 413, 422)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_literals_are_refused(admin, literal) -> None:
    before = count(admin, "vec")
    body = f'{{"records": [{{"_id": "lit", "_vector": [1, 2, 3, {literal}]}}, {{"_id": "fine", "_vector": [1, 2, 2, 1]}}]}}'
    assert "not valid JSON" in error_of(post_raw(admin, "/collections/vec/records", body.encode()), 400)
    nd = f'{{"_id": "lit", "_vector": [1, 2, 3, {literal}]}}\n{{"_id": "fine2", "_vector": [2, 2, 2, 1]}}\n'
    results = post_raw(admin, "/collections/vec/records", nd.encode(), "application/x-ndjson").json()["results"]
    assert results[0]["status"] == "error" and "not valid JSON" in results[0]["error"]
    assert results[1]["status"] in ("inserted", "unchanged")
    metadata = f'{{"records": [{{"_id": "m", "_vector": [1, 2, 3, 4], "price": {literal}}}]}}'
    error_of(post_raw(admin, "/collections/vec/records", metadata.encode()), 400)
    error_of(post_raw(admin, "/collections/vec/search", f'{{"query": {{"vector": [1, 2, 3, {literal}]}}}}'.encode()), 400)
    error_of(admin.get("/collections/vec/records/lit"), 404)
    assert count(admin, "vec") == before + (results[1]["status"] == "inserted")


def test_infinite_metadata_is_refused_per_record(admin) -> None:
    body = b'{"records": [{"_id": "infmeta", "_vector": [1, 2, 3, 4], "price": 1e999}]}'
    result = post_raw(admin, "/collections/vec/records", body).json()["results"][0]
    assert result["status"] == "error" and "NaN or infinite" in result["error"]
    error_of(admin.get("/collections/vec/records/infmeta"), 404)


def test_connect_passes_the_pixel_limit_to_every_collection(tmp_path: Path) -> None:
    import lookalike
    with lookalike.connect(tmp_path / "d", max_pixels=4321) as db:
        assert db.collection("made", create=True, model="none", dim=2).max_pixels == 4321
    with lookalike.connect(tmp_path / "d", max_pixels=99) as db:
        assert db.collection("made").max_pixels == 99
        assert db.ensure_collection("other", model="none", dim=2)[0].max_pixels == 99
