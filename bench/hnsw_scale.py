"""How wide must the HNSW beam be as a collection grows? recall@10 against efSearch at one size.

Run: python bench/hnsw_scale.py [--n 5000000] [--efs 64,96,128,192,256]

Builds FAISS's HNSW over int8 codes (M=16, efConstruction=128: lookalike's defaults) on
clustered 256-d unit vectors (bench/search_data.py, the data of bench/search.py), then, per
efSearch, asks for the 20 best codes and re-scores them with the float32 vectors (what
lookalike's engine does) and reports recall@10 against exact search and the median latency.
The table chose how `index/manager.py` widens the default beam with the collection's size.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search_data import clustered  # noqa: E402


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    best = np.empty((len(queries), k), dtype=np.int64)
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    for start in range(0, len(data), 500_000):
        sims = queries @ data[start:start + 500_000].T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        cand_s = np.concatenate([scores, np.take_along_axis(sims, part, 1)], axis=1)
        cand_i = np.concatenate([best, part + start], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        scores, best = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best


def main() -> None:
    import faiss
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--efs", default="64,96,128,192,256")
    args = ap.parse_args()
    k, pool = 10, 20
    data, queries = clustered(args.n, 256, args.queries, seed=1)  # as bench/search.py
    truth = exact_top(data, queries, k)
    start = time.perf_counter()
    index = faiss.IndexHNSWSQ(256, faiss.ScalarQuantizer.QT_8bit, 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    index.train(data[:200_000])
    for lo in range(0, len(data), 250_000):
        index.add(data[lo:lo + 250_000])
    build = time.perf_counter() - start
    print(f"\n{args.n:,} clustered 256-d vectors, int8 HNSW M=16 efConstruction=128, built in {build:.0f} s\n")
    print("| efSearch | recall@10 (20 int8 candidates re-scored) | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    faiss.omp_set_num_threads(1)
    for ef in (int(e) for e in args.efs.split(",")):
        params = faiss.SearchParametersHNSW(efSearch=ef)
        hits, times = 0, []
        for q, want in zip(queries, truth):
            t = time.perf_counter()
            _, ids = index.search(q[None], pool, params=params)
            cand = ids[0][ids[0] >= 0]
            top = cand[np.argsort(-(data[cand] @ q))[:k]]
            times.append(time.perf_counter() - t)
            hits += len(set(top.tolist()) & set(want.tolist()))
        print(f"| {ef} | {hits / (k * len(queries)):.3f} | {np.median(times) * 1e3:.2f} | "
              f"{np.percentile(times, 99) * 1e3:.2f} |")


if __name__ == "__main__":
    main()
