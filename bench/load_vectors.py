"""Bulk load of precomputed vectors: `col.upsert` of `_vector` records against FAISS's own add rate.

    python bench/load_vectors.py                       # 100k clustered 256-d, batches of 20k
    python bench/load_vectors.py --size 300000 --rows raw,upsert95,cli,search
    python bench/load_vectors.py --expansion-add 128   # lookalike and raw FAISS with another efConstruction

In one run, on the same vectors (clustered unit vectors like bench/search.py's), one row each
of `--rows` (default all but `search`), in this order:

- `raw`: FAISS's `IndexHNSWFlat` (M 16, efConstruction `--expansion-add`, inner product)
  built by `add` in batches: what the library itself does with the vectors, every core it is
  given; then searched at efSearch 64 (the default beam) one query at a time
- `upsert`: `Collection.upsert` in batches (default `auto` index: exact up to 20k rows, then
  HNSW), `target_recall` null: the beam as configured
- `upsert95`: the same with the default calibration (`target_recall` 0.95, index/calibrate.py)
- `store95`: StoredRecords straight into the store (no record parsing or pipeline), target
  0.95: what the store and index cost alone
- `cli`: the same records as a JSONL catalogue through `lookalike ingest` (its default batch
  for model 'none'), from the command's start to its exit (index saved)
- `search`: `upsert95`'s load, then `--queries` searches one at a time through the store's
  search (planner, index, exact re-scoring; no API parsing): p50/p99 and recall@10 against
  exact search, next to the recall the calibration measured. A faster build must not cost
  search speed: compare its p50 and beam across `--expansion-add` values.

Reported: seconds, vectors per second, that over the raw rate, CPU seconds (process time of
this process, plus the child for `cli`: the machine is shared, so CPU seconds are the steadier
measure), and the index state after. Each load waits for the index (`wait_index`), so the
time covers every vector searchable through the index.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# the repository root first, in place of this folder (its scripts are named like standard modules)
sys.path[0] = str(HERE.parent)

import lookalike  # noqa: E402
from lookalike.index.settings import INDEX_DEFAULTS  # noqa: E402
from lookalike.store import SearchRequest, StoredRecord  # noqa: E402
from bench import search_data  # noqa: E402

ROWS = ("raw", "upsert", "upsert95", "store95", "cli", "search")
K = 10


def _child_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def _exact_truth(data: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    out: list[set[int]] = []
    for start in range(0, len(queries), 100):
        scores = queries[start:start + 100] @ data.T
        out += [set(row.tolist()) for row in np.argpartition(-scores, K - 1, axis=1)[:, :K]]
    return out


def _latency(search, queries: np.ndarray, truth: list[set[int]]) -> tuple[float, float, float]:
    """(p50 ms, p99 ms, recall@K) of `search(q) -> ids` over the queries (after one warm pass)."""
    for q in queries:
        search(q)
    times, hits = [], 0
    for q, best in zip(queries, truth):
        t = time.perf_counter()
        found = search(q)
        times.append(time.perf_counter() - t)
        hits += len(found & best)
    ms = np.asarray(times) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), hits / (K * len(queries))


def raw_add(data: np.ndarray, batch: int, efc: int, queries: np.ndarray, truth: list[set[int]]) -> dict:
    import faiss
    index = faiss.IndexHNSWFlat(data.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = efc
    t, c = time.perf_counter(), time.process_time()
    for start in range(0, len(data), batch):
        index.add(data[start:start + batch])
    out = {"s": time.perf_counter() - t, "cpu": time.process_time() - c}
    params = faiss.SearchParametersHNSW()
    params.efSearch = INDEX_DEFAULTS["expansion_search"]
    p50, p99, recall = _latency(lambda q: set(index.search(q[None], K, params=params)[1][0].tolist()), queries, truth)
    out["note"] = f"efSearch {params.efSearch}: p50 {p50:.3f} ms, p99 {p99:.3f} ms, recall@10 {recall:.3f}"
    return out


def load(data: np.ndarray, batch: int, index: dict, direct: bool,
         queries: np.ndarray | None = None, truth: list[set[int]] | None = None) -> dict:
    """Load through `col.upsert` (or `store.write` if `direct`); with queries, search after."""
    folder = tempfile.mkdtemp(prefix="lookalike-load-")
    try:
        db = lookalike.connect(folder)
        col = db.collection("v", create=True, model="none", dim=data.shape[1], index=index)
        t, c = time.perf_counter(), time.process_time()
        for start in range(0, len(data), batch):
            rows = range(start, min(start + batch, len(data)))
            if direct:
                col._store.write([StoredRecord(id=f"r{i}", doc={"p": i % 10}, computed={}, vector=data[i],
                                               source_hash="", content_hash=f"{i:016x}") for i in rows])
            else:
                col.upsert([{"_id": f"r{i}", "_vector": data[i].tolist(), "p": i % 10} for i in rows],
                           batch_size=batch)
        col._store.wait_index()
        out = {"s": time.perf_counter() - t, "cpu": time.process_time() - c, "info": col.info()["index"]}
        if queries is not None:
            store = col._store
            p50, p99, recall = _latency(
                lambda q: {int(h.id[1:]) for h in store.search(SearchRequest(vector=q, k=K))}, queries, truth)
            out["note"] = f"p50 {p50:.3f} ms, p99 {p99:.3f} ms, recall@10 {recall:.3f}"
        db.close()
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cli_ingest(data: np.ndarray, index: dict) -> dict:
    """`lookalike ingest` of a JSONL of `_vector` records into a model-'none' collection (made
    first: the CLI makes image collections only); timed from the command's start to its exit,
    when every vector is in the saved index. Writing the JSONL is not timed."""
    folder = tempfile.mkdtemp(prefix="lookalike-load-")
    try:
        catalog = Path(folder) / "vectors.jsonl"
        with open(catalog, "w") as fh:
            for i in range(len(data)):
                fh.write(json.dumps({"_id": f"r{i}", "_vector": data[i].tolist(), "p": i % 10}) + "\n")
        db = lookalike.connect(Path(folder) / "data")
        db.collection("v", create=True, model="none", dim=data.shape[1], index=index)
        db.close()
        t, c = time.perf_counter(), _child_cpu()
        subprocess.run([sys.executable, "-m", "lookalike.cli", "ingest", str(catalog), "-c", "v", "--data",
                        str(Path(folder) / "data"), "-q"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(HERE.parent)})
        out = {"s": time.perf_counter() - t, "cpu": _child_cpu() - c}
        with lookalike.connect(Path(folder) / "data") as db:
            col = db.collection("v")
            assert col.count() == len(data)
            out["info"] = col.info()["index"]
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--rows", default=",".join(r for r in ROWS if r != "search"),
                    help=f"comma-separated rows to run, of: {', '.join(ROWS)}")
    ap.add_argument("--expansion-add", type=int, default=INDEX_DEFAULTS["expansion_add"],
                    help="efConstruction of lookalike's graph and of the raw FAISS row (default: lookalike's)")
    ap.add_argument("--queries", type=int, default=300, help="queries of the `search` and `raw` rows")
    ap.add_argument("--no-raw", action="store_true", help="skip the raw FAISS row (same as leaving it out of --rows)")
    args = ap.parse_args()
    rows = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = set(rows) - set(ROWS)
    if unknown:
        ap.error(f"unknown rows {', '.join(sorted(unknown))}; choose from {', '.join(ROWS)}")
    if args.no_raw and "raw" in rows:
        rows.remove("raw")
    data, queries = search_data.clustered(args.size, args.dim, args.queries, seed=1)
    truth = _exact_truth(data, queries) if {"raw", "search"} & set(rows) else []
    efc = args.expansion_add
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.size:,} x {args.dim}-d, "
          f"batches of {args.batch:,}, expansion_add (efConstruction) {efc}")
    print("| who | s | vec/s | x raw | cpu s | index | search |")
    print("|---|---|---|---|---|---|---|")
    raw_rate = None
    rates = {}
    for name in ROWS:
        if name not in rows:
            continue
        target = None if name == "upsert" else 0.95
        index = {"target_recall": target, "expansion_add": efc}
        if name == "raw":
            got = raw_add(data, args.batch, efc, queries, truth)
            raw_rate = args.size / got["s"]
        elif name == "cli":
            got = cli_ingest(data, index)
        else:
            got = load(data, args.batch, index, name == "store95",
                       queries if name == "search" else None, truth)
        rate = rates[name] = args.size / got["s"]
        ratio = f"{rate / raw_rate:.2f}" if raw_rate else "-"
        info = got.get("info")
        state = (f"{info['active']} {info['indexed_rows']:,} rows, beam {info['beam']}, "
                 f"measured recall {info['measured_recall']}") if info else ""
        print(f"| {name} | {got['s']:.1f} | {rate:,.0f} | {ratio} | {got['cpu']:.1f} | {state} | "
              f"{got.get('note', '')} |", flush=True)
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    print("# a million vectors at these rates: " + ", ".join(f"{name} {1e6 / r / 60:.1f} min"
                                                            for name, r in rates.items())
          + " (linear; an HNSW insert costs ~log n more as the graph grows, so a real million takes longer)")


if __name__ == "__main__":
    main()
