"""`tune`: a learned space from the collection's own labels (issue 17).

The set is synthetic but shaped like real catalogues: every vector is dominated by a "style"
(one of 8 strong directions shared across categories: the drawing style of an icon theme) and
the category shows only in a weak subspace. Untuned, neighbours share a style; tuned, they
should share a category, also for categories held out of the fit. The acceptance numbers on
real pictures come from bench/tune_learners.py and bench/relevance.py.
"""
from __future__ import annotations

import numpy as np
import pytest

import lookalike
from lookalike.errors import BadRequest, NotImplementedYet
from lookalike.query.learners import retrieval_scores
from lookalike.store.backup import backup, restore

DIM = 48


def catalogue(n_cats: int = 60, per_cat: int = 6, seed: int = 3, dim: int = DIM) -> list[dict]:
    rng = np.random.default_rng(seed)
    styles = rng.normal(size=(8, dim)) * 2.0
    cats = rng.normal(size=(n_cats, 8))
    records = []
    for c in range(n_cats):
        for m in range(per_cat):
            v = styles[rng.integers(8)] + rng.normal(size=dim) * 0.5
            v[:8] += cats[c] * 1.2
            records.append({"_id": f"c{c}-{m}", "_vector": v.tolist(), "kind": f"cat{c}",
                            "product": f"p{c}-{m // 2}"})
    return records


@pytest.fixture
def col(db):
    c = db.collection("shop", create=True, model="none", dim=DIM, group_field="product")
    c.upsert(catalogue())
    return c


def hits(col, query, k=8):
    return [(h["_id"], h["_score"]) for h in col.search(query, k=k)["hits"]]


def test_tune_raises_precision_on_held_out_labels_and_reset_restores(col):
    probe = [{"id": "c3-0"}, {"id": "c41-2"}, {"vector": catalogue()[7]["_vector"]}]
    untuned = [hits(col, q) for q in probe]
    out = col.tune(field="kind")
    assert out["applied"] is True
    assert out["after"]["p@5"] >= out["before"]["p@5"] + 0.2, out
    assert out["after"]["map@10"] > out["before"]["map@10"]
    assert col.info()["tuning"]["field"] == "kind" and col.info()["tuning"]["version"] == 1
    # labels the fit never saw, scored by the evaluation path over the whole collection
    tuned_eval = col.evaluate(holdout=True, k=5)["metrics"]["precision@5"]
    truth = lookalike.query.tune.holdout_truth(col._store)
    assert [hits(col, q) for q in probe] != untuned
    assert col.tune(reset=True)["was_tuned"] is True
    assert [hits(col, q) for q in probe] == untuned  # bit for bit: the raw vectors never changed
    assert col.info()["tuning"] is None
    untuned_eval = col.evaluate(truth, k=5)["metrics"]["precision@5"]
    assert tuned_eval >= untuned_eval + 0.2, (untuned_eval, tuned_eval)


def test_groups_use_the_group_field_and_retune_starts_from_raw(col):
    first = col.tune(groups=True)
    assert first["applied"] and first["field"] == "product"
    again = col.tune(groups=True)  # learned from the raw vectors again: the same map and scores
    assert again["before"] == first["before"] and again["after"] == first["after"]
    assert col.info()["tuning"]["version"] == 2


def test_new_records_and_vector_queries_are_mapped(col):
    col.tune(field="kind")
    transform = col._store.transform
    raw = np.asarray(catalogue()[12]["_vector"], dtype=np.float32)
    col.upsert([{"_id": "new", "_vector": raw.tolist(), "kind": "cat2"}])
    stored = col._store.vectors(["new"])["new"]
    expected = transform.apply(raw / np.linalg.norm(raw))
    np.testing.assert_allclose(stored, expected, atol=1e-6)
    by_id = [h for h in hits(col, {"id": "new"}, k=5)]
    by_vector = [h for h in hits(col, {"vector": raw.tolist()}, k=6) if h[0] != "new"]
    assert [i for i, _ in by_id] == [i for i, _ in by_vector[:5]]
    # a metadata-only update keeps the raw vector (not the tuned one) underneath
    col.upsert([{"_id": "new", "kind": "cat2", "note": "x"}])
    np.testing.assert_allclose(col._store.raw_vectors(["new"])["new"], raw / np.linalg.norm(raw), atol=1e-6)
    np.testing.assert_allclose(col._store.vectors(["new"])["new"], expected, atol=1e-6)


