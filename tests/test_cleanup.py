"""Duplicate clean-up: the report's suggested keeper (resolution, file size, metadata), its JSONL/CSV
export, tagging without re-embedding and resolving a cluster, through Python, HTTP, the client,
the command line and the web page."""
from __future__ import annotations

import base64
import csv
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

import lookalike
from lookalike.cli import main
from lookalike.errors import BadRequest, NotFound
from lookalike.query import cleanup
from lookalike.sample import COLORS, draw_item
from lookalike.server import create_app
from lookalike.testing.servers import serving

from conftest import jpeg_bytes
from test_web import Page, browser  # noqa: F401  (fixture)

ADMIN, SEARCH = "cleanup-admin-key-0123456789", "cleanup-search-key-012345678"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def copies() -> list[dict]:
    """One picture four times (big, the same size smaller file, half size with more metadata,
    big again with the most metadata but a smaller file) and an unrelated one."""
    orig = draw_item("stripes", COLORS["purple"], seed=31, size=400)
    return [{"_id": "big", "_base64": b64(jpeg_bytes(orig, 92)), "title": "stripes"},
            {"_id": "big-low", "_base64": b64(jpeg_bytes(orig, 40)), "title": "stripes", "brand": "b", "sku": "1"},
            {"_id": "half", "_base64": b64(jpeg_bytes(orig.resize((200, 200)), 92)), "title": "t", "brand": "b",
             "sku": "2", "size": "M"},
            {"_id": "other", "_base64": b64(jpeg_bytes(draw_item("dots", COLORS["orange"], seed=3), 90))}]


@pytest.fixture
def col(db):
    c = db.collection("dups", create=True, text_fields=["title", "note"])
    assert {r["status"] for r in c.upsert(copies())} == {"inserted"}
    return c


def test_ingest_keeps_the_original_size_and_file_size(col):
    image = col.get("half")["_image"]
    assert (image["width"], image["height"], image["format"]) == (200, 200, "JPEG")
    assert image["bytes"] == len(base64.b64decode(copies()[2]["_base64"]))
    refused = col.upsert([{"_id": "x", "_vector": [0.5] * col.settings.dim, "_image": {"width": 1}}])[0]
    assert refused["status"] == "error" and "computed by the engine" in refused["error"]


def test_report_suggests_the_best_copy_and_says_why(col):
    report = col.duplicates_report()["clusters"]
    assert len(report) == 1
    cluster = report[0]
    assert cluster["keeper"] == "big" and "largest file" in cluster["reason"]
    members = cluster["members"]
    assert [m["_id"] for m in members] == ["big", "big-low", "half"]  # keeper first, then by the same rule
    assert [m["keep"] for m in members] == [True, False, False]
    assert members[2]["width"] == 200 and members[1]["fields"] == 3
    # resolution wins over file size and metadata; metadata breaks a tie of both
    facts = [cleanup.member_facts(i, d) for i, d in (
        ("a", {"_image": {"width": 10, "height": 10, "bytes": 900}, "x": 1, "y": 2}),
        ("b", {"_image": {"width": 20, "height": 10, "bytes": 100}}),
        ("c", {"_image": {"width": 20, "height": 10, "bytes": 100}, "x": 1}),
        ("d", {"x": 1, "y": 2, "z": 3}))]
    assert [f["_id"] for f in sorted(facts, key=cleanup._rank)] == ["c", "b", "a", "d"]


