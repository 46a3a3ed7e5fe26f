"""Bulk load of precomputed vectors: `col.upsert` of `_vector` records against FAISS's own add rate.

    python bench/load_vectors.py                       # 100k clustered 256-d, batches of 20k
    python bench/load_vectors.py --size 300000 --no-raw

In one run, on the same vectors (clustered unit vectors like bench/search.py's), one row each:

- `raw faiss add`: `IndexHNSWFlat` (M 16, efConstruction 128, inner product) built by `add`
  in batches: what the library itself does with the vectors, every core it is given
- `upsert, target_recall null`: `Collection.upsert` in batches (default `auto` index: exact
  up to 20k rows, then HNSW), the beam as configured
- `upsert, target_recall 0.95`: the same with the default calibration (index/calibrate.py)
- `store.write`: StoredRecords straight into the store (no record parsing or pipeline),
  target 0.95: what the store and index cost alone
- `lookalike ingest JSONL`: the same records as a JSONL catalogue through the CLI (its
  default batch for model 'none'), from the command's start to its exit (index saved)

Reported: seconds, vectors per second, that over the raw rate, and the index state after.
Each upsert waits for a background index build at the end (`wait_index`), so the time
covers every vector searchable through the index.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# the repository root first, in place of this folder (its scripts are named like standard modules)
sys.path[0] = str(HERE.parent)

import lookalike  # noqa: E402
from lookalike.store import StoredRecord  # noqa: E402
from bench import search_data  # noqa: E402


def raw_add(data: np.ndarray, batch: int) -> float:
    import faiss
    index = faiss.IndexHNSWFlat(data.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    t = time.perf_counter()
    for start in range(0, len(data), batch):
        index.add(data[start:start + batch])
    return time.perf_counter() - t


def upsert(data: np.ndarray, batch: int, target: float | None, direct: bool) -> tuple[float, dict]:
    folder = tempfile.mkdtemp(prefix="lookalike-load-")
    try:
        db = lookalike.connect(folder)
        col = db.collection("v", create=True, model="none", dim=data.shape[1], index={"target_recall": target})
        t = time.perf_counter()
        for start in range(0, len(data), batch):
            rows = range(start, min(start + batch, len(data)))
            if direct:
                col._store.write([StoredRecord(id=f"r{i}", doc={"p": i % 10}, computed={}, vector=data[i],
                                               source_hash="", content_hash=f"{i:016x}") for i in rows])
            else:
                col.upsert([{"_id": f"r{i}", "_vector": data[i].tolist(), "p": i % 10} for i in rows],
                           batch_size=batch)
        col._store.wait_index()
        secs = time.perf_counter() - t
        info = col.info()["index"]
        db.close()
        return secs, info
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def cli_ingest(data: np.ndarray, target: float | None) -> tuple[float, dict]:
    """`lookalike ingest` of a JSONL of `_vector` records into a model-'none' collection (made
    first: the CLI makes image collections only); timed from the command's start to its exit,
    when every vector is in the saved index. Writing the JSONL is not timed."""
    import json
    import subprocess
    folder = tempfile.mkdtemp(prefix="lookalike-load-")
    try:
        catalog = Path(folder) / "vectors.jsonl"
        with open(catalog, "w") as fh:
            for i in range(len(data)):
                fh.write(json.dumps({"_id": f"r{i}", "_vector": data[i].tolist(), "p": i % 10}) + "\n")
        db = lookalike.connect(Path(folder) / "data")
        db.collection("v", create=True, model="none", dim=data.shape[1], index={"target_recall": target})
        db.close()
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "lookalike.cli", "ingest", str(catalog), "-c", "v", "--data",
                        str(Path(folder) / "data"), "-q"], check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(HERE.parent)})
        secs = time.perf_counter() - t
        with lookalike.connect(Path(folder) / "data") as db:
            col = db.collection("v")
            assert col.count() == len(data)
            info = col.info()["index"]
        return secs, info
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--no-raw", action="store_true", help="skip the raw FAISS row")
    args = ap.parse_args()
    data, _ = search_data.clustered(args.size, args.dim, 1, seed=1)
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.size:,} x {args.dim}-d, "
          f"batches of {args.batch:,}")
    print("| who | s | vec/s | x raw | index |")
    print("|---|---|---|---|---|")
    raw_rate = None
    if not args.no_raw:
        secs = raw_add(data, args.batch)
        raw_rate = args.size / secs
        print(f"| raw faiss add (HNSW M16 efC128) | {secs:.1f} | {raw_rate:,.0f} | 1.00 | |", flush=True)
    rates = {}
    for name, target, how in (("upsert, target_recall null", None, "upsert"),
                              ("upsert, target_recall 0.95", 0.95, "upsert"),
                              ("store.write, target_recall 0.95", 0.95, "store"),
                              ("lookalike ingest JSONL, target_recall 0.95", 0.95, "cli")):
        if how == "cli":
            secs, info = cli_ingest(data, target)
        else:
            secs, info = upsert(data, args.batch, target, how == "store")
        rate = rates[name] = args.size / secs
        ratio = f"{rate / raw_rate:.2f}" if raw_rate else "-"
        print(f"| {name} | {secs:.1f} | {rate:,.0f} | {ratio} | {info['active']} {info['indexed_rows']:,} rows, "
              f"beam {info['beam']}, measured recall {info['measured_recall']} |", flush=True)
    print(f"# load average {os.getloadavg()[0]:.1f} at end")
    print(f"# a million vectors at these rates: " + ", ".join(f"{name.split(',')[0]} {1e6 / r / 60:.1f} min"
                                                             for name, r in rates.items())
          + " (linear; an HNSW insert costs ~log n more as the graph grows, so a real million takes longer)")


if __name__ == "__main__":
    main()
