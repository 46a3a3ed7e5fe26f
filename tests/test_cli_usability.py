"""A new user's mistakes and the command line's answers: no tracebacks, refusals that name the
problem, output that fits, and the HTTP operations the CLI lacked (issue 19)."""
from __future__ import annotations

import json
import os
import pty
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import lookalike
from lookalike import cli

ROOT = Path(__file__).resolve().parent.parent


def env() -> dict[str, str]:
    out = dict(os.environ)
    out["PYTHONPATH"] = str(ROOT) + (os.pathsep + out["PYTHONPATH"] if out.get("PYTHONPATH") else "")
    return out


def lookalike_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "lookalike.cli", *args]


@pytest.fixture(scope="module")
def shop(tmp_path_factory, pattern_catalog) -> Path:
    """A data folder with collection `shop` (24 pattern images, grouped by product_id)."""
    data = tmp_path_factory.mktemp("usability") / "data"
    with lookalike.connect(data) as db:
        col = db.collection("shop", create=True, group_field="product_id")
        records = [json.loads(line) for line in pattern_catalog.read_text().splitlines()]
        assert all(r["status"] == "inserted" for r in col.upsert(records, base_dir=pattern_catalog.parent))
    return data


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# -- no traceback -------------------------------------------------------------------------
def test_closed_output_pipe_is_quiet(shop):
    for args in (["search", "-c", "shop", "--id", "dots-red-square", "--json"],
                 ["ingest", str(shop.parent / "nothing.jsonl"), "-c", "shop", "--json"]):
        if args[0] == "ingest":
            (shop.parent / "nothing.jsonl").write_text(json.dumps({"_id": "v", "_vector": [0.0] * 3}) + "\n")
        line = " ".join(map(repr, lookalike_cmd(*args, "--data", str(shop)))) + " | true; echo ${PIPESTATUS[0]}"
        proc = subprocess.run(["bash", "-c", line], capture_output=True, text=True, env=env(), timeout=300)
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
        assert proc.stdout.strip() in ("141", "0", "1"), proc.stdout  # 141: the pipe closed before the answer


def test_backup_into_a_missing_folder_names_it(shop, capsys, tmp_path):
    code, _, err = run_main(capsys, "backup", "-c", "shop", str(tmp_path / "missing" / "dir" / "x.bak"),
                            "--data", str(shop))
    assert code == 2 and "missing/dir does not exist" in err and "Traceback" not in err


