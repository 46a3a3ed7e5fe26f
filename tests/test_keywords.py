"""Keywords with pictures: BM25 over ids and text_fields (SQLite FTS5), alone or blended with looks,
kept in step with every write, and never a 500 whatever the words."""
from __future__ import annotations

import dataclasses
import sqlite3

import numpy as np
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings, strategies as st

import lookalike
from lookalike.cli import main
from lookalike.errors import BadRequest, Conflict, NotImplementedYet
from lookalike.server import create_app
from lookalike.store.backup import backup, restore
from lookalike.store.embedded import fts
from lookalike.testing.servers import serving

DIM = 8


def _records() -> list[dict]:
    rng = np.random.default_rng(3)
    out = [{"_id": f"r{i:02d}", "_vector": rng.normal(size=DIM).tolist(), "title": f"plain shirt {i}",
            "brand": "acme" if i % 4 == 0 else "zeta"} for i in range(24)]
    out.append({"_id": "AB-123", "_vector": rng.normal(size=DIM).tolist(), "title": "Café crème mug",
                "brand": "Orla", "tags": ["kitchen", "gift"]})
    out.append({"_id": "AB-132", "_vector": rng.normal(size=DIM).tolist(), "title": "tea mug"})
    return out


def _collection(db, name: str = "kw"):
    col = db.collection(name, create=True, model="none", dim=DIM, text_fields=["title", "brand", "tags"])
    col.upsert(_records())
    return col


def ids(result: dict) -> list[str]:
    return [h["_id"] for h in result["hits"]]


def test_exact_terms_alone(db):
    col = _collection(db)
    assert ids(col.search({"keywords": "AB-123"})) == ["AB-123"]  # not its near-twin AB-132
    assert ids(col.search({"keywords": "cafe"})) == ["AB-123"]  # case and accents folded
    assert ids(col.search({"keywords": "gift"})) == ["AB-123"]  # list values are searched
    acme = ids(col.search({"keywords": "acme"}, k=50))
    assert sorted(acme) == [f"r{i:02d}" for i in range(0, 24, 4)]
    both = col.search({"keywords": "tea mug"}, k=5)["hits"]  # two words beat one
    assert both[0]["_id"] == "AB-132" and both[0]["_score"] == 1.0 and both[1]["_id"] == "AB-123"
    assert both[1]["_score"] < 1.0
    assert ids(col.search({"keywords": "acme"}, k=50, filter={"_id": {"$in": ["r04", "r05"]}})) == ["r04"]
    assert ids(col.search({"keywords": "nothing-like-this"})) == []


def test_blended_with_an_anchor(db):
    col = _collection(db)
    visual = ids(col.search({"id": "r01"}, k=30))
    zero = ids(col.search({"id": "r01", "keywords": "acme"}, k=30, keyword_weight=0.0))
    assert zero == visual  # weight 0: looks only
    for fusion in ("rrf", "weighted"):
        blended = col.search({"id": "r01", "keywords": "acme"}, k=30, fusion=fusion, keyword_weight=0.8)["hits"]
        top = [h["_id"] for h in blended[:6]]
        assert sorted(top) == [f"r{i:02d}" for i in range(0, 24, 4)], fusion  # the keyword matches rise
        assert "r01" not in [h["_id"] for h in blended]  # the anchor stays out, as in any id search
        assert [h["_score"] for h in blended] == sorted((h["_score"] for h in blended), reverse=True)
    # the order among the matches still follows looks
    matches = [i for i in visual if i in {f"r{i:02d}" for i in range(0, 24, 4)}]
    assert ids(col.search({"id": "r01", "keywords": "acme"}, k=6, keyword_weight=0.8)) == matches