def test_tag_changes_metadata_only(col):
    vector_before = col._store.raw_vectors(["half"])["half"]
    thumb_before = col.thumbnail("half")
    hits_before = col.search({"id": "other"}, k=5)["hits"]
    result = col.tag(["half", "nope"], {"duplicate_of": "big", "note": "acme copy", "size": None})
    assert result == {"tagged": 1, "missing": ["nope"]}
    doc = col.get("half")
    assert doc["duplicate_of"] == "big" and "size" not in doc and doc["brand"] == "b"
    assert doc["_image"]["width"] == 200 and doc["_labels"]  # computed fields stay
    assert np.array_equal(col._store.raw_vectors(["half"])["half"], vector_before)
    assert col.thumbnail("half") == thumb_before
    assert [h["_id"] for h in col.search({"id": "other"}, k=5)["hits"]] == [h["_id"] for h in hits_before]
    assert [h["_id"] for h in col.search({"keywords": "acme"})["hits"]] == ["half"]  # text_fields re-indexed
    assert [h["_id"] for h in col.search({"text": "acme copy"}, k=1)["hits"]] == ["half"]  # text vector redone
    assert col.duplicates()["clusters"] == [["big", "big-low", "half"]]  # still found as a copy
    before = col.get("big")
    for ids, fields, message in ((["big"], {"_id": "x"}, "plain metadata"), (["big"], {}, "non-empty"),
                                 (["big"], {"a.b": 1}, "plain metadata"), (["big"], {"x": float("nan")}, "NaN"),
                                 ([], {"x": 1}, "non-empty list"), (["big"], "x", "non-empty object")):
        with pytest.raises(BadRequest, match=message):
            col.tag(ids, fields)
    assert col.get("big") == before


def test_resolve_keeps_one_and_deletes_or_tags_the_others(col):
    with pytest.raises(NotFound, match="nothing changed"):
        col.resolve("typo", ["big", "big-low", "half"])
    assert col.count() == 4
    for kwargs, message in (({"action": "burn"}, "action"), ({"fields": {"x": 1}}, "'fields' go with")):
        with pytest.raises(BadRequest, match=message):
            col.resolve("big", ["half"], **kwargs)
    with pytest.raises(BadRequest, match="only the record to keep"):
        col.resolve("big", ["big"])
    assert col.resolve("big", ["half", "big"], action="tag") == {"kept": "big", "tagged": 1, "missing": []}
    assert col.get("half")["duplicate_of"] == "big" and "duplicate_of" not in col.get("big")
    assert col.resolve("big", ["big-low", "half", "gone"]) == {"kept": "big", "deleted": 2, "missing": ["gone"]}
    assert col.count() == 2 and col.duplicates()["clusters"] == []


