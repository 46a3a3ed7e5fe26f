"""Search a region: a box on the query picture (image or stored id) and regions proposed from the
encoder's feature map, on real photos (scikit-image's): a composite of two photos side by side,
its left half finds the left photo and its right half the right one."""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

import lookalike
from lookalike.cli import main
from lookalike.errors import BadRequest, NotFound
from lookalike.query.regions import check_box, propose_boxes
from lookalike.server import create_app
from lookalike.testing.servers import serving, serving_files

skdata = pytest.importorskip("skimage.data")

LEFT, RIGHT = [0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]
PAIRS = [("chelsea", "coffee"), ("astronaut", "rocket"), ("motorcycle", "brick")]


def _photos() -> dict[str, Image.Image]:
    arrays = {"astronaut": skdata.astronaut(), "chelsea": skdata.chelsea(), "coffee": skdata.coffee(),
              "rocket": skdata.rocket(), "motorcycle": skdata.stereo_motorcycle()[0], "camera": skdata.camera(),
              "brick": skdata.brick(), "grass": skdata.grass(), "gravel": skdata.gravel()}
    return {name: Image.fromarray(a).convert("RGB") for name, a in arrays.items()}


def _bytes(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def composite(photos: dict, left: str, right: str) -> bytes:
    out = Image.new("RGB", (600, 300))
    out.paste(photos[left].resize((300, 300)), (0, 0))
    out.paste(photos[right].resize((300, 300)), (300, 0))
    return _bytes(out)


@pytest.fixture(scope="module")
def photos() -> dict[str, Image.Image]:
    return _photos()


@pytest.fixture(scope="module")
def data(tmp_path_factory, photos) -> Path:
    """Collection 'photos': each photo once (base64), plus 'pair' (the chelsea|coffee composite as a _file)."""
    folder = tmp_path_factory.mktemp("regions")
    pair = folder / "pair.png"
    pair.write_bytes(composite(photos, "chelsea", "coffee"))
    with lookalike.connect(folder / "data") as db:
        col = db.collection("photos", create=True)
        records = [{"_id": n, "_base64": base64.b64encode(_bytes(im, "JPEG")).decode()} for n, im in photos.items()]
        results = col.upsert(records + [{"_id": "pair", "_file": str(pair)}])
        assert {r["status"] for r in results} == {"inserted"}, results
    return folder / "data"


@pytest.fixture(scope="module")
def col(data):
    db = lookalike.connect(data, read_only=True)
    yield db.collection("photos")
    db.close()


def top(result: dict) -> str:
    return result["hits"][0]["_id"]


@pytest.mark.parametrize("left,right", PAIRS)
def test_each_half_of_a_composite_finds_its_own_photo(col, photos, left, right):
    query = composite(photos, left, right)
    assert top(col.search({"image": query, "box": LEFT}, k=3, filter={"_id": {"$ne": "pair"}})) == left
    assert top(col.search({"image": query, "box": RIGHT}, k=3, filter={"_id": {"$ne": "pair"}})) == right
    whole = [h["_id"] for h in col.search({"image": query}, k=3, filter={"_id": {"$ne": "pair"}})["hits"]]
    assert whole[:1] != [left] or whole[:1] != [right]  # the whole picture is not both


def test_a_stored_records_box_reads_its_file_and_leaves_it_out(col):
    left = col.search({"id": "pair", "box": LEFT}, k=3)["hits"]
    right = col.search({"id": "pair", "box": RIGHT}, k=3)["hits"]
    assert left[0]["_id"] == "chelsea" and right[0]["_id"] == "coffee"
    assert "pair" not in [h["_id"] for h in left + right]


def test_stored_pixels_fall_back_to_the_url_then_the_thumbnail(tmp_path, photos):
    pair = composite(photos, "astronaut", "rocket")
    with lookalike.connect(tmp_path / "d") as db, serving_files({"/pair.png": pair}, "image/png") as (url, _):
        col = db.collection("c", create=True)
        col.upsert([{"_id": n, "_base64": base64.b64encode(_bytes(photos[n], "JPEG")).decode()}
                    for n in ("astronaut", "rocket", "coffee", "chelsea")])
        col.upsert([{"_id": "by-url", "_url": url + "/pair.png"},
                    {"_id": "thumb", "_base64": base64.b64encode(pair).decode()},
                    {"_id": "vec", "_vector": [0.1] * col.settings.dim}])
        assert top(col.search({"id": "by-url", "box": RIGHT}, filter={"_id": {"$ne": "thumb"}})) == "rocket"
        assert top(col.search({"id": "thumb", "box": LEFT}, filter={"_id": {"$ne": "by-url"}})) == "astronaut"
        with pytest.raises(BadRequest, match="no picture to cut a box from.*no _file, _url or kept thumbnail"):
            col.search({"id": "vec", "box": LEFT})
        with pytest.raises(NotFound):
            col.search({"id": "nope", "box": LEFT})


BAD_BOXES = [([0, 0, 1], "4 numbers"), ("0,0,1,1", "4 numbers"), ([0, 0, "1", 1], "4 numbers"),
             ([0, 0, True, 1], "4 numbers"), ([-0.1, 0, 1, 1], "from 0 to 1"), ([0, 0, 1.5, 1], "from 0 to 1"),
             ([0, 0, float("nan"), 1], "from 0 to 1"), ([0.6, 0, 0.4, 1], "x0 < x1"), ([0, 1, 1, 0], "y0 < y1"),
             ([0, 0, 0.01, 1], "at least"), (None, "4 numbers")]


@pytest.mark.parametrize("box,message", BAD_BOXES)
def test_bad_boxes_are_refused_clearly(box, message):
    with pytest.raises(BadRequest, match=message):
        check_box(box)


def test_bad_region_requests_and_nothing_changes(col, photos):
    before = col.count()
    query = composite(photos, "chelsea", "coffee")
    for kwargs, message in (({"regions": 9}, "regions"), ({"regions": "yes"}, "regions"), ({"regions": -1}, "regions")):
        with pytest.raises(BadRequest, match=message):
            col.search({"image": query}, **kwargs)
    with pytest.raises(BadRequest, match="either a 'box' or 'regions'"):
        col.search({"image": query, "box": LEFT}, regions=2)
    with pytest.raises(BadRequest, match="image anchor"):
        col.search({"vector": [0.0] * col.settings.dim, "box": LEFT})
    with pytest.raises(BadRequest, match="image anchor"):
        col.search({"vector": [0.1] * col.settings.dim}, regions=True)
    with pytest.raises(BadRequest, match="box"):
        col.search({"box": LEFT})
    assert col.count() == before


def test_proposed_regions_cover_both_photos(col, photos):
    for left, right in PAIRS:
        result = col.search({"image": composite(photos, left, right)}, k=2, regions=4,
                            filter={"_id": {"$ne": "pair"}})
        regions = result["regions"]
        assert 1 < len(regions) <= 4 and result["hits"]
        for region in regions:
            x0, y0, x1, y1 = region["box"]
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        lefts = [r for r in regions if (r["box"][0] + r["box"][2]) / 2 < 0.5]
        rights = [r for r in regions if (r["box"][0] + r["box"][2]) / 2 > 0.5]
        assert any(r["hits"][0]["_id"] == left for r in lefts), (left, regions)
        assert any(r["hits"][0]["_id"] == right for r in rights), (right, regions)


def test_regions_and_a_box_work_with_explain_and_collapse(col, photos):
    """The web page asks every search for `explain` (which embeds an image query once, up front):
    proposals still cut the query's own picture, and each region's hits are those without explain."""
    left, right = PAIRS[0]
    query = {"image": composite(photos, left, right)}
    plain = col.search(query, k=3, regions=4, filter={"_id": {"$ne": "pair"}})
    explained = col.search(query, k=3, regions=4, filter={"_id": {"$ne": "pair"}}, explain=True,
                           collapse={"ids": True})
    assert [r["box"] for r in explained["regions"]] == [r["box"] for r in plain["regions"]]
    for a, b in zip(explained["regions"], plain["regions"]):
        assert [h["_id"] for h in a["hits"]] == [h["_id"] for h in b["hits"]]
        assert all("_explain" in h for h in a["hits"])
    boxed = col.search({**query, "box": [0.52, 0.0, 1.0, 1.0]}, k=1, explain=True)["hits"][0]
    assert boxed["_id"] == right and "_explain" in boxed


def test_proposals_of_a_feature_map_follow_its_clusters():
    import numpy as np
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=64), rng.normal(size=64)
    fmap = np.zeros((64, 6, 12))
    fmap[:, :, :4] = a[:, None, None] + rng.normal(scale=0.05, size=(64, 6, 4))
    fmap[:, :, 4:] = b[:, None, None] + rng.normal(scale=0.05, size=(64, 6, 8))
    boxes = propose_boxes(fmap, 2)
    assert sorted(boxes) == [(0.0, 0.0, 0.3333, 1.0), (0.3333, 0.0, 1.0, 1.0)]


