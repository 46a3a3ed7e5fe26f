"""Search on real embeddings of drawn images: the same visual class ranks first."""
from __future__ import annotations

import base64
import shutil

import pytest

import lookalike
from lookalike.errors import BadRequest, NotAnImage, NotFound
from lookalike.sample import COLORS, draw_item

from conftest import jpeg_bytes


@pytest.fixture(scope="module")
def col(pattern_db_dir):
    db = lookalike.connect(pattern_db_dir, read_only=True)
    yield db.collection("patterns")
    db.close()


def pattern_of(rid: str) -> str:
    return rid.split("-")[0]


def test_same_class_ranks_first_for_every_record(col):
    ids = [f"{p}-{c}-{s}" for p in ("stripes", "dots") for c in ("red", "blue", "green", "orange", "purple", "black")
           for s in ("square", "circle")]
    for rid in ids:
        hits = col.search({"id": rid}, k=5)["hits"]
        assert rid not in [h["_id"] for h in hits]  # never the query itself
        assert [pattern_of(h["_id"]) for h in hits[:3]] == [pattern_of(rid)] * 3, (rid, hits)


def test_search_by_new_image_bytes_file_and_base64(col, tmp_path):
    query = draw_item("dots", COLORS["red"], seed=999, size=400, shape="shirt")  # unseen shape and seed
    path = tmp_path / "q.jpg"
    query.save(path, quality=85)
    by_file = col.search({"file": str(path)}, k=6)["hits"]
    by_b64 = col.search({"base64": base64.b64encode(jpeg_bytes(query, 85)).decode()}, k=6)["hits"]
    assert [h["_id"] for h in by_file] == [h["_id"] for h in by_b64]
    assert [pattern_of(h["_id"]) for h in by_file[:2]] == ["dots"] * 2  # an unseen shape: same class first
    assert sum(pattern_of(h["_id"]) == "dots" for h in by_file[:5]) >= 4
    assert by_file[0]["_score"] >= by_file[-1]["_score"]


def test_labels_and_colors_are_stored(col):
    rec = col.get("stripes-red-square")
    assert rec["_labels"] and {"label", "score"} <= set(rec["_labels"][0])
    assert isinstance(rec["_labels"][0]["label"], str) and 0 < rec["_labels"][0]["score"] <= 1
    main = rec["_colors"][0]["color"]
    assert main.startswith("#") and len(main) == 7
    assert abs(sum(c["weight"] for c in rec["_colors"]) - 1) < 0.01
    # the red stripes are among the dominant colours
    assert any(int(c["color"][1:3], 16) > 150 and int(c["color"][3:5], 16) < 100 for c in rec["_colors"])


def test_paging_fields_and_vector_query(col):
    page1 = col.search({"id": "stripes-red-square"}, k=4)["hits"]
    page2 = col.search({"id": "stripes-red-square"}, k=4, offset=4)["hits"]
    both = col.search({"id": "stripes-red-square"}, k=8)["hits"]
    assert [h["_id"] for h in page1 + page2] == [h["_id"] for h in both]
    slim = col.search({"id": "stripes-red-square"}, k=3, fields=["color", "price"])["hits"]
    assert all(set(h) == {"_id", "_score", "color", "price"} for h in slim)
    vec = col._store.vectors(["dots-blue-circle"])["dots-blue-circle"].tolist()
    by_vec = col.search({"vector": vec}, k=1)["hits"]
    assert by_vec[0]["_id"] == "dots-blue-circle" and by_vec[0]["_score"] == pytest.approx(1.0, abs=1e-5)


def test_group_by_gives_one_hit_per_value(col):
    hits = col.search({"id": "stripes-red-square"}, k=10, group_by="color")["hits"]
    groups = [h["_group"] for h in hits]
    assert len(groups) == len(set(groups)) == 6  # six colours exist
    ungrouped = col.search({"id": "stripes-red-square"}, k=30)["hits"]
    best = {}
    for h in ungrouped:
        best.setdefault(h["color"], h["_id"])
    assert {h["_group"]: h["_id"] for h in hits} == best  # the best of each group


def test_filter_with_image_search(col):
    hits = col.search({"id": "stripes-red-square"}, k=10, filter={"pattern": "dots", "price": {"$lt": 25}})["hits"]
    assert hits and all(h["pattern"] == "dots" and h["price"] < 25 for h in hits)


def test_several_anchors_and_errors(col):
    hits = col.search({"ids": ["stripes-red-square", "stripes-blue-circle"]}, k=3)["hits"]
    assert all(pattern_of(h["_id"]) == "stripes" for h in hits)
    assert not {"stripes-red-square", "stripes-blue-circle"} & {h["_id"] for h in hits}
    with pytest.raises(NotFound, match="'nope' not found"):
        col.search({"id": "nope"})
    with pytest.raises(BadRequest, match="'k' must be an integer from 1 to 1000"):
        col.search({"id": "stripes-red-square"}, k=0)
    with pytest.raises(BadRequest, match="exactly one"):
        col.search({"id": "a", "url": "http://x"})
    with pytest.raises(NotAnImage, match="not an image"):
        col.search({"base64": base64.b64encode(b"plain text").decode()})
    with pytest.raises(BadRequest, match=f"expects {col.settings.dim}"):
        col.search({"vector": [1.0, 2.0]})


def test_recommend_excludes_anchor_group(pattern_db_dir, pattern_catalog, tmp_path):
    shutil.copytree(pattern_db_dir, tmp_path / "copy")  # a settings change: not in the shared folder
    with lookalike.connect(tmp_path / "copy") as db:
        col = db.collection("patterns")
        col._store.update_settings(group_field="product_id")
        hits = col.recommend("stripes-red-square", k=5)["hits"]
        assert hits and all(h["product_id"] != "stripes-square" for h in hits)
        assert len({h["product_id"] for h in hits}) == len(hits)
        every = col.recommend("stripes-red-square", k=20, group_by=False)["hits"]
        assert all(h["product_id"] != "stripes-square" for h in every)  # the anchor's group stays out
        assert len({h["product_id"] for h in every}) < len(every)  # but one product may come several times
        by_colour = col.recommend("stripes-red-square", k=20, group_by="color")["hits"]
        assert len({h["color"] for h in by_colour}) == len(by_colour) > 1
        assert all(h["product_id"] != "stripes-square" for h in by_colour)
        with pytest.raises(BadRequest, match="group_by"):
            col.recommend("stripes-red-square", group_by="")
        rr = col.rerank(["dots-red-square", "stripes-blue-square", "ghost"], {"id": "stripes-red-square"})
        assert [h["_id"] for h in rr["hits"]] == ["stripes-blue-square", "dots-red-square"]
        assert rr["missing"] == ["ghost"]