def test_serve_on_a_busy_port_says_so(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(lookalike_cmd("serve", "--data", str(tmp_path / "d"), "--port", str(port)),
                              capture_output=True, text=True, env=env(), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in proc.stderr and "--port" in proc.stderr
    assert "serving" not in proc.stderr and "Traceback" not in proc.stderr


def test_client_names_the_server_it_cannot_reach():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    client = lookalike.Client(f"http://127.0.0.1:{port}")
    with pytest.raises(lookalike.LookalikeError) as info:
        client.collections()
    assert f"http://127.0.0.1:{port}" in info.value.message and info.value.code == "unreachable"
    with pytest.raises(lookalike.LookalikeError):
        client.collection("shop", create=True)  # the PUT path too


# -- mistakes get answers -----------------------------------------------------------------
def test_group_by_false_means_no_grouping(shop, capsys):
    code, out, _ = run_main(capsys, "search", "-c", "shop", "--id", "dots-red-square", "-k", "8", "--group-by",
                            "false", "--json", "--data", str(shop))
    hits = json.loads(out)["hits"]
    assert code == 0 and all("_group" not in h for h in hits)
    assert len({h["product_id"] for h in hits}) < len(hits)  # several hits of one product: not grouped
    for word in ("none", "None"):
        _, out, _ = run_main(capsys, "search", "-c", "shop", "--id", "dots-red-square", "--group-by", word, "--json",
                             "--data", str(shop))
        assert all("_group" not in h for h in json.loads(out)["hits"])


@pytest.mark.parametrize("args, problem", [
    (["--group-by", "prodcut_id"], "--group-by: no record of collection 'shop' has field(s) prodcut_id"),
    (["--fields", "price,nosuch"], "--fields: no record of collection 'shop' has field(s) nosuch"),
    (["--boost", '[{"filter": {"color": "red"}}]'], "boost rule 1 has no 'weight'"),
])
def test_unknown_fields_and_weightless_boosts_are_refused(shop, capsys, args, problem):
    code, out, err = run_main(capsys, "search", "-c", "shop", "--id", "dots-red-square", *args, "--data", str(shop))
    assert code == 2 and problem in err and out == ""
    if "field" in problem:
        assert "known fields: color, pattern, price, product_id, shape, tags" in err


def test_fields_of_nested_and_engine_paths_are_accepted(shop, capsys):
    code, out, err = run_main(capsys, "search", "-c", "shop", "--id", "dots-red-square", "--fields", "price,_labels",
                              "--json", "--data", str(shop))
    assert code == 0, err
    assert all(set(h) <= {"_id", "_score", "_group", "price", "_labels"} for h in json.loads(out)["hits"])


def test_delete_names_the_ids_it_did_not_find(tmp_path, pattern_catalog, capsys):
    data = tmp_path / "d"
    with lookalike.connect(data) as db:
        db.collection("c", create=True, model="none", dim=3).upsert(
            [{"_id": i, "_vector": [1.0, float(n), 0.5]} for n, i in enumerate("abc")])
    code, out, err = run_main(capsys, "delete", "-c", "c", "a", "zz", "b", "yy", "--data", str(data))
    assert code == 1 and out.strip() == "deleted 2" and "not found, nothing deleted for: zz, yy" in err
    with lookalike.connect(data) as db:
        assert db.collection("c").count() == 1


def test_record_errors_say_where_and_no_bar_off_a_terminal(tmp_path):
    catalog = tmp_path / "cat.jsonl"
    lines = [{"_id": "a", "_vector": [1.0, 0.0, 0.0]}, {"_vector": [0.0, 1.0, 0.0]}, {"_id": "c", "_vector": [1.0]}]
    catalog.write_text("\n".join([json.dumps(lines[0]), "", json.dumps(lines[1]), "{broken", json.dumps(lines[2])])
                       + "\n")
    with lookalike.connect(tmp_path / "d") as db:
        db.collection("v", create=True, model="none", dim=3)
    proc = subprocess.run(lookalike_cmd("ingest", str(catalog), "-c", "v", "--data", str(tmp_path / "d")),
                          capture_output=True, text=True, env=env(), timeout=300)
    assert proc.returncode == 1, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "error: line 3: record has no '_id'" in errors, errors
    assert any(e.startswith("error: line 4: line 4 is not valid JSON") or e.startswith("error: line 4 is not valid")
               for e in errors), errors
    assert any(e.startswith("error: line 5: c: ") for e in errors), errors
    assert all(e.startswith("error: ") for e in errors), errors  # no progress bar between them


def test_record_error_lines_from_a_catalogue(tmp_path, pattern_catalog):
    folder = pattern_catalog.parent
    catalog = folder / "two-bad.jsonl"
    good = pattern_catalog.read_text().splitlines()[:2]
    catalog.write_text("\n".join([good[0], json.dumps({"_file": "img/x.jpg"}), good[1],
                                  json.dumps({"_id": "ghost", "_file": "img/none.jpg"})]) + "\n")
    proc = subprocess.run(lookalike_cmd("ingest", str(catalog), "-c", "lines", "--data", str(tmp_path / "d")),
                          capture_output=True, text=True, env=env(), timeout=300)
    errors = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1
    assert errors[0] == "error: line 2: record has no '_id'", errors
    assert errors[1].startswith("error: line 4: ghost: file not found"), errors
    assert len(errors) == 2  # nothing else on stderr: no bar when stderr is not a terminal


def test_ctrl_c_during_ingest_says_what_was_kept(tmp_path, capsys, monkeypatch):
    catalog = tmp_path / "vectors.jsonl"
    catalog.write_text("".join(json.dumps({"_id": f"r{i}", "_vector": [1.0, i / 100, 0.5]}) + "\n" for i in range(100)))
    data = tmp_path / "d"
    with lookalike.connect(data) as db:
        db.collection("v", create=True, model="none", dim=3)
    real = lookalike.Collection.upsert_iter

    def interrupted(self, records, **kwargs):  # Ctrl-C arrives after the first written batch
        for n, result in enumerate(real(self, records, **kwargs), 1):
            yield result
            if n == 32:
                raise KeyboardInterrupt
    monkeypatch.setattr(lookalike.Collection, "upsert_iter", interrupted)
    code, _, err = run_main(capsys, "ingest", str(catalog), "-c", "v", "--data", str(data), "--batch-size", "32")
    assert code == 130
    assert "32 records were written and are kept (32 inserted" in err and "Run the same command again" in err
    monkeypatch.setattr(lookalike.Collection, "upsert_iter", real)
    code, out, _ = run_main(capsys, "ingest", str(catalog), "-c", "v", "--data", str(data))
    assert code == 0 and "68 inserted, 0 updated, 32 unchanged" in out


# -- output people read --------------------------------------------------------------------
def test_hits_table_fits_80_columns(shop, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run_main(capsys, "search", "-c", "shop", "--id", "dots-red-square", "-k", "6", "--data", str(shop))
    assert code == 0
    lines = out.splitlines()
    assert max(map(len, lines)) <= 80, "\n".join(lines)
    hits = int(re.match(r"(\d+) hits in", lines[-1]).group(1))
    assert hits >= 3 and len(lines) == 1 + hits + 1  # header, one line per hit, summary: nothing wrapped
    assert re.search(r"^\s*1\s+\S+-\S+-\S+\s+0\.\d{4}", lines[1]), lines[1]


def test_match_column_and_no_hits(shop, capsys, pattern_catalog):
    image = pattern_catalog.parent / "img" / "dots-red-square.jpg"
    code, out, _ = run_main(capsys, "match", "-c", "shop", "--image", str(image), "--data", str(shop))
    assert code == 0 and re.search(r"^\s*#\s+_id\s+score\s+match", out, re.M), out
    assert re.search(r"dots-red-square\s+1\.0000\s+exact", out), out
    code, out, _ = run_main(capsys, "search", "-c", "shop", "--id", "dots-red-square", "--filter",
                            '{"price": {"$gt": 1000}}', "--data", str(shop))
    assert code == 0 and out.strip() == "no hits"


def test_took_ms_leaves_model_loading_out(shop, capsys, monkeypatch, pattern_catalog):
    import time

    import lookalike.query.engine as engine  # where a collection's model is loaded
    real = engine.get_encoder
    loaded: list[str] = []

    def slow_first_load(name):  # as a cold process loads the weights: seconds
        if not loaded:
            time.sleep(1.5)
            loaded.append(name)
        return real(name)
    monkeypatch.setattr(engine, "get_encoder", slow_first_load)
    image = pattern_catalog.parent / "img" / "dots-blue-circle.jpg"
    code, out, _ = run_main(capsys, "search", "-c", "shop", "--image", str(image), "--json", "--data", str(shop))
    assert code == 0 and loaded
    assert json.loads(out)["took_ms"] < 1500


def test_collections_header_and_get_pretty_on_a_terminal(shop, capsys):
    code, out, _ = run_main(capsys, "collections", "--data", str(shop))
    assert out.splitlines()[0].split() == ["collection", "records", "model"]
    assert out.splitlines()[1].split()[:2] == ["shop", "24"]
    leader, follower = pty.openpty()
    proc = subprocess.run(lookalike_cmd("get", "-c", "shop", "dots-red-square", "--data", str(shop)),
                          stdout=follower, stderr=subprocess.PIPE, env=env(), timeout=120)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    text = b"".join(chunks).decode().replace("\r\n", "\n")
    assert proc.returncode == 0 and text.startswith("{\n  \"_id\": \"dots-red-square\",")
    code, out, _ = run_main(capsys, "get", "-c", "shop", "dots-red-square", "--data", str(shop))
    assert len(out.strip().splitlines()) == 1  # piped: one line of JSON


# -- parity with HTTP ----------------------------------------------------------------------
def test_search_by_vector_ids_negative_weight_same_label(shop, capsys):
    with lookalike.connect(shop) as db:
        vector = db.collection("shop")._store.vectors(["dots-red-square"])["dots-red-square"]
    code, out, _ = run_main(capsys, "search", "-c", "shop", "--vector", json.dumps([float(x) for x in vector]),
                            "-k", "3", "--group-by", "none", "--json", "--data", str(shop))
    hits = json.loads(out)["hits"]
    assert code == 0 and hits[0]["_id"] == "dots-red-square" and hits[0]["_score"] > 0.999
    code, out, _ = run_main(capsys, "search", "-c", "shop", "--ids", "dots-red-square", "dots-blue-square", "-k", "24",
                            "--group-by", "none", "--json", "--data", str(shop))
    ids = [h["_id"] for h in json.loads(out)["hits"]]
    assert code == 0 and "dots-red-square" not in ids and "dots-blue-square" not in ids and len(ids) == 22
    base = ["search", "-c", "shop", "--id", "dots-red-square", "--negative-id", "stripes-red-square", "-k", "5",
            "--json", "--data", str(shop)]
    weak = json.loads(run_main(capsys, *base, "--negative-weight", "0.1")[1])["hits"]
    strong = json.loads(run_main(capsys, *base, "--negative-weight", "2")[1])["hits"]
    assert [h["_score"] for h in weak] != [h["_score"] for h in strong]
    code, out, err = run_main(capsys, "search", "-c", "shop", "--id", "dots-red-square", "--same-label", "--json",
                              "--data", str(shop))
    assert code == 0, err
    top = {h["_labels"][0]["label"] for h in json.loads(out)["hits"]}
    assert len(top) <= 1


def test_recommend_offset_and_fields(shop, capsys):
    args = ["recommend", "-c", "shop", "--id", "dots-red-square", "-k", "4", "--json", "--data", str(shop)]
    first = json.loads(run_main(capsys, *args)[1])["hits"]
    paged = json.loads(run_main(capsys, *args, "--offset", "2", "--fields", "price")[1])["hits"]
    assert [h["_id"] for h in paged[:2]] == [h["_id"] for h in first[2:4]]
    assert all(set(h) == {"_id", "_score", "_group", "price"} for h in paged)
    ungrouped = json.loads(run_main(capsys, *args, "-k", "20", "--group-by", "false")[1])["hits"]
    assert len(ungrouped) > len({h["product_id"] for h in ungrouped}) and all("_group" not in h for h in ungrouped)
    code, _, err = run_main(capsys, *args, "--group-by", "colour")
    assert code == 2 and "colour" in err


def test_info_drop_single_image_and_export_round_trip(tmp_path, pattern_catalog, capsys):
    data = tmp_path / "d"
    image = pattern_catalog.parent / "img" / "stripes-blue-circle.jpg"
    code, out, err = run_main(capsys, "ingest", str(image), "-c", "one", "--data", str(data))
    assert code == 0 and "1 inserted" in out, err
    with lookalike.connect(data) as db:
        assert db.collection("one").get("stripes-blue-circle")["path"] == "stripes-blue-circle.jpg"
    code, out, _ = run_main(capsys, "ingest", str(pattern_catalog), "-c", "shop", "--group-field", "product_id",
                            "--data", str(data))
    assert code == 0
    code, out, _ = run_main(capsys, "info", "-c", "shop", "--data", str(data))
    assert re.search(r"^records\s+24$", out, re.M) and re.search(r"^model\s+\S+ \(\d+-d, cosine\)", out, re.M)
    assert re.search(r"^group_field\s+product_id$", out, re.M) and re.search(r"^data folder\s+[\d.]+ [KMG]?B", out, re.M)

    export = tmp_path / "shop.jsonl"
    code, _, err = run_main(capsys, "export", "-c", "shop", str(export), "--data", str(data))
    assert code == 0 and "exported 24 records" in err
    code, out, err = run_main(capsys, "ingest", str(export), "-c", "copy", "--group-field", "product_id",
                              "--data", str(data))
    assert code == 0 and "24 inserted" in out, err
    with lookalike.connect(data) as db:
        original, copy = db.collection("shop"), db.collection("copy")
        for rid in ("dots-red-square", "stripes-green-circle"):
            a = original.search({"id": rid}, k=10, fields=["price"])["hits"]
            b = copy.search({"id": rid}, k=10, fields=["price"])["hits"]
            assert [(h["_id"], h["price"]) for h in a] == [(h["_id"], h["price"]) for h in b]
            assert [h["_score"] for h in a] == pytest.approx([h["_score"] for h in b], abs=1e-5)
        assert copy.get("dots-red-square")["tags"] == original.get("dots-red-square")["tags"]

    code, _, err = run_main(capsys, "drop", "-c", "copy", "--data", str(data))
    assert code == 2 and "add --yes" in err
    code, out, _ = run_main(capsys, "drop", "-c", "copy", "--yes", "--data", str(data))
    assert code == 0 and out.strip() == "dropped copy (24 records)"
    with lookalike.connect(data) as db:
        assert {c["name"] for c in db.collections()} == {"one", "shop"}
