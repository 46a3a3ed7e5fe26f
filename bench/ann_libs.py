"""Compare the ANN libraries on this machine, to pick the one behind `lookalike.index.ann`.

    python bench/ann_libs.py [--n 100000] [--dim 256] [--queries 300]

Same clustered unit vectors, same graph parameters (M=16, ef_construction=128,
ef_search=64) for usearch, hnswlib and FAISS (IndexHNSWFlat, inner product); reports build
time, index memory, recall@10 against exact search, p50/p99 single-query latency with no
filter and with a 10 % filter (each library's best way: FAISS and hnswlib filter inside the
graph walk, usearch has no filter in Python so it oversamples and widens).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from search_data import clustered


def exact_topk(data: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None = None) -> np.ndarray:
    scores = queries @ data.T
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    return np.argsort(-scores, axis=1)[:, :k]


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(map(int, f)) & set(map(int, t))) / len(t) for f, t in zip(found, truth)]))


def timed(fn, queries: np.ndarray) -> tuple[list[np.ndarray], float, float]:
    out, lat = [], []
    for q in queries:
        t = time.perf_counter()
        out.append(fn(q))
        lat.append(time.perf_counter() - t)
    lat_ms = np.array(lat) * 1000
    return out, float(np.percentile(lat_ms, 50)), float(np.percentile(lat_ms, 99))


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def run_faiss(data, queries, allowed, k):
    import faiss
    faiss.omp_set_num_threads(2)
    m0 = rss_mb()
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(data.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 128
    index.add(data)
    build = time.perf_counter() - t
    mem = rss_mb() - m0
    faiss.omp_set_num_threads(1)
    plain = faiss.SearchParametersHNSW(efSearch=64)
    bits = np.packbits(allowed, bitorder="little")  # must outlive the selector (faiss keeps a pointer)
    bitmap = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
    filt = faiss.SearchParametersHNSW(efSearch=64, sel=bitmap)
    a = timed(lambda q: index.search(q[None], k, params=plain)[1][0], queries)
    b = timed(lambda q: index.search(q[None], k, params=filt)[1][0], queries)
    return build, mem, a, b


def run_hnswlib(data, queries, allowed, k):
    import hnswlib
    m0 = rss_mb()
    t = time.perf_counter()
    index = hnswlib.Index(space="ip", dim=data.shape[1])
    index.init_index(max_elements=len(data), M=16, ef_construction=128)
    index.set_num_threads(2)
    index.add_items(data, np.arange(len(data)))
    build = time.perf_counter() - t
    mem = rss_mb() - m0
    index.set_ef(64)
    index.set_num_threads(1)
    a = timed(lambda q: index.knn_query(q, k)[0][0], queries)
    ok = allowed
    b = timed(lambda q: index.knn_query(q, k, filter=lambda i: bool(ok[i]))[0][0], queries)
    return build, mem, a, b


def run_usearch(data, queries, allowed, k):
    from usearch.index import Index
    m0 = rss_mb()
    t = time.perf_counter()
    index = Index(ndim=data.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128,
                  expansion_search=64)
    index.add(np.arange(len(data)), data, threads=2)
    build = time.perf_counter() - t
    mem = rss_mb() - m0
    a = timed(lambda q: index.search(q, k, threads=1).keys, queries)

    def oversample(q):
        count = k * 10
        while True:
            keys = index.search(q, count, threads=1).keys
            keep = keys[allowed[keys]]
            if len(keep) >= k or count >= len(data):
                return keep[:k]
            count *= 4
    b = timed(oversample, queries)
    return build, mem, a, b


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--libs", default="faiss,usearch,hnswlib")
    args = ap.parse_args()
    k = 10
    data, queries = clustered(args.n, args.dim, args.queries, seed=1)
    allowed = np.random.default_rng(2).random(args.n) < 0.10
    truth = exact_topk(data, queries, k)
    truth_f = exact_topk(data, queries, k, allowed)
    print(f"{args.n} x {args.dim}-d clustered, M=16 efC=128 efS=64, k=10, load avg {os.getloadavg()[0]:.1f} "
          "(shared machine)")
    print(f"{'library':10} {'build s':>8} {'mem MB':>7} {'recall':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'rec 10%':>8} {'p50 10%':>8} {'p99 10%':>8}")
    runners = {"faiss": run_faiss, "usearch": run_usearch, "hnswlib": run_hnswlib}
    for name in args.libs.split(","):
        fn = runners[name]
        build, mem, (fa, p50a, p99a), (fb, p50b, p99b) = fn(data, queries, allowed, k)
        print(f"{name:10} {build:8.1f} {mem:7.0f} {recall(fa, truth):7.3f} {p50a:7.2f} {p99a:7.2f} "
              f"{recall(fb, truth_f):8.3f} {p50b:8.2f} {p99b:8.2f}", flush=True)


if __name__ == "__main__":
    main()
