"""The command line: ingest a folder and a catalogue, search, exit codes, --json shapes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lookalike.models import DEFAULT_MODEL
from lookalike.sample import COLORS, draw_item


def run(*args: str, data: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookalike.cli", *args, "--data", str(data)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def ingested(tmp_path_factory, pattern_catalog):
    data = tmp_path_factory.mktemp("cli") / "data"
    # one broken line, one missing file, one corrupt image among the good ones
    folder = pattern_catalog.parent
    (folder / "img" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 broken")
    catalog = folder / "with-errors.jsonl"
    lines = pattern_catalog.read_text().splitlines()
    lines += ['{"_id": "broken json', json.dumps({"_id": "ghost", "_file": "img/none.jpg"}),
              json.dumps({"_id": "corrupt", "_file": "img/corrupt.jpg"}), json.dumps({"_file": "img/x.jpg"})]
    catalog.write_text("\n".join(lines) + "\n")
    proc = run("ingest", str(catalog), "-c", "shop", "--group-field", "product_id", "--json", data=data)
    return data, proc


def test_ingest_reports_each_bad_record_and_goes_on(ingested):
    data, proc = ingested
    assert proc.returncode == 1, proc.stderr  # some records failed
    results = json.loads(proc.stdout)["results"]
    assert len(results) == 28
    assert sum(r["status"] == "inserted" for r in results) == 24
    errors = {r["_id"]: r["error"] for r in results if r["status"] == "error" and r["_id"]}
    anonymous = [r["error"] for r in results if r["status"] == "error" and not r["_id"]]
    assert any("line 25 is not valid JSON" in e for e in anonymous), anonymous
    assert any("no '_id'" in e for e in anonymous), anonymous
    assert "file not found" in errors["ghost"]
    assert "corrupt or truncated" in errors["corrupt"] or "not an image" in errors["corrupt"]


def test_reingest_is_unchanged(ingested, pattern_catalog):
    data, _ = ingested
    proc = run("ingest", str(pattern_catalog), "-c", "shop", data=data)
    assert proc.returncode == 0, proc.stderr
    assert "24 unchanged" in proc.stdout


def test_search_json_shape_and_people_output(ingested):
    data, _ = ingested
    proc = run("search", "-c", "shop", "--id", "stripes-red-square", "-k", "3", "--json",
               "--filter", '{"price": {"$lt": 40}}', data=data)
    assert proc.returncode == 0, proc.stderr
    body = json.loads(proc.stdout)
    assert set(body) == {"hits", "took_ms"} and len(body["hits"]) == 3
    assert all(h["price"] < 40 and "_group" in h for h in body["hits"])
    human = run("search", "-c", "shop", "--id", "stripes-red-square", "-k", "3", data=data)
    assert "hits in" in human.stdout


def test_get_delete_collections(ingested):
    data, _ = ingested
    got = json.loads(run("get", "-c", "shop", "dots-red-square", data=data).stdout)
    assert got["_id"] == "dots-red-square" and got["_labels"]
    cols = json.loads(run("collections", "--json", data=data).stdout)
    assert cols == {"collections": [{"name": "shop", "count": 24, "model": DEFAULT_MODEL}]}


def test_usage_errors_exit_2(ingested):
    data, _ = ingested
    bad_filter = run("search", "-c", "shop", "--id", "x", "--filter", "{not json", data=data)
    assert bad_filter.returncode == 2 and "--filter is not valid JSON" in bad_filter.stderr
    unknown_op = run("search", "-c", "shop", "--id", "dots-red-square", "--filter", '{"a": {"$bad": 1}}', data=data)
    assert unknown_op.returncode == 2 and "$bad" in unknown_op.stderr
    missing = run("search", "-c", "nope", "--id", "x", data=data)
    assert missing.returncode == 2 and "not found" in missing.stderr
    two = run("search", "-c", "shop", "--id", "x", "--text", "y", data=data)
    assert two.returncode == 2 and "exactly one" in two.stderr


def test_ingest_folder_ids_are_relative_paths(tmp_path):
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    draw_item("stripes", COLORS["red"], seed=1).save(folder / "a.jpg")
    draw_item("dots", COLORS["blue"], seed=2).save(folder / "sub" / "b.png")
    (folder / "notes.txt").write_text("not an image")
    data = tmp_path / "data"
    proc = run("ingest", str(folder), "-c", "photos", "--json", data=data)
    assert proc.returncode == 0, proc.stderr
    assert [r["_id"] for r in json.loads(proc.stdout)["results"]] == ["a", "sub/b"]
    rec = json.loads(run("get", "-c", "photos", "sub/b", data=data).stdout)
    assert rec["path"] == "sub/b.png"
    gone = run("delete", "-c", "photos", "a", "--json", data=data)
    assert json.loads(gone.stdout) == {"deleted": 1}


def test_ingest_relative_folder_from_its_parent(tmp_path):
    """The README's first line: `lookalike ingest ./photos -c photos`, run beside the folder."""
    folder = tmp_path / "photos"
    folder.mkdir()
    draw_item("stripes", COLORS["red"], seed=1).save(folder / "brick.jpg")
    proc = subprocess.run([sys.executable, "-m", "lookalike.cli", "ingest", "./photos", "-c", "photos", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [r["status"] for r in json.loads(proc.stdout)["results"]] == ["inserted"]


def test_demo_runs_without_serving(tmp_path):
    proc = run("demo", "--no-serve", data=tmp_path / "demo")
    assert proc.returncode == 0, proc.stderr
    assert "ingested 50 sample records" in proc.stdout and "hits in" in proc.stdout
