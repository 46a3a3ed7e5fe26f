"""Beyond one machine, measured on one: Ray ingest vs one process, Milvus (Lite, server) vs the embedded store.

Run: python bench/scale.py [--images 128] [--size 384] [--vectors 100000] [--dim 256] [--queries 200]

Ingest: the same generated JPEGs into a fresh embedded store by
- one process (`Collection.upsert`: threads decode, the encoder batches on all cores),
- `ray_ingest` with 1 and 2 encoder actors on a local Ray instance (`ray.init(num_cpus=2)`),
- `ray_ingest` with 2 actors on a two-node Ray cluster (a head and a worker node, 1 CPU each,
  separate `ray start` processes: lookalike/testing/ray_cluster.py), from a driver process of its own.
Ray's wall time includes starting the actors and loading one encoder per actor (each run
starts its own actor pool); Ray's own start-up is reported apart, and "1st write s" (when
the first batch reached the store) shows the fixed start-up cost.

Search: the same random vectors in the embedded store, in Milvus Lite (`./x.db`) and in a Milvus
standalone server started here (package `milvus`, lookalike/testing/milvus_server.py), FLAT
index, metric IP: all exact; load rate, latency per query (p50/p99) without and with a filter,
through the Python API, and whether each returns the embedded store's ids in the same order.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# This folder holds scripts that could be named like standard modules: keep it off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lookalike  # noqa: E402
from lookalike.testing.photos import photo_like  # noqa: E402


def make_images(folder: Path, n: int, size: int) -> list[dict]:
    records = []
    for i in range(n):
        path = folder / f"img{i:05d}.jpg"
        photo_like(i, size).save(path, "JPEG", quality=90)
        records.append({"_id": f"img{i:05d}", "_file": str(path), "n": i})
    return records


class FirstWrite:
    """Progress callback remembering when the first batch was written (fixed start-up shows there)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None

    def __call__(self, batch: list[dict]) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.start


def ingest_rows(records: list[dict], work: Path) -> list[tuple[str, float, float, str]]:
    """(pipeline, wall s, s until the first batch was written, note) per pipeline."""
    import ray

    from lookalike.ingest.ray import ray_ingest

    rows = []
    with lookalike.connect(work / "single") as db:
        col = db.collection("bench", create=True)
        col.encoder  # the model loaded before timing, as in a long-running process
        meter = FirstWrite()
        res = col.upsert(records, batch_size=16, on_batch=meter)
        wall = time.perf_counter() - meter.start
        assert all(r["status"] == "inserted" for r in res), res[:3]
        rows.append(("single process (threads + batched encoder)", wall, meter.first, "model loaded before"))
    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    try:
        for workers in (1, 2):
            with lookalike.connect(work / f"ray{workers}") as db:
                col = db.collection("bench", create=True)
                meter = FirstWrite()
                res = ray_ingest(col, records, workers=workers, batch_size=16, on_batch=meter)
                wall = time.perf_counter() - meter.start
                assert all(r["status"] == "inserted" for r in res), res[:3]
                start = time.perf_counter()
                again = ray_ingest(col, records, workers=workers, batch_size=16)
                rerun = time.perf_counter() - start
                assert all(r["status"] == "unchanged" for r in again)
                rows.append((f"ray, {workers} worker{'s' * (workers > 1)}", wall, meter.first,
                             f"incl. actor start + model load; unchanged re-run {rerun:.1f} s"))
    finally:
        ray.shutdown()
    rows.append(("(ray.init itself, not in the rows above)", ray_start, float("nan"), ""))
    rows.append(cluster_row(records, work))
    return rows


def cluster_row(records: list[dict], work: Path) -> tuple[str, float, float, str]:
    """`ray_ingest` with 2 actors on a head and a worker node (separate processes), driven from a
    process of its own; the wall time is the driver's `ray_ingest` call."""
    import json
    import subprocess

    from lookalike.testing.ray_cluster import CLUSTER_ENV, Cluster

    folder = Path(tempfile.mkdtemp(prefix="lkray", dir="/tmp"))
    catalog = work / "cluster.jsonl"
    relative = [{**r, "_file": os.path.relpath(r["_file"], work)} for r in records]  # files inside its folder
    catalog.write_text("".join(json.dumps(r) + "\n" for r in relative))
    start = time.perf_counter()
    cluster = Cluster(folder)
    try:
        cluster.add_worker()
        up = time.perf_counter() - start
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **CLUSTER_ENV,
               "LOOKALIKE_BATCH": "16", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        proc = subprocess.run([sys.executable, "-m", "lookalike.testing.ray_cluster", "ingest", cluster.address,
                               str(work / "cluster-data"), str(catalog)], capture_output=True, text=True, env=env)
        if proc.returncode:
            raise SystemExit(f"two-node ingest failed: {proc.stderr[-3000:]}")
        out = json.loads(proc.stdout.strip().splitlines()[-1])
        assert all(r["status"] == "inserted" for r in out["results"]), out["results"][:3]
        nodes = len(out["actor_node_ports"])
    finally:
        cluster.stop()
    return ("ray, 2 workers on a 2-node cluster", out["seconds"], float("nan"),
            f"actors on {nodes} nodes; incl. actor start + model load; cluster start {up:.0f} s")


