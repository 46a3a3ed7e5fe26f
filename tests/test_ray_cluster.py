"""`lookalike ingest --ray ADDRESS` on a Ray cluster of separate processes: a head node and a
worker node (1 CPU each) started by the test with `ray start` (lookalike/testing/ray_cluster.py).

Drivers run as their own processes, as a user's would: the CLI, and a script that kills the
worker node mid-ingest. Results must equal the single-process ingest's.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import lookalike
from lookalike.store.filters import MATCH_ALL

ray = pytest.importorskip("ray")
from lookalike.testing.ray_cluster import CLUSTER_ENV, Cluster, _children  # noqa: E402
from test_ray_ingest import N, catalog, check_against_reference, reference  # noqa: E402,F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    """A Ray head node for the module, in a private temp dir (Ray's socket paths must stay short)."""
    folder = Path(tempfile.mkdtemp(prefix="lkray", dir="/tmp"))
    head = Cluster(folder)
    yield head
    head.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def worker(cluster):
    """A worker node joined to the head for one test (stopped after, unless the test killed it)."""
    node = cluster.add_worker()
    yield node
    node.stop()
    cluster.workers.remove(node)


def env() -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **CLUSTER_ENV, "PYTHONPATH": str(ROOT)}


def run(args: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout, env=env())


def actor_nodes(cluster) -> dict:
    proc = run(["-m", "lookalike.testing.ray_cluster", "actors", cluster.address], timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_cli_ingest_on_two_nodes_equals_single_process(cluster, worker, catalog, reference, tmp_path):
    data = tmp_path / "data"
    proc = run(["-m", "lookalike.cli", "ingest", str(catalog), "-c", "items", "--data", str(data),
                "--ray", cluster.address, "--workers", "2", "--batch-size", "2", "--json"])
    assert proc.returncode == 1, proc.stderr[-3000:]  # the catalogue's two bad records
    out = json.loads(proc.stdout)
    assert [r["status"] for r in out["results"]] == ["inserted"] * N + ["error", "error"]
    with lookalike.connect(data) as db:
        col = db.collection("items")
        assert col.count() == N
        check_against_reference(col, reference)
    placed = actor_nodes(cluster)["actor_node_ports"]
    assert {cluster.head.node_manager_port, worker.node_manager_port} <= set(placed)  # both nodes embedded


def test_worker_node_killed_mid_ingest_loses_and_duplicates_nothing(cluster, worker, catalog, reference, tmp_path):
    data = tmp_path / "data"
    victim = [*_children(worker.proc.pid), worker.proc.pid]
    proc = run(["-m", "lookalike.testing.ray_cluster", "ingest", cluster.address, str(data), str(catalog),
                str(worker.node_manager_port), *map(str, victim)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    before, placed, out = lines[0]["written_before_kill"], lines[0]["actor_node_ports"], lines[-1]
    assert out["killed"] and worker.proc.wait(timeout=30) is not None
    assert before < N  # the node went down mid-run, with records still to embed
    assert worker.node_manager_port in placed  # an encoder actor was on the node when it was killed
    results = out["results"]
    assert [r["_id"] for r in results[:N]] == [f"item{i:02d}" for i in range(N)]
    assert [r["status"] for r in results[:N]] == ["inserted"] * N
    with lookalike.connect(data) as db:
        col = db.collection("items")
        assert col.count() == N
        assert sorted(col._store.ids_where(MATCH_ALL)) == sorted(reference["vectors"])
        check_against_reference(col, reference)
