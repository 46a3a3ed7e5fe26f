"""Automatic labels as filters, boosts and `same_label`; default boost rules; negative anchors."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import lookalike
from lookalike.testing.copies import encode
from lookalike.errors import BadRequest, NotFound
from lookalike.models import get_encoder
from lookalike.models.images import load_pixels
from lookalike.store.filters import MATCH_ALL
from lookalike.sample import COLORS, draw_item


@pytest.fixture(scope="module")
def col(pattern_db_dir):
    db = lookalike.connect(pattern_db_dir, read_only=True)
    yield db.collection("patterns")
    db.close()


@pytest.fixture
def writable(pattern_db_dir, tmp_path):
    """A private copy of the pattern collection, for tests that change settings or records."""
    shutil.copytree(pattern_db_dir, tmp_path / "copy")
    db = lookalike.connect(tmp_path / "copy")
    yield db
    db.close()


def all_docs(col) -> dict[str, dict]:
    ids = col._store.ids_where(MATCH_ALL)
    return {i: col.get(i) for i in ids}


def labels_of(doc: dict) -> set[str]:
    return {lab["label"] for lab in doc.get("_labels", [])}


def test_filter_on_labels_returns_exactly_the_records_with_that_label(col):
    docs = all_docs(col)
    counts: dict[str, int] = {}
    for doc in docs.values():
        for label in labels_of(doc):
            counts[label] = counts.get(label, 0) + 1
    assert len(counts) >= 2, counts  # the drawn catalogue gets several distinct labels
    for label in counts:
        hits = col.search({"id": "stripes-red-square"}, k=100, filter={"_labels.label": label})["hits"]
        want = {i for i, d in docs.items() if label in labels_of(d)} - {"stripes-red-square"}
        assert {h["_id"] for h in hits} == want, label
    label = max(counts, key=counts.get)
    others = col.search({"id": "dots-red-square"}, k=100, filter={"_labels.label": {"$ne": label}})["hits"]
    assert others and all(label not in labels_of(h) for h in others)


def test_boost_on_labels_lifts_those_records(col):
    plain = col.search({"id": "stripes-blue-square"}, k=23)["hits"]
    ranks: dict[str, list[int]] = {}
    for n, h in enumerate(plain):
        for lab in labels_of(h):
            ranks.setdefault(lab, []).append(n)
    label = max(ranks, key=lambda lab: np.mean(ranks[lab]))  # worst placed on average: boosting lifts them
    members = {h["_id"] for h in plain if label in labels_of(h)}
    boosted = col.search({"id": "stripes-blue-square"}, k=23,
                         boost=[{"filter": {"_labels.label": label}, "weight": 5.0}])["hits"]
    assert {h["_id"] for h in boosted[:len(members)]} == members
    by_id = {h["_id"]: h["_score"] for h in plain}
    for h in boosted:
        assert h["_score"] == pytest.approx(by_id[h["_id"]] + (5.0 if h["_id"] in members else 0), abs=1e-4)


def test_same_label_by_id_keeps_only_the_anchors_label(col):
    docs = all_docs(col)
    for anchor in ("stripes-red-circle", "dots-blue-square", "dots-black-circle"):
        top = docs[anchor]["_labels"][0]["label"]
        hits = col.search({"id": anchor}, k=100, same_label=True)["hits"]
        want = {i for i, d in docs.items() if top in labels_of(d)} - {anchor}
        assert {h["_id"] for h in hits} == want, anchor
        assert 0 < len(hits) < len(docs) - 1  # it did restrict
        plain = [h["_id"] for h in col.search({"id": anchor}, k=100)["hits"] if h["_id"] in want]
        assert [h["_id"] for h in hits] == plain  # same order as without the restriction


def test_same_label_by_image_classifies_the_query(col):
    docs = all_docs(col)
    image = draw_item("dots", COLORS["blue"], seed=4242, size=300, shape="circle")
    data = encode(image)
    encoder = get_encoder(col.settings.model)
    top = encoder.embed(load_pixels(data, encoder.input_size, fit=encoder.fit)[None]).labels[0][0]["label"]
    hits = col.search({"base64": __import__("base64").b64encode(data).decode()}, k=100, same_label=True)["hits"]
    assert {h["_id"] for h in hits} == {i for i, d in docs.items() if top in labels_of(d)}
    assert 0 < len(hits) < len(docs)
    plain = col.search({"image": data}, k=100)["hits"]
    assert [h["_id"] for h in hits] == [h["_id"] for h in plain if top in labels_of(h)]
    assert hits[0]["_score"] == pytest.approx(next(h["_score"] for h in plain if h["_id"] == hits[0]["_id"]), abs=1e-5)


def test_same_label_bad_input(col):
    with pytest.raises(BadRequest, match="same_label"):
        col.search({"id": "dots-red-square"}, same_label="yes")
    with pytest.raises(BadRequest, match="same_label"):
        col.search({"color": "#ff0000"}, same_label=True)
    with pytest.raises(BadRequest, match="same_label"):
        col.search({"vector": [0.1] * col.settings.dim}, same_label=True)
    with pytest.raises(NotFound, match="ghost"):
        col.search({"id": "ghost"}, same_label=True)


def _mark(col, flags: dict[str, dict]) -> None:
    """Metadata-only updates: the stored image, vector and labels stay."""
    records = []
    for rid, extra in flags.items():
        doc = {k: v for k, v in col.get(rid).items() if k == "_id" or not k.startswith("_")}
        records.append({**doc, **extra})
    assert {r["status"] for r in col.upsert(records)} == {"updated"}


def test_collection_default_boosts_change_the_ranking_without_client_code(writable):
    col = writable.collection("patterns")
    plain = col.search({"id": "stripes-red-square"}, k=23)["hits"]
    top, low = plain[0]["_id"], plain[6]["_id"]
    _mark(col, {top: {"in_stock": False}, low: {"on_sale": True}})
    assert [h["_id"] for h in col.search({"id": "stripes-red-square"}, k=23)["hits"]] == [h["_id"] for h in plain]
    rules = [{"filter": {"on_sale": True}, "weight": 0.3}, {"filter": {"in_stock": False}, "weight": -0.3}]
    writable.collection("patterns", create=True, boosts=rules)
    col = writable.collection("patterns")
    ranked = col.search({"id": "stripes-red-square"}, k=23)["hits"]
    order = [h["_id"] for h in ranked]
    assert order[0] == low and order.index(top) > 6, order
    before = {h["_id"]: h["_score"] for h in plain}
    after = {h["_id"]: h["_score"] for h in ranked}
    assert after[low] == pytest.approx(before[low] + 0.3, abs=1e-4)
    assert after[top] == pytest.approx(before[top] - 0.3, abs=1e-4)
    # a per-query rule adds to the defaults
    extra = col.search({"id": "stripes-red-square"}, k=23, boost=[{"filter": {"on_sale": True}, "weight": 0.1}])
    assert {h["_id"]: h["_score"] for h in extra["hits"]}[low] == pytest.approx(after[low] + 0.1, abs=1e-4)
    assert col.info()["boosts"] == rules


def test_a_boost_rule_without_weight_is_refused_not_ignored(writable):
    col = writable.collection("patterns")
    before = col.info()["boosts"]
    with pytest.raises(BadRequest, match="boost rule 2 has no 'weight'"):
        col.search({"id": "stripes-red-square"}, boost=[{"filter": {"on_sale": True}, "weight": 0.1},
                                                        {"filter": {"in_stock": False}}])
    with pytest.raises(BadRequest, match="boost rule 1 has no 'weight'"):
        writable.collection("patterns", create=True, boosts=[{"filter": {"on_sale": True}}])
    assert writable.collection("patterns").info()["boosts"] == before  # the settings stay as they were


def test_negative_anchor_pushes_its_lookalikes_down(col):
    anchor, negative = "stripes-red-square", "dots-red-square"
    plain = col.search({"id": anchor}, k=22)["hits"]
    pushed = col.search({"id": anchor}, k=22, negative=[{"id": negative}])["hits"]
    assert negative not in [h["_id"] for h in pushed]
    # the score is sim(anchor, x) - 0.5 * sim(negative, x)
    vectors = col._store.vectors([anchor, negative] + [h["_id"] for h in pushed])
    for h in pushed:
        want = float(vectors[anchor] @ vectors[h["_id"]] - 0.5 * vectors[negative] @ vectors[h["_id"]])
        assert h["_score"] == pytest.approx(want, abs=1e-4)
    # the negative's closest look-alikes (dots) fall, on average, relative to the rest
    near_negative = [h["_id"] for h in col.search({"id": negative}, k=5)["hits"] if h["_id"] != anchor]
    rank = lambda hits, rid: [h["_id"] for h in hits].index(rid) if rid in [h["_id"] for h in hits] else len(hits)
    assert np.mean([rank(pushed, r) for r in near_negative]) > np.mean([rank(plain, r) for r in near_negative])
    assert all(rank(pushed, r) >= rank(plain, r) - 1 for r in near_negative)
    stronger = col.search({"id": anchor}, k=22, negative=[{"id": negative}], negative_weight=2.0)["hits"]
    assert np.mean([rank(stronger, r) for r in near_negative]) >= np.mean([rank(pushed, r) for r in near_negative])


def test_same_label_and_boosts_over_http(pattern_db_dir):
    from fastapi.testclient import TestClient

    from lookalike.server.app import create_app

    with lookalike.connect(pattern_db_dir, read_only=True) as db:
        http = TestClient(create_app(db))
        body = {"query": {"id": "dots-blue-square"}, "k": 100, "same_label": True}
        over_http = http.post("/v1/collections/patterns/search", json=body)
        assert over_http.status_code == 200, over_http.text
        local = db.collection("patterns").search({"id": "dots-blue-square"}, k=100, same_label=True)
        assert [h["_id"] for h in over_http.json()["hits"]] == [h["_id"] for h in local["hits"]]
        bad = http.post("/v1/collections/patterns/search", json={**body, "same_label": "yes"})
        assert bad.status_code in (400, 422)