def search_rows(n: int, dim: int, queries: int, work: Path,
                server: bool = True) -> list[tuple[str, str, float, float, float, str]]:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    records = [{"_id": f"v{i}", "_vector": vectors[i].tolist(), "price": int(i % 100), "color": ("red", "blue")[i % 2]}
               for i in range(n)]
    qs = rng.normal(size=(queries, dim)).tolist()
    results: dict[str, dict] = {}
    rows = []
    stores: list[tuple[str, object]] = [("embedded", work / "emb"), ("milvus lite", str(work / "lite.db"))]
    milvus = None
    if server:
        from lookalike.testing.milvus_server import MilvusProcess
        (work / "milvus-server").mkdir()
        milvus = MilvusProcess(work / "milvus-server")
        stores.append((f"milvus {milvus.version}", milvus.url))
    try:
        for name, location in stores:
            rows.extend(_search_store(name, location, records, qs, dim, results))
    finally:
        if milvus is not None:
            milvus.stop()
    for i, row in enumerate(rows):
        if row[0] != "embedded":
            same = results[row[1]]["embedded"] == results[row[1]][row[0]]
            rows[i] = (*row[:5], "same ids, same order" if same else "DIFFERENT hits")
    return rows


def _search_store(name: str, location, records: list[dict], qs: list, dim: int, results: dict) -> list[tuple]:
    """Load the records into one store, then time the queries; rows of (store, query, p50, p99, rate, '')."""
    rows = []
    n = len(records)
    with lookalike.connect(location) as db:
        col = db.collection("vec", create=True, model="none", dim=dim)
        start = time.perf_counter()
        for i in range(0, n, 2000):
            col.upsert(records[i:i + 2000], batch_size=500)
        if hasattr(col._store, "flush"):
            col._store.flush()  # seal the bulk load into a segment, as a server would soon do itself
        load = time.perf_counter() - start
        queries = (("no filter", None), ("price < 10 and color = red", {"price": {"$lt": 10}, "color": "red"}))
        for label, flt in queries:
            col.search({"vector": qs[0]}, k=10, filter=flt)  # warm up
            times, hits = [], []
            for q in qs:
                start = time.perf_counter()
                res = col.search({"vector": q}, k=10, filter=flt)
                times.append((time.perf_counter() - start) * 1000)
                hits.append([h["_id"] for h in res["hits"]])
            results.setdefault(label, {})[name] = hits
            p99 = statistics.quantiles(times, n=100)[-1]
            rows.append((name, label, statistics.median(times), p99, n / load, ""))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--size", type=int, default=384)
    p.add_argument("--vectors", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--no-server", action="store_true", help="skip the Milvus server rows")
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--skip-search", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if not args.skip_ingest:
            (work / "img").mkdir()
            records = make_images(work / "img", args.images, args.size)
            print(f"\nIngest: {args.images} JPEGs of {args.size} px, efficientnet-lite0, embedded store, "
                  f"{len(os.sched_getaffinity(0))} cores\n")
            print(f"| {'pipeline':<44} | {'wall s':>7} | {'images/s':>8} | {'1st write s':>11} | note |")
            print(f"|{'-' * 46}|{'-' * 9}|{'-' * 10}|{'-' * 13}|------|")
            for name, seconds, first, note in ingest_rows(records, work):
                rate = f"{args.images / seconds:8.1f}" if not name.startswith("(") else " " * 8
                first_text = f"{first:11.1f}" if first == first else " " * 11
                print(f"| {name:<44} | {seconds:7.1f} | {rate} | {first_text} | {note} |")
            print(f"load average during the run: {os.getloadavg()[0]:.1f} (other jobs share this machine)")
        if args.skip_search:
            return
        print(f"\nSearch: {args.vectors} random {args.dim}-d vectors, k=10, {args.queries} queries, Python API\n")
        print(f"| {'store':<25} | {'query':<27} | {'p50 ms':>7} | {'p99 ms':>7} | {'upserts/s':>9} "
              "| hits vs embedded |")
        print(f"|{'-' * 27}|{'-' * 29}|{'-' * 9}|{'-' * 9}|{'-' * 11}|------------------|")
        rows = search_rows(args.vectors, args.dim, args.queries, work, server=not args.no_server)
        for name, label, p50, p99, rate, note in rows:
            print(f"| {name:<25} | {label:<27} | {p50:7.2f} | {p99:7.2f} | {rate:9.0f} | {note} |")


if __name__ == "__main__":
    main()
