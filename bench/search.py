"""Search at scale: lookalike (exact/HNSW planner) against the raw FAISS index on the same data.

    python bench/search.py                                  # 100k, clustered + real, int8 (~5 min)
    python bench/search.py --sizes 100000,1000000 --data clustered --dtype i8
    python bench/search.py --sizes 5000000 --data clustered --queries 200   # if memory allows

For each data set and size it writes the vectors (with two metadata flags: `p10` true on
10 % of records, `p01` on 0.1 %) into a fresh collection through the store API, builds
its HNSW index (timed), builds the same FAISS index directly from the NumPy array (the
"raw" rows: same M, ef, int8 scalar quantiser, filter by `IDSelectorBitmap`), and then
runs the same queries against both, interleaved query by query so that a busy shared
machine slows both alike. Reported per row:

- build s: index build (lookalike: from its vector file, in the background thread)
- index MB: codes + graph links held in memory; x f32 / x i8: that over the raw vector bytes
- recall@10 against exact search over the same records (for filters: over the matching ones)
- p50/p99 ms: one query at a time; `store` is the engine (filter, plan, HNSW, exact re-score),
  `api` adds `Collection.search` (query parsing, documents from SQLite, projection)
- qps: queries per second with 2 threads on the 2 cores
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# Python puts this folder first on sys.path; other scripts here named like standard modules would shadow
# the standard library, so import the package from the repository root and our helper by path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

import importlib.util  # noqa: E402

import lookalike  # noqa: E402
from lookalike.query.filters import parse_filter  # noqa: E402
from lookalike.store import SearchRequest, StoredRecord  # noqa: E402

_spec = importlib.util.spec_from_file_location("search_data", HERE / "search_data.py")
search_data = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(search_data)
clustered, real = search_data.clustered, search_data.real

K = 10
FILTERS = {"none": None, "10%": {"p10": True}, "0.1%": {"p01": True}}


def rss_anon_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon"):
                return int(line.split()[1]) / 1024
    return 0.0


def exact_truth(data: np.ndarray, queries: np.ndarray, mask: np.ndarray | None) -> list[set[int]]:
    out = []
    for start in range(0, len(queries), 50):
        scores = queries[start:start + 50] @ data.T
        if mask is not None:
            scores[:, ~mask] = -np.inf
        part = np.argpartition(-scores, K, axis=1)[:, :K]
        out += [set(map(int, row)) for row in part]
    return out


def load_collection(db, name: str, data: np.ndarray, masks: dict[str, np.ndarray],
                    args) -> tuple[object, float, float]:
    """Write every vector through the store API (exact while loading), then build HNSW; (col, secs, anon MB)."""
    col = db.collection(name, create=True, model="none", dim=data.shape[1], index={"type": "exact"},
                        compression={"dtype": args.dtype, "pca_dim": args.pca})
    store = col._store
    for start in range(0, len(data), 50_000):
        batch = [StoredRecord(id=f"r{i}", doc={"p10": bool(masks["10%"][i]), "p01": bool(masks["0.1%"][i])},
                              computed={}, vector=data[i], source_hash="", content_hash=f"h{i}")
                 for i in range(start, min(start + 50_000, len(data)))]
        store.write(batch)
    before = rss_anon_mb()
    t = time.perf_counter()
    db.ensure_collection(name, index={"type": "auto", "connectivity": args.m, "expansion_add": args.ef_add,
                                      "expansion_search": args.ef_search, "threshold": args.threshold,
                                      "filter_threshold": args.filter_threshold})
    store.wait_index()
    return col, time.perf_counter() - t, rss_anon_mb() - before


def reload_secs(store) -> float:
    """Open the saved graph again as a restart would (memory-mapped, verified against the vectors)."""
    from lookalike.index.manager import CollectionIndex
    old = store._index
    t = time.perf_counter()
    fresh = CollectionIndex(old.folder, old.name, old.generation, old.dim, old.settings, old.compression,
                            lambda: store._vectors.matrix, store.count)
    fresh.open()
    secs = time.perf_counter() - t
    assert fresh.active and fresh.stats()["indexed_rows"] == old.stats()["indexed_rows"]
    fresh.close(save=False)
    return secs


def build_raw(data: np.ndarray, args):
    """The same FAISS index, built straight from the array; (index, secs, anon MB grown)."""
    import faiss
    before = rss_anon_mb()
    t = time.perf_counter()
    if args.dtype == "f32":
        index = faiss.IndexHNSWFlat(data.shape[1], args.m, faiss.METRIC_INNER_PRODUCT)
    else:
        q = {"i8": faiss.ScalarQuantizer.QT_8bit, "f16": faiss.ScalarQuantizer.QT_fp16}[args.dtype]
        index = faiss.IndexHNSWSQ(data.shape[1], q, args.m, faiss.METRIC_INNER_PRODUCT)
        index.train(data[np.linspace(0, len(data) - 1, min(len(data), 100_000)).astype(np.int64)])
    index.hnsw.efConstruction = args.ef_add
    for start in range(0, len(data), 100_000):
        index.add(data[start:start + 100_000])
    return index, time.perf_counter() - t, rss_anon_mb() - before


def raw_searcher(index, mask: np.ndarray | None, args):
    import faiss
    params = faiss.SearchParametersHNSW()
    params.efSearch = args.ef_search
    bits = None
    if mask is not None:
        bits = np.packbits(mask, bitorder="little")
        params.sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
    pool = 2 * K if args.dtype != "f32" else K

    def search(q: np.ndarray) -> set[int]:
        _, ids = index.search(q[None], pool, params=params)
        found = ids[0][ids[0] >= 0]
        return set(map(int, found[:K])), bits  # keep the bitmap alive with the closure
    return search


def percentiles(lat: list[float]) -> tuple[float, float]:
    ms = np.array(lat) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def qps(fn, queries: np.ndarray) -> float:
    t = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(fn, queries))
    return len(queries) / (time.perf_counter() - t)


def run_case(label: str, data: np.ndarray, queries: np.ndarray, args, rows: list[str]) -> None:
    n = len(data)
    rng = np.random.default_rng(5)
    masks = {"10%": rng.random(n) < 0.10, "0.1%": rng.random(n) < 0.001}
    folder = tempfile.mkdtemp(prefix="lookalike-bench-", dir=args.tmp)
    db = lookalike.connect(folder)
    col, build_s, ours_anon = load_collection(db, "bench", data, masks, args)
    reload_s = reload_secs(col._store)
    info = col.info()
    ours_mb = info["index"]["memory_bytes"] / 2**20
    import faiss
    if args.raw_same_graph:  # the raw library searching lookalike's own graph: isolates the overhead
        raw, raw_build_s, raw_anon = col._store._index._ann.raw, float("nan"), 0.0
    else:
        raw, raw_build_s, raw_anon = build_raw(data, args)
    raw_mb = (raw.ntotal * faiss.downcast_index(raw.storage).code_size + raw.hnsw.neighbors.size() * 4) / 2**20
    f32_mb, i8_mb = n * data.shape[1] * 4 / 2**20, n * data.shape[1] / 2**20
    store = col._store
    for fname, flt in FILTERS.items():
        mask = masks.get(fname)
        truth = exact_truth(data, queries, mask)
        where = parse_filter(flt)
        raw_fn = raw_searcher(raw, mask, args)

        def ours_store(q: np.ndarray) -> set[int]:
            return {int(h.id[1:]) for h in store.search(SearchRequest(vector=q, k=K, where=where))}

        def ours_api(q: np.ndarray) -> set[int]:
            return {int(h["_id"][1:]) for h in col.search({"vector": q.tolist()}, k=K, filter=flt)["hits"]}

        lat = {"raw": [], "store": [], "api": []}
        got = {"raw": [], "store": [], "api": []}
        fns = {"raw": lambda q: raw_fn(q)[0], "store": ours_store, "api": ours_api}
        for q in queries[:20]:  # warm caches and page-ins for everyone
            for fn in fns.values():
                fn(q)
        for q in queries:  # interleaved: the same moment of a shared machine for all three
            for name, fn in fns.items():
                t = time.perf_counter()
                got[name].append(fn(q))
                lat[name].append(time.perf_counter() - t)
        for name in fns:
            rec = float(np.mean([len(g & t) / K for g, t in zip(got[name], truth)]))
            p50, p99 = percentiles(lat[name])
            rate = qps(fns[name], queries)
            if name == "raw":
                build, mem = raw_build_s, raw_mb
                extra = "same graph as lookalike" if args.raw_same_graph else f"anon+{raw_anon:.0f}MB"
            else:
                build, mem, extra = build_s, ours_mb, f"anon+{ours_anon:.0f}MB reload {reload_s:.2f}s"
            ratio = p50 / percentiles(lat["raw"])[0]
            rows.append(f"| {label} | {n:>9,} | {fname:>4} | {name:5} | {build:7.1f} | {mem:8.1f} | "
                        f"{mem / f32_mb:5.2f} | {mem / i8_mb:5.2f} | {rec:6.3f} | {p50:6.2f} | {p99:6.2f} | "
                        f"{ratio:5.2f} | {rate:7.0f} | {extra}")
            print(rows[-1], flush=True)
    db.close()
    import shutil
    shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000", help="comma-separated collection sizes")
    ap.add_argument("--data", default="clustered,real", help="clustered and/or real")
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--dtype", default="i8", choices=["f32", "f16", "i8"])
    ap.add_argument("--pca", type=int, default=None, help="PCA dimension (default: none)")
    ap.add_argument("--m", type=int, default=16, help="HNSW connectivity")
    ap.add_argument("--ef-add", type=int, default=128)
    ap.add_argument("--ef-search", type=int, default=64)
    ap.add_argument("--threshold", type=int, default=20_000)
    ap.add_argument("--filter-threshold", type=int, default=4096)
    ap.add_argument("--real-images", type=int, default=2000, help="images drawn and embedded for 'real'")
    ap.add_argument("--raw-same-graph", action="store_true",
                    help="raw FAISS rows search lookalike's graph instead of building their own (halves build time)")
    ap.add_argument("--tmp", default=None, help="folder for the temporary data folders")
    args = ap.parse_args()
    try:
        import faiss
        faiss.omp_set_num_threads(2)
    except ImportError:
        sys.exit("bench/search.py needs the 'ann' extra (faiss-cpu)")
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start (shared machine: "
          f"latencies are noisy; raw/store/api are interleaved per query so ratios are fair)")
    print(f"# dtype={args.dtype} pca={args.pca} M={args.m} ef_add={args.ef_add} ef_search={args.ef_search} "
          f"threshold={args.threshold} filter_threshold={args.filter_threshold} k={K} queries={args.queries}")
    head = ("| data | n | filter | who | build s | index MB | x f32 | x i8 | recall | p50 ms | p99 ms | "
            "p50/raw | qps (2 thr) | note |")
    print(head)
    print("|" + "---|" * 14)
    rows: list[str] = []
    for size in (int(s) for s in args.sizes.split(",")):
        for kind in args.data.split(","):
            if kind == "clustered":
                data, queries = clustered(size, args.dim, args.queries, seed=1)
            else:
                data, queries = real(size, args.dim, args.queries, n_images=args.real_images)
            run_case(kind, data, queries, args, rows)
            del data
    print(f"# load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
