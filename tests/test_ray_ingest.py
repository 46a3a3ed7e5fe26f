"""Distributed ingestion on Ray Data (a local 2-CPU Ray instance shared by the module).

The same vectors as the single-process pipeline; restartable (what is stored unchanged is
skipped); a worker process killed mid-run loses and duplicates nothing.
"""
from __future__ import annotations

import base64
import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

import lookalike
from lookalike.cli import main
from lookalike.store.filters import MATCH_ALL
from lookalike.sample import COLORS, draw_item

ray = pytest.importorskip("ray")
from lookalike.ingest.ray import ray_ingest  # noqa: E402

N = 16


@pytest.fixture(scope="module")
def ray_local():
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        except RuntimeError:  # Ray's start-up can time out on a heavily loaded machine: once more
            ray.shutdown()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """N small drawn images in a JSONL catalogue, plus two bad records at the end."""
    folder = tmp_path_factory.mktemp("ray-catalog")
    colors = list(COLORS.values())
    lines = []
    for i in range(N):
        name = f"img/item{i:02d}.jpg"
        (folder / "img").mkdir(exist_ok=True)
        draw_item(("stripes", "dots")[i % 2], colors[i % len(colors)], seed=500 + i, size=128 + 8 * (i % 4),
                  shape=("square", "circle")[i % 2]).save(folder / name, quality=90)
        lines.append({"_id": f"item{i:02d}", "_file": name, "n": i, "kind": ("stripes", "dots")[i % 2]})
    lines.append({"_id": "missing", "_file": "img/nope.jpg"})
    lines.append({"n": 1})  # no _id
    path = folder / "catalog.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def records(catalog: Path) -> list[dict]:
    return [json.loads(line) for line in catalog.read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(catalog, tmp_path_factory) -> dict:
    """Vectors and stored records from the single-process pipeline."""
    with lookalike.connect(tmp_path_factory.mktemp("ref")) as db:
        col = db.collection("items", create=True)
        col.upsert(records(catalog)[:N], base_dir=catalog.parent)
        ids = [f"item{i:02d}" for i in range(N)]
        return {"vectors": col._store.vectors(ids), "docs": dict(zip(ids, col._store.get(ids)))}


def check_against_reference(col, reference: dict) -> None:
    ids = sorted(reference["vectors"])
    got = col._store.vectors(ids)
    assert sorted(got) == ids
    for i in ids:
        np.testing.assert_allclose(got[i], reference["vectors"][i], atol=2e-5)
    docs = dict(zip(ids, col._store.get(ids)))
    for i in ids:
        assert docs[i]["_colors"] == reference["docs"][i]["_colors"]
        for key in ("_fingerprint", "_pixel_hash"):  # near-duplicate matching works on Ray-ingested records
            assert docs[i][key] == reference["docs"][i][key]
        assert [lab["label"] for lab in docs[i]["_labels"]] == [lab["label"] for lab in reference["docs"][i]["_labels"]]
        assert {k: v for k, v in docs[i].items() if not k.startswith("_")} == \
            {k: v for k, v in reference["docs"][i].items() if not k.startswith("_")}


def test_same_vectors_as_single_process_and_unchanged_rerun(ray_local, catalog, reference, tmp_path):
    with lookalike.connect(tmp_path / "data") as db:
        col = db.collection("items", create=True)
        seen: list[dict] = []
        image = (catalog.parent / "img" / "item00.jpg").read_bytes()
        recs = records(catalog) + [{"_id": "b64", "_base64": base64.b64encode(image).decode(), "n": 0}]
        results = ray_ingest(col, recs, base_dir=catalog.parent, batch_size=4, on_batch=seen.extend)
        assert [r["_id"] for r in results[:N]] == [f"item{i:02d}" for i in range(N)]
        assert [r["status"] for r in results[:N]] == ["inserted"] * N
        assert results[N]["status"] == "error" and "not found" in results[N]["error"]
        assert results[N + 1] == {"_id": None, "status": "error", "error": "record has no '_id'"}
        assert results[N + 2] == {"_id": "b64", "status": "inserted"}
        assert sorted(r["status"] for r in seen) == sorted(r["status"] for r in results)  # progress saw each once
        assert col.count() == N + 1
        check_against_reference(col, reference)
        np.testing.assert_allclose(col._store.vectors(["b64"])["b64"], reference["vectors"]["item00"], atol=2e-5)
        # metadata-only changes keep the vector (settled without an actor); the rest is unchanged
        again = records(catalog)[:N]
        again[3]["n"] = 333
        again[5] = {"_id": "item05", "n": 55}  # no image source: update the metadata only
        results = ray_ingest(col, again, base_dir=catalog.parent, batch_size=4)
        statuses = [r["status"] for r in results]
        assert statuses[3] == statuses[5] == "updated" and statuses.count("unchanged") == N - 2
        assert col.get("item03")["n"] == 333
        assert col.get("item05")["n"] == 55 and col.get("item05")["_colors"] == reference["docs"]["item05"]["_colors"]
        for rid in ("item03", "item05"):
            np.testing.assert_allclose(col._store.vectors([rid])[rid], reference["vectors"][rid], atol=2e-5)
        results = ray_ingest(col, [{"_id": "new-without-image", "n": 1}])
        assert results[0]["status"] == "error" and "no image source" in results[0]["error"]


def test_interrupted_run_resumes_without_redoing_work(ray_local, catalog, reference, tmp_path):
    with lookalike.connect(tmp_path / "data") as db:
        col = db.collection("items", create=True)
        written: list[dict] = []

        def interrupt(batch: list[dict]) -> None:
            written.extend(batch)
            if len([r for r in written if r["status"] == "inserted"]) >= 4:
                raise KeyboardInterrupt  # the driver dies after a few writes

        with pytest.raises(KeyboardInterrupt):
            ray_ingest(col, records(catalog)[:N], base_dir=catalog.parent, batch_size=4, on_batch=interrupt)
        done = {r["_id"] for r in written if r["status"] == "inserted"}
        assert 4 <= col.count() < N and col.count() == len(done)
        results = ray_ingest(col, records(catalog)[:N], base_dir=catalog.parent, batch_size=4)
        for r in results:
            assert r["status"] == ("unchanged" if r["_id"] in done else "inserted"), r
        assert col.count() == N
        check_against_reference(col, reference)


def _our_actor_pids() -> list[int]:
    """Pids of this Ray instance's encoder actors (children of our raylet; titles set by Ray)."""
    node = ray._private.worker._global_node
    raylet = node.all_processes["raylet"][0].process.pid
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if "MapWorker" in cmdline and "Embedder" in cmdline and ppid == raylet:
            pids.append(int(entry.name))
    return pids


def test_worker_killed_mid_run_loses_and_duplicates_nothing(ray_local, catalog, reference, tmp_path):
    pytest.importorskip("pymilvus")
    with lookalike.connect(str(tmp_path / "milvus.db")) as db:  # and the records go to Milvus Lite
        col = db.collection("items", create=True)
        killed: list[int] = []
        seen: list[dict] = []

        def kill_once(batch: list[dict]) -> None:
            seen.extend(batch)
            if not killed:
                pids = _our_actor_pids()
                assert pids, "no encoder actor process found"
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        results = ray_ingest(col, records(catalog)[:N], base_dir=catalog.parent, batch_size=2, workers=2,
                             on_batch=kill_once)
        assert killed
        assert [r["_id"] for r in results] == [f"item{i:02d}" for i in range(N)]
        assert [r["status"] for r in results] == ["inserted"] * N
        assert sorted(r["_id"] for r in seen) == sorted(r["_id"] for r in results)  # each reported once
        assert col.count() == N
        assert sorted(col._store.ids_where(MATCH_ALL)) == sorted(reference["vectors"])
        check_against_reference(col, reference)


def test_cli_ingest_ray_with_store_flag(ray_local, catalog, reference, tmp_path, capsys):
    store = tmp_path / "data"
    code = main(["ingest", str(catalog), "-c", "items", "--store", str(store), "--ray", "--workers", "2",
                 "--batch-size", "4", "--json"])
    raw = capsys.readouterr().out
    try:
        out = json.loads(raw)
    except json.JSONDecodeError:  # say what else reached stdout (it must carry only the JSON)
        pytest.fail(f"--json output is not JSON: {raw[:3000]!r}")
    assert code == 1  # the two bad records
    assert [r["status"] for r in out["results"]] == ["inserted"] * N + ["error", "error"]
    with lookalike.connect(store) as db:
        check_against_reference(db.collection("items"), reference)
    assert main(["ingest", str(catalog), "-c", "items", "--store", str(store), "--ray", "--workers", "0"]) == 2


def test_text_fields_get_text_vectors_and_the_same_hashes(ray_local, catalog, tmp_path):
    """A Ray ingest makes the text vectors the single-process one makes, and the same content hashes."""
    with lookalike.connect(tmp_path / "data") as db:
        col = db.collection("texts", create=True, text_fields=["kind"])
        recs = records(catalog)[:N]
        assert {r["status"] for r in ray_ingest(col, recs, base_dir=catalog.parent, batch_size=8)} == {"inserted"}
        hits = col.search({"text": "stripes"}, k=N // 2)["hits"]
        assert {h["_id"] for h in hits} == {f"item{i:02d}" for i in range(0, N, 2)}  # the striped half
        assert {r["status"] for r in col.upsert(recs, base_dir=catalog.parent)} == {"unchanged"}