def test_bad_keyword_requests_are_clear(db):
    col = _collection(db)
    for query, message in (({"keywords": ""}, "non-empty"), ({"keywords": 5}, "non-empty"),
                           ({"keywords": "!!! ---"}, "no word"), ({"keywords": "x" * 2001}, "longer"),
                           ({"color": "#ff0000", "keywords": "acme"}, "colour")):
        with pytest.raises(BadRequest, match=message):
            col.search(query)
    with pytest.raises(BadRequest, match="fusion"):
        col.search({"keywords": "acme"}, fusion="max")
    with pytest.raises(BadRequest, match="keyword_weight"):
        col.search({"keywords": "acme"}, keyword_weight=2)
    with pytest.raises(BadRequest, match="text"):
        col.search({"id": "r01", "keywords": "acme"}, text="shirt")
    with pytest.raises(BadRequest, match="negative"):
        col.search({"keywords": "acme"}, negative=[{"id": "r02"}])


def test_index_follows_updates_deletes_compaction_and_settings(db):
    col = _collection(db)
    col.upsert([{"_id": "r00", "_vector": [1.0] * DIM, "title": "renamed", "brand": "other"}])
    assert "r00" not in ids(col.search({"keywords": "acme"}, k=50))  # the old words went with the old row
    assert ids(col.search({"keywords": "renamed"})) == ["r00"]
    col.delete(["AB-123"])
    assert ids(col.search({"keywords": "cafe"})) == []
    col.compact()  # slots renumbered: the table is rebuilt on the new ones
    assert ids(col.search({"keywords": "renamed"})) == ["r00"]
    assert sorted(ids(col.search({"keywords": "acme"}, k=50))) == [f"r{i:02d}" for i in range(4, 24, 4)]
    assert ids(col.search({"keywords": "tea"})) == ["AB-132"]
    db.ensure_collection("kw", text_fields=["title"])  # brand no longer searched
    assert ids(col.search({"keywords": "acme"}, k=50)) == []
    assert ids(col.search({"keywords": "AB-132"})) == ["AB-132"]  # ids always are
    db.drop("kw")
    con = db.store.writer
    assert con.execute("SELECT count(*) FROM keyword_state WHERE collection='kw'").fetchone()[0] == 0
    assert con.execute("SELECT count(*) FROM sqlite_master WHERE name='kw_kw'").fetchone()[0] == 0


def test_a_failed_write_leaves_records_and_index_together(db, monkeypatch):
    col = _collection(db)

    def fail(*args, **kwargs):
        raise sqlite3.OperationalError("disk full (simulated)")
    monkeypatch.setattr(fts, "write", fail)
    old = next(col._store.export())[0]
    changed = dataclasses.replace(old, doc={**old.doc, "title": "fresh acme"}, content_hash="changed")
    with pytest.raises(sqlite3.OperationalError, match="simulated"):
        col._store.write([changed])
    monkeypatch.undo()
    assert col.count() == 26
    assert ids(col.search({"keywords": "fresh"})) == []
    assert ids(col.search({"keywords": "cafe"})) == ["AB-123"]


def test_older_collections_are_indexed_on_open_and_read_only_opens_say_so(data_dir):
    with lookalike.connect(data_dir) as db:
        _collection(db)
        con = db.store.writer  # as a folder written before the keyword index existed
        con.execute("DROP TABLE kw_kw")
        con.execute("DELETE FROM keyword_state")
    with lookalike.connect(data_dir, read_only=True) as ro:
        with pytest.raises(Conflict, match="not built yet"):
            ro.collection("kw").search({"keywords": "acme"})
    with lookalike.connect(data_dir) as db:
        assert len(ids(db.collection("kw").search({"keywords": "acme"}, k=50))) == 6
    with lookalike.connect(data_dir, read_only=True) as ro:
        assert ids(ro.collection("kw").search({"keywords": "cafe"})) == ["AB-123"]


def test_backup_and_restore_keep_keyword_search(db, tmp_path):
    col = _collection(db)
    before = col.search({"keywords": "acme mug"}, k=20)["hits"]
    backup(db, "kw", tmp_path / "kw.bak")
    restore(db, tmp_path / "kw.bak", name="kw2")
    assert db.collection("kw2").search({"keywords": "acme mug"}, k=20)["hits"] == before
    restore(db, tmp_path / "kw.bak", replace=True)
    assert db.collection("kw").search({"keywords": "acme mug"}, k=20)["hits"] == before


