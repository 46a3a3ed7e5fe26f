"""Search by colour: CIEDE2000 against each record's weighted dominant colours."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.testing.copies import encode
from lookalike.errors import BadRequest
from lookalike.query.colors import ciede2000, parse_color
from lookalike.sample import COLORS, draw_item

RED, BLUE = "#c82828", "#2846c8"  # the sample's red (200, 40, 40) and blue (40, 70, 200)


@pytest.fixture(scope="module")
def col(pattern_db_dir):
    db = lookalike.connect(pattern_db_dir, read_only=True)
    yield db.collection("patterns")
    db.close()


def test_ciede2000_matches_published_reference_pairs():
    # Sharma, Wu & Dalal (2005), test data pairs 1, 7 and 17
    pairs = [([50, 2.6772, -79.7751], [50, 0, -82.7485], 2.0425), ([50, 0, 0], [50, -1, 2], 2.3669),
             ([50, 2.5, 0], [73, 25, -18], 27.1492)]
    for a, b, want in pairs:
        assert ciede2000(np.array(a), np.array(b)) == pytest.approx(want, abs=1e-4)
        assert ciede2000(np.array(b), np.array(a)) == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("hex_colour,name", [(RED, "red"), (BLUE, "blue"), ("#1e963c", "green"), ("#eb8214", "orange")])
def test_colour_query_ranks_records_of_that_colour_first(col, hex_colour, name):
    hits = col.search({"color": hex_colour}, k=6)["hits"]
    assert [h["color"] for h in hits[:4]] == [name] * 4, [(h["_id"], h["_score"]) for h in hits]
    scores = [h["_score"] for h in hits]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1
    assert hits[4]["_score"] < hits[3]["_score"]


def test_colour_with_filter_paging_and_grouping(col):
    dots = col.search({"color": RED}, k=3, filter={"pattern": "dots"})["hits"]
    assert all(h["pattern"] == "dots" for h in dots) and [h["color"] for h in dots[:2]] == ["red", "red"]
    both = col.search({"color": RED}, k=6)["hits"]
    page = col.search({"color": RED}, k=3, offset=3)["hits"]
    assert [h["_id"] for h in page] == [h["_id"] for h in both[3:6]]
    grouped = col.search({"color": BLUE}, k=4, group_by="product_id")["hits"]
    assert len({h["_group"] for h in grouped}) == len(grouped) == 4
    assert grouped[0]["color"] == "blue"
    boosted = col.search({"color": RED}, k=1, boost=[{"filter": {"color": "black"}, "weight": 2.0}])["hits"]
    assert boosted[0]["color"] == "black"


def test_bad_colours_are_refused_by_name(col):
    for bad in ("#zzz", "red", "#12345", 42, ""):
        with pytest.raises(BadRequest, match="color") as err:
            col.search({"color": bad})
        assert repr(bad) in err.value.message
    with pytest.raises(BadRequest, match="negative"):
        col.search({"color": RED}, negative=[{"id": "dots-red-square"}])
    with pytest.raises(BadRequest, match="color"):
        col.rerank(["dots-red-square"], {"color": RED})
    assert parse_color("#C82828") == pytest.approx(parse_color("c82828"))


def test_colours_follow_upserts_and_deletes(tmp_path):
    with lookalike.connect(tmp_path) as db:
        c = db.collection("solid", create=True)
        teal = Image.new("RGB", (96, 96), (0, 128, 128))
        half = Image.new("RGB", (96, 96), (250, 250, 250))
        half.paste(Image.new("RGB", (96, 48), (0, 128, 128)), (0, 0))
        c.upsert([{"_id": "red", "_base64": base64.b64encode(encode(draw_item("dots", COLORS["red"], seed=1))).decode()},
                  {"_id": "half-teal", "_base64": base64.b64encode(encode(half, "PNG")).decode()},
                  {"_id": "vector-only", "_vector": [0.1] * c.settings.dim}])
        hits = c.search({"color": "#008080"}, k=5)["hits"]
        assert [h["_id"] for h in hits] == ["half-teal", "red"]  # no colours: never a colour hit
        assert hits[0]["_score"] == pytest.approx(0.5, abs=0.05)
        c.upsert([{"_id": "teal", "_base64": base64.b64encode(encode(teal, "PNG")).decode()}])
        hits = c.search({"color": "#008080"}, k=2)["hits"]
        assert hits[0]["_id"] == "teal" and hits[0]["_score"] == pytest.approx(1.0, abs=0.01)
        c.upsert([{"_id": "teal", "_base64": base64.b64encode(encode(Image.new("RGB", (96, 96), (255, 255, 0)), "PNG")).decode()}])
        c.delete(["half-teal"])
        assert [h["_id"] for h in c.search({"color": "#008080"}, k=3)["hits"]][:1] != ["teal"]
        assert c.search({"color": "#ffff00"}, k=1)["hits"][0]["_id"] == "teal"
        assert "half-teal" not in [h["_id"] for h in c.search({"color": "#008080"}, k=3)["hits"]]


def test_cli_color_option(pattern_db_dir):
    proc = subprocess.run([sys.executable, "-m", "lookalike.cli", "search", "-c", "patterns", "--color", BLUE,
                           "-k", "2", "--json", "--data", str(pattern_db_dir)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [h["color"] for h in json.loads(proc.stdout)["hits"]] == ["blue", "blue"]
    bad = subprocess.run([sys.executable, "-m", "lookalike.cli", "search", "-c", "patterns", "--color", "#nothex",
                          "--data", str(pattern_db_dir)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "#nothex" in bad.stderr


def test_colour_scores_stay_right_after_compaction(tmp_path):
    solid = {"teal": (0, 128, 128), "yellow": (255, 220, 0), "pink": (240, 120, 180)}
    with lookalike.connect(tmp_path) as db:
        c = db.collection("k", create=True)
        def put(name):
            c.upsert([{"_id": name, "_base64": base64.b64encode(encode(Image.new("RGB", (64, 64), solid[name]), "PNG")).decode()}])
        put("teal")
        put("yellow")
        assert c.search({"color": "#008080"}, k=1)["hits"][0]["_id"] == "teal"
        c.delete(["teal"])
        c._store.compact()  # the field index is rebuilt: distinct colours get new ids
        put("pink")
        put("teal")
        for name, hexa in (("teal", "#008080"), ("yellow", "#ffdc00"), ("pink", "#f078b4")):
            hits = c.search({"color": hexa}, k=3)["hits"]
            assert hits[0]["_id"] == name and hits[0]["_score"] == pytest.approx(1.0, abs=0.01), (name, hits)