@pytest.mark.parametrize("kwargs, message", [
    ({"field": "colour"}, "no record"),
    ({"field": "kind"}, "one value"),
    ({"field": "few"}, "too few labelled"),
    ({}, "needs a 'field'"),
    ({"field": "kind", "reset": True}, "not both"),
    ({"field": "bad field!"}, "field"),
])
def test_bad_input_is_refused_and_changes_nothing(db, kwargs, message):
    col = db.collection("plain", create=True, model="none", dim=DIM)
    records = catalogue(n_cats=12, per_cat=3)
    for n, r in enumerate(records):
        r["kind"] = "same"
        if n < 6:
            r["few"] = f"v{n % 2}"
    col.upsert(records)
    before = [hits(col, {"id": f"c{c}-0"}) for c in range(5)]
    raw_before = col._store.raw_all_vectors()[1].copy()
    with pytest.raises(BadRequest, match=message):
        col.tune(**kwargs)
    assert col.settings.tuning == {} and col.info()["tuning"] is None
    assert [hits(col, {"id": f"c{c}-0"}) for c in range(5)] == before
    np.testing.assert_array_equal(col._store.raw_all_vectors()[1], raw_before)


def test_unlabelled_collection_searches_exactly_as_an_untouched_one(db):
    a = db.collection("a", create=True, model="none", dim=DIM)
    b = db.collection("b", create=True, model="none", dim=DIM)
    records = [{k: v for k, v in r.items() if k not in ("kind", "product")} for r in catalogue(n_cats=20)]
    a.upsert(records)
    b.upsert(records)
    with pytest.raises(BadRequest):
        b.tune(field="kind")
    assert b.tune(reset=True)["was_tuned"] is False
    for q in ({"id": "c1-1"}, {"vector": records[5]["_vector"]}, {"ids": ["c2-0", "c3-1"]}):
        assert a.search(q, k=10)["hits"] == b.search(q, k=10)["hits"]


def test_backup_restore_and_reopen_keep_the_tuning(db, col, tmp_path):
    col.tune(field="kind")
    tuned = [hits(col, {"id": f"c{c}-1"}) for c in (0, 9, 33)]
    backup(db, "shop", tmp_path / "shop.lab")
    restore(db, tmp_path / "shop.lab", name="copy")
    copy = db.collection("copy")
    assert copy.info()["tuning"]["version"] == 1
    assert [hits(copy, {"id": f"c{c}-1"}) for c in (0, 9, 33)] == tuned
    copy.tune(reset=True)  # the backup held raw vectors: the copy goes back to the untuned space too
    assert [hits(copy, {"id": f"c{c}-1"}) for c in (0, 9, 33)] != tuned
    path = db.store.path
    db.close()
    with lookalike.connect(path) as again:
        assert [hits(again.collection("shop"), {"id": f"c{c}-1"}) for c in (0, 9, 33)] == tuned


def test_compaction_keeps_raw_rows_and_the_tuned_space(col):
    col.tune(field="kind")
    col.delete(["c0-0", "c0-1"])
    tuned = [hits(col, {"id": f"c{c}-2"}) for c in (0, 9)]
    raw = col._store.raw_vectors(["c9-2"])["c9-2"].copy()
    col.compact()
    assert [hits(col, {"id": f"c{c}-2"}) for c in (0, 9)] == tuned
    np.testing.assert_array_equal(col._store.raw_vectors(["c9-2"])["c9-2"], raw)


def test_retrieval_scores_match_the_evaluation_definitions():
    x = np.eye(4, dtype=np.float32)[[0, 0, 1, 1, 2]]
    x[1] += 0.01
    labels = np.array([0, 0, 1, 1, 2])
    s = retrieval_scores(x / np.linalg.norm(x, axis=1, keepdims=True), labels)
    assert s["map@10"] == pytest.approx(1.0)  # the one relevant record always ranks first
    assert s["p@5"] == pytest.approx(0.2)


def test_a_store_without_tuning_says_so(col, monkeypatch):
    from lookalike.store.base import Capabilities
    monkeypatch.setattr(type(col._store), "capabilities", Capabilities())
    with pytest.raises(NotImplementedYet, match="cannot tune"):
        col.tune(field="kind")


