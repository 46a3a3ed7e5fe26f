"""Where exact search stops paying: the store's exact scan against its HNSW graph, by dimension and size.

    python bench/exact_threshold.py                          # 64/128/256/512-d x 2k..50k rows (~5 min)
    python bench/exact_threshold.py --dims 256 --sizes 5000,20000 --queries 100

For each dimension and size it writes clustered unit vectors (bench/search_data.py) into a
fresh collection through the store API, then switches it to `index.type: "hnsw"` with the
configured compression (default float32 codes) and times that: the graph's build plus its
calibration (calibrate.py: held-out rows measured against exact search to meet
`target_recall`), the one-off cost an `auto` collection pays when it crosses `threshold`.
Then the same queries (drawn like the rows, not stored) go through `store.search` with
`threshold` and `filter_threshold` above the row count (the planner scans exactly: `exact`)
and at 0 (`index`: the graph at the width the calibration chose; with `--dtype i8` the IVF
`auto` builds for int8 codes, at its calibrated nprobe), alternating over 4 rounds so that
a busy shared machine slows both alike; unfiltered, and with `--filters` for random
filters keeping those shares (at least 1/32: rarer ones HNSW leaves to exact search).
Each search's plan is checked to be the one intended (no fallback).

Reported per row: matching rows, build s (graph + calibration), the calibrated beam
(efSearch or nprobe) and the recall@10 it measured, p50/p99 ms and recall@10 (against
NumPy's exact top 10 among the matching rows) of both paths, exact/index (p50 ratio: above
1 the index is faster), and `amortised`: how many queries the build takes to pay for
itself at that p50 difference ("-": never). settings.exact_threshold is set from these.
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
from lookalike.index.planning import HNSW_MIN_SHARE  # noqa: E402
from lookalike.store.filters import parse_filter  # noqa: E402
from bench.search_data import clustered  # noqa: E402

K = 10
ROUNDS = 4


#: Filter shares are drawn as `b < m` over a per-record integer `b` uniform in 0..BUCKETS-1.
BUCKETS = 64


def truth_of(data: np.ndarray, queries: np.ndarray, mask: np.ndarray | None) -> list[set[int]]:
    scores = queries @ data.T
    if mask is not None:
        scores = np.where(mask, scores, -np.inf)
    return [set(map(int, row)) for row in np.argpartition(-scores, K, axis=1)[:, :K]]


def run(dim: int, n: int, args) -> list[str]:
    """Table rows for one dimension and size: unfiltered, then one per `--filters` share."""
    data, queries = clustered(n, dim, args.queries, seed=dim + n)
    kind = "ivf" if args.dtype == "i8" else "hnsw"  # as `auto` chooses
    bucket = np.random.default_rng(n).integers(0, BUCKETS, n)
    cases = {"none": (None, None)}
    for share in args.filters:
        m = max(1, round(share * BUCKETS))
        if np.count_nonzero(bucket < m) >= n * HNSW_MIN_SHARE:  # rarer: exact either way (planning)
            cases[f"{m}/{BUCKETS}"] = ({"b": {"$lt": m}}, bucket < m)
    truth = {name: truth_of(data, queries, mask) for name, (_, mask) in cases.items()}
    with tempfile.TemporaryDirectory() as tmp, lookalike.connect(tmp) as db:
        compression = {"dtype": args.dtype, "pca_dim": None}
        col = db.collection("t", create=True, model="none", dim=dim, index={"type": "exact"},
                            compression=compression)
        store = col._store
        store.write([StoredRecord(id=f"r{i}", doc={"b": int(bucket[i])}, computed={}, vector=data[i],
                                  source_hash="", content_hash=f"{i:016x}") for i in range(n)])
        t = time.perf_counter()
        db.ensure_collection("t", index={"type": kind, "threshold": 0}, compression=compression)
        store.wait_index()
        build_s = time.perf_counter() - t
        info = col.info()["index"]
        assert info["active"] == kind, info
        beam, measured = info["beam"], info["measured_recall"]

        lat = {(c, p): [] for c in cases for p in ("exact", "index")}
        found: dict[tuple, list[set[int]]] = {key: [] for key in lat}
        order = ["exact", "index"]
        for rnd in range(ROUNDS):
            for path in order if rnd % 2 == 0 else order[::-1]:
                limit = 10**9 if path == "exact" else 0  # every search exact / through the index
                db.ensure_collection("t", index={"threshold": limit, "filter_threshold": limit})
                for name, (where, _) in cases.items():
                    request = {"where": parse_filter(where)} if where else {}
                    for q in queries:
                        s = time.perf_counter()
                        hits = store.search(SearchRequest(vector=q, k=K, **request))
                        lat[name, path].append(time.perf_counter() - s)
                        if rnd == 0:
                            found[name, path].append({int(h.id[1:]) for h in hits})
                            plan = store._index.last_plan()
                            assert plan.kind == (kind if path == "index" else "exact") and not plan.fallback, plan
    rows = []
    for name, (_, mask) in cases.items():
        p50 = {p: float(np.percentile(lat[name, p], 50)) * 1e3 for p in order}
        p99 = {p: float(np.percentile(lat[name, p], 99)) * 1e3 for p in order}
        rec = {p: float(np.mean([len(f & t) / K for f, t in zip(found[name, p], truth[name])])) for p in order}
        gain_ms = p50["exact"] - p50["index"]
        amortised = f"{build_s * 1e3 / gain_ms:,.0f}" if gain_ms > 0 else "-"
        matching = n if mask is None else int(mask.sum())
        head = (f"{build_s:.2f} | {beam} | {measured:.3f}" if measured is not None else f"{build_s:.2f} | {beam} | -") \
            if mask is None else " | | "
        rows.append(f"| {dim} | {n:,} | {name} | {matching:,} | {head} | {p50['exact']:.3f} | {p99['exact']:.3f} "
                    f"| {rec['exact']:.3f} | {p50['index']:.3f} | {p99['index']:.3f} | {rec['index']:.3f} "
                    f"| {p50['exact'] / p50['index']:.2f} | {amortised} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", default="64,128,256,512")
    ap.add_argument("--sizes", default="2000,5000,10000,20000,50000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dtype", default="f32", choices=("f32", "f16", "i8"),
                    help="index codes; i8 builds an IVF (as `auto` does), its nprobe in the beam column")
    ap.add_argument("--filters", default="",
                    help="filter shares to time too, e.g. 0.25,0.125,0.0625 (rows matching a random share)")
    args = ap.parse_args()
    args.filters = [float(x) for x in args.filters.split(",") if x]
    print("| dim | rows | filter | matching | build s | beam | calib recall | exact p50 ms | exact p99 "
          "| exact recall | index p50 ms | index p99 | index recall | exact/index | amortised |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for dim in map(int, args.dims.split(",")):
        for n in map(int, args.sizes.split(",")):
            print("\n".join(run(dim, n, args)), flush=True)


if __name__ == "__main__":
    main()