def test_over_http_the_client_and_the_command_line(data, photos, tmp_path, capsys):
    query = composite(photos, "astronaut", "rocket")
    with lookalike.connect(data, read_only=True, allow_file=False) as db:
        http = TestClient(create_app(db))
        body = {"query": {"base64": base64.b64encode(query).decode(), "box": RIGHT}, "k": 2,
                "filter": {"_id": {"$ne": "pair"}}}
        answer = http.post("/v1/collections/photos/search", json=body)
        assert answer.status_code == 200 and answer.json()["hits"][0]["_id"] == "rocket"
        uploaded = http.post("/v1/collections/photos/search/image", files={"image": ("q.png", query)},
                             data={"params": json.dumps({"box": LEFT, "k": 2})})
        assert uploaded.status_code == 200 and uploaded.json()["hits"][0]["_id"] == "astronaut"
        regions = http.post("/v1/collections/photos/search", json={**body, "query": {"base64": body["query"]["base64"]},
                                                                    "regions": 3})
        assert regions.status_code == 200 and 1 < len(regions.json()["regions"]) <= 3
        assert http.post("/v1/collections/photos/search", json={"query": {"id": "pair", "box": [0, 0, 2, 1]}}
                         ).status_code == 400
        bad = http.post("/v1/collections/photos/search", json={"query": {"id": "pair", "box": "left"}})
        assert bad.status_code == 400 and "4 numbers" in bad.json()["error"]["message"]
        # the server reads no local file, a record's own neither: its kept thumbnail stands in
        assert http.post("/v1/collections/photos/search", json={"query": {"id": "pair", "box": RIGHT}, "k": 1}
                         ).json()["hits"][0]["_id"] == "coffee"
        with serving(create_app(db)) as url, lookalike.Client(url) as client:
            remote = client.collection("photos")
            (tmp_path / "q.png").write_bytes(query)
            assert top(remote.search({"file": str(tmp_path / "q.png"), "box": LEFT}, k=2,
                                     filter={"_id": {"$ne": "pair"}})) == "astronaut"
            assert len(remote.search({"image": query}, k=1, regions=2)["regions"]) == 2
            with pytest.raises(BadRequest, match="x0 < x1"):
                remote.search({"image": query, "box": [0.5, 0, 0.5, 1]})
    (tmp_path / "q.png").write_bytes(query)
    assert main(["search", "-c", "photos", "--data", str(data), "--image", str(tmp_path / "q.png"), "--box",
                 "0.5,0,1,1", "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["_id"] in ("rocket",)
    assert main(["search", "-c", "photos", "--data", str(data), "--image", str(tmp_path / "q.png"),
                 "--regions", "2", "-k", "1"]) == 0
    assert capsys.readouterr().out.count("region ") == 2