def test_http_route_needs_the_admin_key_and_answers_the_contract(tmp_path):
    from fastapi.testclient import TestClient

    from lookalike.server import create_app
    admin, search = "a" * 24, "s" * 24
    with lookalike.connect(tmp_path, allow_file=False) as db:
        db.collection("shop", create=True, model="none", dim=DIM).upsert(catalogue())
        client = TestClient(create_app(db, admin_key=admin, search_key=search))
        as_admin = {"Authorization": f"Bearer {admin}"}
        refused = client.post("/v1/collections/shop/tune", json={"field": "kind"},
                              headers={"Authorization": f"Bearer {search}"})
        assert refused.status_code == 403 and db.collection("shop").settings.tuning == {}
        bad = client.post("/v1/collections/shop/tune", json={"field": "nope"}, headers=as_admin)
        assert bad.status_code == 400 and "nope" in bad.json()["error"]["message"]
        done = client.post("/v1/collections/shop/tune", json={"field": "kind"}, headers=as_admin)
        assert done.status_code == 200, done.text
        body = done.json()
        assert body["applied"] is True and body["after"]["p@5"] > body["before"]["p@5"]
        info = client.get("/v1/collections/shop", headers=as_admin).json()
        assert info["tuning"]["field"] == "kind" and "transform" not in info["tuning"]
        back = client.post("/v1/collections/shop/tune", json={"reset": True}, headers=as_admin).json()
        assert back["was_tuned"] is True and client.get("/v1/collections/shop", headers=as_admin).json()["tuning"] is None


