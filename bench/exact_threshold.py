"""Where exact search stops paying: the store's exact scan against its HNSW graph, by dimension and size.

    python bench/exact_threshold.py                          # 64/128/256/512-d x 2k..50k rows (~5 min)
    python bench/exact_threshold.py --dims 256 --sizes 5000,20000 --queries 100

For each dimension and size it writes clustered unit vectors (bench/search_data.py) into a
fresh collection through the store API, then switches it to `index.type: "hnsw"` with the
configured compression (default float32 codes) and times that: the graph's build plus its
calibration (calibrate.py: held-out rows measured against exact search to meet
`target_recall`), the one-off cost an `auto` collection pays when it crosses `threshold`.
Then the same queries (drawn like the rows, not stored) go through `store.search` with
`threshold` above the row count (the planner scans exactly: `exact`) and at 0 (the graph
at the width the calibration chose: `hnsw`; with `--dtype i8` the IVF `auto` builds for
int8 codes, at its calibrated nprobe), alternating over 4 rounds so that a busy
shared machine slows both alike. Each search's plan is checked to be the one intended.

Reported per row: build s (graph + calibration), the calibrated beam (efSearch) and the
recall@10 it measured, p50/p99 ms and recall@10 (against NumPy's exact top 10) of both
paths (`index`: the HNSW graph, or the IVF), exact/index (p50 ratio: above 1 the index is faster), and `amortised`: how many
queries the graph's build takes to pay for itself at that p50 difference ("-": never).
The last column, rows x dim, is the budget the automatic threshold is set in
(settings.AUTO_THRESHOLD_BUDGET).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[0] = str(HERE.parent)  # the repository root first (its scripts are named like standard modules)

import lookalike  # noqa: E402
from lookalike.store import SearchRequest, StoredRecord  # noqa: E402
from bench.search_data import clustered  # noqa: E402

K = 10
ROUNDS = 4


def truth_of(data: np.ndarray, queries: np.ndarray) -> list[set[int]]:
    scores = queries @ data.T
    return [set(map(int, row)) for row in np.argpartition(-scores, K, axis=1)[:, :K]]


def run(dim: int, n: int, args) -> str:
    data, queries = clustered(n, dim, args.queries, seed=dim + n)
    kind = "ivf" if args.dtype == "i8" else "hnsw"  # as `auto` chooses
    truth = truth_of(data, queries)
    with tempfile.TemporaryDirectory() as tmp, lookalike.connect(tmp) as db:
        compression = {"dtype": args.dtype, "pca_dim": None}
        col = db.collection("t", create=True, model="none", dim=dim, index={"type": "exact"},
                            compression=compression)
        store = col._store
        store.write([StoredRecord(id=f"r{i}", doc={}, computed={}, vector=data[i], source_hash="",
                                  content_hash=f"{i:016x}") for i in range(n)])
        t = time.perf_counter()
        db.ensure_collection("t", index={"type": kind, "threshold": 0}, compression=compression)
        store.wait_index()
        build_s = time.perf_counter() - t
        info = col.info()["index"]
        assert info["active"] == kind, info
        beam, measured = info["beam"], info["measured_recall"]

        lat: dict[str, list[float]] = {"exact": [], kind: []}
        found: dict[str, list[set[int]]] = {"exact": [], kind: []}
        order = ["exact", kind]
        for rnd in range(ROUNDS):
            for path in order if rnd % 2 == 0 else order[::-1]:
                db.ensure_collection("t", index={"threshold": 10**9 if path == "exact" else 0})
                for q in queries:
                    s = time.perf_counter()
                    hits = store.search(SearchRequest(vector=q, k=K))
                    lat[path].append(time.perf_counter() - s)
                    if rnd == 0:
                        found[path].append({int(h.id[1:]) for h in hits})
                        assert store._index.last_plan().kind == path, store._index.last_plan()
    p50 = {p: float(np.percentile(v, 50)) * 1e3 for p, v in lat.items()}
    p99 = {p: float(np.percentile(v, 99)) * 1e3 for p, v in lat.items()}
    rec = {p: float(np.mean([len(f & t) / K for f, t in zip(found[p], truth)])) for p in found}
    p50["hnsw"], p99["hnsw"], rec["hnsw"] = p50[kind], p99[kind], rec[kind]
    gain_ms = p50["exact"] - p50["hnsw"]
    amortised = f"{build_s * 1e3 / gain_ms:,.0f}" if gain_ms > 0 else "-"
    measured_s = f"{measured:.3f}" if measured is not None else "-"
    return (f"| {dim} | {n:,} | {build_s:.2f} | {beam} | {measured_s} | {p50['exact']:.3f} | {p99['exact']:.3f} "
            f"| {rec['exact']:.3f} | {p50['hnsw']:.3f} | {p99['hnsw']:.3f} | {rec['hnsw']:.3f} "
            f"| {p50['exact'] / p50['hnsw']:.2f} | {amortised} | {n * dim / 1e6:.2f}M |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", default="64,128,256,512")
    ap.add_argument("--sizes", default="2000,5000,10000,20000,50000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dtype", default="f32", choices=("f32", "f16", "i8"),
                    help="index codes; i8 builds an IVF (as `auto` does), its nprobe in the beam column")
    args = ap.parse_args()
    print("| dim | rows | build s | beam | calib recall | exact p50 ms | exact p99 | exact recall "
          "| index p50 ms | index p99 | index recall | exact/index | amortised | rows x dim |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dim in map(int, args.dims.split(",")):
        for n in map(int, args.sizes.split(",")):
            print(run(dim, n, args), flush=True)


if __name__ == "__main__":
    main()