def test_export_jsonl_and_csv(data_dir, capsys):
    with lookalike.connect(data_dir) as db:
        db.collection("dups", create=True).upsert(copies())
    out = data_dir.parent / "report.jsonl"
    assert main(["duplicates", "-c", "dups", "--data", str(data_dir), "--export", str(out)]) == 0
    assert "1 clusters, 2 copies" in capsys.readouterr().out
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 1 and lines[0]["keeper"] == "big" and len(lines[0]["members"]) == 3
    table = data_dir.parent / "report.csv"
    assert main(["duplicates", "-c", "dups", "--data", str(data_dir), "--export", str(table), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"clusters": 1, "removable": 2, "file": str(table)}
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert [(r["_id"], r["keep"], r["width"]) for r in rows] == [("big", "true", "400"), ("big-low", "false", "400"),
                                                                  ("half", "false", "200")]
    assert main(["duplicates", "-c", "dups", "--data", str(data_dir), "--export", str(data_dir.parent / "r.xlsx")]) == 2
    assert ".jsonl or .csv" in capsys.readouterr().err
    assert not (data_dir.parent / "r.xlsx").exists()


def test_over_http_and_through_the_client(tmp_path):
    with lookalike.connect(tmp_path / "d", allow_file=False) as db:
        db.collection("dups", create=True).upsert(copies())
        app = create_app(db, admin_key=ADMIN, search_key=SEARCH)
        http = TestClient(app)
        search = {"Authorization": f"Bearer {SEARCH}"}
        admin = {"Authorization": f"Bearer {ADMIN}"}
        report = http.get("/v1/collections/dups/duplicates/report", headers=search)
        assert report.status_code == 200 and report.json()["clusters"][0]["keeper"] == "big"
        assert http.get("/v1/collections/dups/duplicates/report?threshold=2", headers=search).status_code == 400
        body = {"keep": "big", "others": ["big-low", "half"], "action": "tag"}
        assert http.post("/v1/collections/dups/duplicates/resolve", json=body, headers=search).status_code == 403
        assert http.post("/v1/collections/dups/records/tag", json={"ids": ["big"], "fields": {"x": 1}},
                         headers=search).status_code == 403
        tagged = http.post("/v1/collections/dups/duplicates/resolve", json=body, headers=admin)
        assert tagged.status_code == 200 and tagged.json() == {"kept": "big", "tagged": 2, "missing": []}
        bad = http.post("/v1/collections/dups/records/tag", json={"ids": ["big"], "fields": {"_x": 1}}, headers=admin)
        assert bad.status_code == 400 and "plain metadata" in bad.json()["error"]["message"]
        assert http.post("/v1/collections/dups/duplicates/resolve", json={**body, "action": "x"},
                         headers=admin).status_code == 422
        with serving(app) as url, lookalike.Client(url, key=ADMIN) as client:
            remote = client.collection("dups")
            assert remote.duplicates_report()["clusters"] == db.collection("dups").duplicates_report()["clusters"]
            assert remote.tag(["other"], {"note": "n"}) == {"tagged": 1, "missing": []}
            assert remote.resolve("big", ["big-low", "half"]) == {"kept": "big", "deleted": 2, "missing": []}
            with pytest.raises(NotFound):
                remote.resolve("nope", ["big"])
        assert db.collection("dups").count() == 2 and db.collection("dups").get("other")["note"] == "n"


def test_page_resolves_a_cluster(browser, tmp_path):  # noqa: F811
    with lookalike.connect(tmp_path / "d", allow_file=False) as db:
        db.collection("dups", create=True).upsert(copies())
        with serving(create_app(db, admin_key=ADMIN, search_key=SEARCH)) as url:
            tab = Page(browser, url, key=SEARCH)
            try:
                tab.open("dups")
                tab.page.click("#dups-go")
                tab.page.wait_for_selector("#clusters .dup-cluster")
                keep = tab.page.locator("#clusters input[type=radio]:checked").evaluate("r => r.value")
                assert keep == "big"
                tab.page.on("dialog", lambda d: d.accept())
                tab.page.check('#clusters input[type=radio][value="half"]')
                tab.page.click("#clusters .dup-delete")  # the search key may not delete: a clear message
                tab.page.wait_for_function("document.querySelector('.dup-result').textContent.length > 0")
                assert "may not" in tab.page.inner_text(".dup-result") and db.collection("dups").count() == 4
                tab.page.evaluate(f"sessionStorage.setItem('lookalike.key', '{ADMIN}')")
                tab.page.click("#clusters .dup-tag")
                tab.page.wait_for_function("document.querySelector('.dup-result').textContent.startsWith('Kept')")
                assert db.collection("dups").get("big")["duplicate_of"] == "half"
                assert db.collection("dups").get("big-low")["duplicate_of"] == "half"
                tab.shot("30-duplicates-resolved", full_page=False)
                tab.page.click("#dups-go")  # again: now delete the others of the ticked keeper
                tab.page.wait_for_selector("#clusters .dup-cluster")
                tab.page.check('#clusters input[type=radio][value="half"]')
                tab.page.click("#clusters .dup-delete")
                tab.page.wait_for_function("document.querySelector('.dup-result').textContent.startsWith('Kept')")
                assert tab.page.locator("#clusters .dup-cluster .card").evaluate_all(
                    "cs => cs.map(c => c.dataset.id)") == ["half"]
                col = db.collection("dups")
                assert col.count() == 2 and sorted(r["_id"] for r in col.records()["records"]) == ["half", "other"]
                assert [e for e in tab.errors if "403" not in e] == []
            finally:
                tab.close()