def test_cli_tune_and_eval_holdout(tmp_path):
    import json
    import subprocess
    import sys

    data = tmp_path / "data"
    with lookalike.connect(data) as db:
        db.collection("shop", create=True, model="none", dim=DIM).upsert(catalogue())

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "lookalike.cli", *args, "--data", str(data)],
                              capture_output=True, text=True, timeout=300)
    untuned = cli("eval", "-c", "shop", "--holdout", "--json")
    assert untuned.returncode != 0 and "not tuned" in untuned.stderr + untuned.stdout
    out = cli("tune", "-c", "shop", "--field", "kind", "--json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["applied"] is True and set(body["before"]) == {"p@5", "map@10"}
    tuned = json.loads(cli("eval", "-c", "shop", "--holdout", "-k", "5", "--json").stdout)["metrics"]["precision@5"]
    text = cli("tune", "-c", "shop", "--reset")
    assert text.returncode == 0 and "back to the model's own vectors" in text.stdout
    neither = cli("eval", "-c", "shop")
    assert neither.returncode != 0 and "--holdout" in neither.stderr
    assert tuned > body["before"]["p@5"]


@pytest.mark.parametrize("settings", [{"index": {"type": "hnsw", "threshold": 0}},
                                      {"index": {"type": "ivf", "threshold": 0}, "compression": {"dtype": "i8"}}])
def test_the_ann_index_and_compression_search_the_tuned_space(db, settings, tmp_path):
    col = db.collection("ann", create=True, model="none", dim=DIM, **settings)
    col.upsert(catalogue())
    col._store.wait_index()
    col.tune(field="kind")
    col._store.wait_index()
    ids, tuned = col._store.all_vectors()
    agree = 0
    for q in range(0, len(ids), 12):
        sims = tuned @ tuned[q]
        sims[q] = -np.inf
        best = {ids[j] for j in np.argsort(-sims)[:5]}
        agree += len(best & {h["_id"] for h in col.search({"id": ids[q]}, k=5)["hits"]})
    assert agree >= 0.9 * 5 * len(range(0, len(ids), 12))  # approximate, but in the tuned space
    index = col._store.stats()["index"]
    assert index["active"] != "exact" and index["indexed_rows"] == len(ids)


def test_milvus_tunes_like_the_embedded_store_and_resets_exactly(db, tmp_path):
    pytest.importorskip("pymilvus")
    records = catalogue(n_cats=30)
    embedded = db.collection("shop", create=True, model="none", dim=DIM)
    embedded.upsert(records)
    with lookalike.connect(str(tmp_path / "lite.db")) as mdb:
        col = mdb.collection("shop", create=True, model="none", dim=DIM)
        col.upsert(records)
        probe = [{"id": "c1-1"}, {"id": "c17-3"}, {"vector": records[40]["_vector"]}]
        untuned = [hits(col, q) for q in probe]
        out, ref = col.tune(field="kind"), embedded.tune(field="kind")
        assert out["applied"] and out["before"] == ref["before"] and out["after"] == ref["after"]
        for q in probe:  # the same space as the embedded store's, and not the untuned one
            assert [i for i, _ in hits(col, q)] == [i for i, _ in hits(embedded, q)]
        assert [hits(col, q) for q in probe] != untuned
        raw = np.asarray(records[12]["_vector"], dtype=np.float32)
        col.upsert([{"_id": "new", "_vector": raw.tolist(), "kind": "cat2"}])
        col.upsert([{"_id": "new", "kind": "cat2", "note": "metadata only"}])
        np.testing.assert_allclose(col._store.raw_vectors(["new"])["new"], raw / np.linalg.norm(raw), atol=1e-6)
        np.testing.assert_allclose(col._store.vectors(["new"])["new"],
                                   col._store.transform.apply(raw / np.linalg.norm(raw)), atol=1e-6)
        col.delete(["new"])
        backup(mdb, "shop", tmp_path / "m.lab")  # raw vectors in the backup: a restored copy tunes the same
        restore(mdb, tmp_path / "m.lab", name="copy")
        copy = mdb.collection("copy")
        assert [hits(copy, q) for q in probe[:2]] == [hits(col, q) for q in probe[:2]]
        assert col.tune(reset=True)["was_tuned"] is True
        assert [hits(col, q) for q in probe] == untuned  # raw vectors came back bit for bit
        assert not mdb.store.client.has_collection("lk_shop_raw")


def test_milvus_keeps_a_wide_map_beside_its_settings_and_reopens_tuned(tmp_path):
    """A 512-d collection's map is hundreds of KB: more than the settings row holds (64 KB)."""
    pytest.importorskip("pymilvus")
    records = catalogue(n_cats=60, dim=512)
    path = str(tmp_path / "lite.db")
    with lookalike.connect(path) as mdb:
        col = mdb.collection("wide", create=True, model="none", dim=512)
        col.upsert(records)
        untuned = hits(col, {"id": "c5-1"})
        assert col.tune(field="kind")["applied"]
        tuned = hits(col, {"id": "c5-1"})
        assert tuned != untuned
        proj = col._store.transform.proj.copy()
        row = mdb.store.client.get("lookalike_settings", ids=["wide"], output_fields=["settings"])[0]
        assert len(row["settings"]) < 65_535
    with lookalike.connect(path) as again:
        col = again.collection("wide")
        assert hits(col, {"id": "c5-1"}) == tuned
        np.testing.assert_array_equal(col._store.transform.proj, proj)  # float32 columns, read back exactly
        col.tune(field="kind")  # a second map replaces the first: one map's rows are kept
        kept = again.store.client.query("lk_wide_map", filter='id != ""', output_fields=["id"], limit=10_000)
        assert len({r["id"].split("/")[0] for r in kept}) == 1
        col.tune(reset=True)
        assert hits(col, {"id": "c5-1"}) == untuned
        assert not again.store.client.has_collection("lk_wide_map")


def test_scoring_samples_whole_categories_under_the_cap():
    from lookalike.query.learners import scored_sample
    labels = np.repeat(np.arange(500), 20)  # 10,000 rows
    mask = scored_sample(labels, limit=3000)
    kept = np.unique(labels[mask])
    assert 0 < mask.sum() <= 3000 and mask.sum() == 20 * len(kept)  # whole categories only
    assert mask.sum() > 2900  # and as many as fit
    assert scored_sample(labels, limit=20_000).all()


def test_milvus_reads_a_tuned_map_only_when_the_collection_uses_it(tmp_path, monkeypatch):
    """Listing collections read every tuned collection's whole map (megabytes each) before."""
    pytest.importorskip("pymilvus")
    from lookalike.store.milvus import tuning as milvus_tuning
    records = catalogue(n_cats=30)
    path = str(tmp_path / "lite.db")
    with lookalike.connect(path) as mdb:
        for name in ("one", "two"):
            col = mdb.collection(name, create=True, model="none", dim=DIM)
            col.upsert(records)
            assert col.tune(field="kind")["applied"]
        expected = hits(mdb.collection("one"), {"id": "c3-1"})
    loads: list[str] = []
    real = milvus_tuning.load_map
    monkeypatch.setattr(milvus_tuning, "load_map", lambda store, name, tuning: loads.append(name) or real(store, name, tuning))
    import lookalike.store.milvus.store as milvus_store
    monkeypatch.setattr(milvus_store, "load_map", milvus_tuning.load_map)
    with lookalike.connect(path) as again:
        listed = again.collections()
        assert {c["name"]: c["count"] for c in listed} == {"one": len(records), "two": len(records)}
        col = again.collection("one")
        assert loads == []  # listed, counted and opened: no map read yet
        assert hits(col, {"id": "c3-1"}) == expected  # searched in the tuned space
        assert col.info()["tuning"]["version"] == 1
        assert loads == ["one"]  # read once, for the collection that used it


def _unseen_split(n_cats: int, per_cat: int, signal_dims: int, seed: int = 0, dim: int = 128):
    """(fit x, fit y, unseen x, unseen y): `catalogue`-shaped vectors (strong shared styles, the
    category in a weak subspace of `signal_dims` axes), the categories split in halves."""
    rng = np.random.default_rng(seed)
    styles = rng.normal(size=(8, dim)) * 2.0
    centres = rng.normal(size=(n_cats, signal_dims)) * 1.2
    x = np.empty((n_cats * per_cat, dim), np.float32)
    y = np.repeat(np.arange(n_cats), per_cat)
    for row, c in enumerate(y):
        x[row] = styles[rng.integers(8)] + rng.normal(size=dim) * 0.5
        x[row, :signal_dims] += centres[c]
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    fit = y < n_cats // 2
    return x[fit], y[fit], x[~fit], y[~fit]


@pytest.mark.parametrize("name", ["lda", "lda-128", "within-whiten"])
def test_every_learner_tune_chooses_from_lifts_categories_it_never_saw(name):
    from lookalike.query.learners import CHOICES, principal_basis
    xf, yf, xu, yu = _unseen_split(n_cats=120, per_cat=5, signal_dims=8)
    before = retrieval_scores(xu / np.linalg.norm(xu, axis=1, keepdims=True), yu)["p@5"]
    transform = CHOICES[name](xf, yf, basis=principal_basis(xf))
    after = retrieval_scores(transform.apply(xu), yu)["p@5"]
    assert before < 0.15 and after > before + 0.12, (name, before, after)


@pytest.mark.parametrize("dim, best", [(DIM, "within-whiten"), (128, "lda")])
def test_choose_learner_picks_what_carries_to_unseen_categories(dim, best):
    """The same categories among 48 axes, then among 128 (80 of pure noise): a discriminant keeps
    at most categories - 1 axes, which drops the noise axes when there are many and the signal of
    unseen categories when there are few; whitening inside categories keeps every axis. The
    choice, made on fitted categories only, must be the learner best on the unseen ones."""
    from lookalike.query.learners import CHOICES, choose_learner
    xf, yf, xu, yu = _unseen_split(n_cats=120, per_cat=5, signal_dims=8, dim=dim)
    chosen, table = choose_learner(xf, yf)
    unseen = {n: retrieval_scores(fit(xf, yf).apply(xu), yu)["p@5"] for n, fit in CHOICES.items()}
    assert set(table) == set(CHOICES) and chosen == best, table
    others = [v for n, v in unseen.items() if not n.startswith(best)]
    assert unseen[chosen] > max(others) + 0.04, unseen


def test_tune_checks_held_out_records_among_the_whole_collection():
    """The check scores as `eval --holdout` does: held-out records query, every other record is a
    distractor that never counts as relevant, and at most MAX_SCORED rows are ranked."""
    from lookalike.query.learners import MAX_SCORED
    from lookalike.query.tune import _checked_rows
    check, y_check = [3, 7, 8, 20], np.array([0, 0, 1, 1])
    rows, labels = _checked_rows(30, check, y_check)
    assert sorted(rows) == list(range(30)) and list(rows[:4]) == check and list(labels[:4]) == [0, 0, 1, 1]
    assert len(set(labels[4:])) == 26 and not set(labels[4:]) & {0, 1}  # never relevant to a query
    rows_big, _ = _checked_rows(3 * MAX_SCORED, check, y_check)
    assert len(rows_big) == MAX_SCORED and set(check) <= set(rows_big.tolist())