ODD = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60) | st.sampled_from(
    ['"', '""', "'", "*", "a*", "NEAR(a b)", "a AND", "OR", "NOT x", "(", ")", "^a", "col:x", "rid:AB", "-a",
     "+", "a\x00b", "\u200b", "ab\"cd", "{rid body}: x", "a NEAR/2 b", "\\", "%", "_"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=ODD)
def test_odd_keywords_never_break_fts5(db, words):
    col = db.collection("odd", create=True, model="none", dim=DIM, text_fields=["title"])
    if not col.count():
        col.upsert([{"_id": "a", "_vector": [1.0] * DIM, "title": 'NEAR AND OR "quoted" star* x^y'}])
    try:
        result = col.search({"keywords": words})
    except BadRequest:
        return
    assert all(h["_id"] == "a" for h in result["hits"])


def test_over_http_and_through_the_client(tmp_path):
    with lookalike.connect(tmp_path / "d", allow_file=False) as db:
        _collection(db)
        app = create_app(db)
        http = TestClient(app)
        answer = http.post("/v1/collections/kw/search", json={"query": {"keywords": "AB-123"}})
        assert answer.status_code == 200 and [h["_id"] for h in answer.json()["hits"]] == ["AB-123"]
        blended = http.post("/v1/collections/kw/search", json={"query": {"id": "r01", "keywords": "acme"},
                                                                "keyword_weight": 0.8, "fusion": "weighted", "k": 6})
        assert sorted(h["_id"] for h in blended.json()["hits"]) == [f"r{i:02d}" for i in range(0, 24, 4)]
        for body, status in (({"query": {"keywords": "\"*"}}, 400), ({"query": {"keywords": "a"}, "fusion": "x"}, 422),
                             ({"query": {"keywords": "a"}, "keyword_weight": 3}, 422)):
            response = http.post("/v1/collections/kw/search", json=body)
            assert response.status_code == status, (body, response.text)
        with serving(app) as url, lookalike.Client(url) as client:
            remote = client.collection("kw")
            assert ids(remote.search({"keywords": "cafe"})) == ["AB-123"]
            assert remote.search({"id": "r01", "keywords": "acme"}, k=6, keyword_weight=0.8)["hits"] == \
                db.collection("kw").search({"id": "r01", "keywords": "acme"}, k=6, keyword_weight=0.8)["hits"]
            with pytest.raises(BadRequest, match="no word"):
                remote.search({"keywords": "((("})


def test_command_line(data_dir, capsys):
    with lookalike.connect(data_dir) as db:
        _collection(db)
    assert main(["search", "-c", "kw", "--data", str(data_dir), "--keywords", "AB-123", "--json"]) == 0
    assert '"AB-123"' in capsys.readouterr().out
    assert main(["search", "-c", "kw", "--data", str(data_dir), "--id", "r01", "--keywords", "acme",
                 "--keyword-weight", "0.8", "-k", "6", "--json"]) == 0
    out = capsys.readouterr().out
    assert all(f'"r{i:02d}"' in out for i in range(0, 24, 4))


def test_milvus_answers_501_naming_the_reason(tmp_path):
    pytest.importorskip("milvus_lite")
    with lookalike.connect(str(tmp_path / "m.db")) as db:
        col = db.collection("c", create=True, model="none", dim=DIM, text_fields=["title"])
        col.upsert([{"_id": "a", "_vector": [1.0] * DIM, "title": "acme"}])
        with pytest.raises(NotImplementedYet, match="keyword"):
            col.search({"keywords": "acme"})


@pytest.fixture(scope="module")
def odd_http(tmp_path_factory):
    with lookalike.connect(tmp_path_factory.mktemp("odd-http"), allow_file=False) as db:
        db.collection("odd", create=True, model="none", dim=DIM, text_fields=["title"]).upsert(
            [{"_id": "a", "_vector": [1.0] * DIM, "title": 'NEAR AND OR "quoted" star* x^y'}])
        yield TestClient(create_app(db))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(words=ODD)
def test_odd_keywords_over_http_are_never_a_500(odd_http, words):
    response = odd_http.post("/v1/collections/odd/search", json={"query": {"id": "a", "keywords": words}})
    assert response.status_code in (200, 400), (words, response.text)
    if response.status_code == 400:
        assert response.json()["error"]["code"] == "bad_request"
