"""CPU time per query of each layer between `Collection.search` and FAISS, at a small size.

    python bench/api_layers.py                      # 20k clustered 256-d, int8 HNSW, 200 queries
    python bench/api_layers.py --n 50000 --queries 300

Where `bench/search.py` times whole searches against the raw library (wall clock, rounds on a
quiet machine), this splits the Python API's overhead into its layers, in CPU time of this
process (`time.process_time`, FAISS on one thread), so a shared busy machine still gives
usable figures. Rows, each the best of 3 passes over the queries:

- raw faiss: the HNSW index's own `search` at the width and pool lookalike's plan chose
- raw@same: that search plus the float32 re-scoring of its candidates (bench/search.py's
  raw@same, the reference of issue 21's targets)
- index.search: lookalike's index (plan, FAISS, float32 re-scoring of the candidates, top k)
- store.search: the store (read lock, cached live & filter mask, ids)
- store.search_docs: the same search and its hits' kept documents by slot, in one call
- store.get: the stored documents of a search's 10 hits (kept per slot after the first read)
- parse_vector: the check of one query vector given as a list; query_vector (NumPy): as a
  float32 array, with the cosine metric's normalisation (query/arrays.py)
- api: `col.search({"vector": ...}, k=10)` with the vector as a list (the short path of
  query/quick.py: checks, the vector, store.search_docs, hit dicts); api (NumPy): the same
  with the query's float32 array, as bench/search.py's `api` row passes it
- api general: the same search through the general path (every option parsed, `Searcher.run`)
- api id: `col.search({"id": ...}, k=10)` (the anchor's stored vector; itself left out)
- raw batch, api batch: every query in one call; time per query
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[0] = str(HERE.parent)  # the repository root, in place of this folder

import lookalike  # noqa: E402
import lookalike.collection as api_module  # noqa: E402
from lookalike.query.arrays import query_vector  # noqa: E402
from lookalike.records import parse_vector  # noqa: E402
from lookalike.store import SearchRequest, StoredRecord  # noqa: E402
from lookalike.store.filters import parse_filter  # noqa: E402
from bench.search import same_searcher, search_params  # noqa: E402
from bench.search_data import clustered  # noqa: E402

K = 10


def cpu_us(fn, n: int, passes: int = 3) -> float:
    """Best CPU microseconds per call of `fn(i)` over i in range(n)."""
    best = float("inf")
    for _ in range(passes):
        t = time.process_time()
        for i in range(n):
            fn(i)
        best = min(best, (time.process_time() - t) / n * 1e6)
    return best


def general_us(fn, n: int) -> float:
    """`cpu_us` with the short path turned off: every search takes the general path."""
    quick = api_module.quick_search
    api_module.quick_search = lambda *args: None
    try:
        return cpu_us(fn, n)
    finally:
        api_module.quick_search = quick


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    import faiss
    faiss.omp_set_num_threads(1)
    n, q_count = args.n, args.queries
    data, queries = clustered(n, args.dim, q_count, seed=1)
    p10 = np.random.default_rng(5).random(n) < 0.10
    folder = tempfile.mkdtemp(prefix="lookalike-layers-")
    db = lookalike.connect(folder)
    try:
        col = db.collection("b", create=True, model="none", dim=args.dim, index={"type": "exact"},
                            compression={"dtype": "i8"})
        store = col._store
        store.write([StoredRecord(id=f"r{i}", doc={"p10": bool(p10[i]), "name": f"item {i}", "price": i % 97},
                                  computed={}, vector=data[i], source_hash="", content_hash=f"{i:016x}")
                     for i in range(n)])
        db.ensure_collection("b", index={"type": "hnsw", "threshold": min(5000, n // 2), "filter_threshold": 500})
        store.wait_index()
        listed = [q.tolist() for q in queries]
        print(f"# n={n:,} dim={args.dim} int8 HNSW, k={K}, {q_count} queries; CPU us per query")
        print("| filter | layer | us/query | x raw faiss | x raw@same |")
        print("|---|---|---|---|---|")
        for fname, flt in (("none", None), ("10%", {"p10": True})):
            where = parse_filter(flt)
            hits = [store.search(SearchRequest(vector=q, k=K, where=where)) for q in queries]
            plan = store._index.last_plan()
            allowed = store._allowed(where, ())
            known = store.count() if flt is None else None
            raw = store._index._ann.raw
            selector = store._index._infos.get(allowed).selector(allowed) if flt else None
            params = search_params(raw, plan.widths[0], plan.pool, selector)
            same = same_searcher(raw, store._vectors.matrix, np.asarray(allowed) if flt else None)
            rows = {
                "raw faiss": cpu_us(lambda i: raw.search(queries[i][None], plan.pool, params=params), q_count),
                "raw@same": cpu_us(lambda i: same(queries[i], plan), q_count),
                "index.search": cpu_us(lambda i: store._index.search(queries[i], K, allowed, known), q_count),
                "store.search": cpu_us(lambda i: store.search(SearchRequest(vector=queries[i], k=K, where=where)),
                                       q_count),
                "store.search_docs": cpu_us(lambda i: store.search_docs(SearchRequest(vector=queries[i], k=K,
                                                                                    where=where)), q_count),
                "store.get (10 hits)": cpu_us(lambda i: store.get([h.id for h in hits[i]]), q_count),
                "parse_vector": cpu_us(lambda i: parse_vector(listed[i], args.dim), q_count),
                "query_vector (NumPy)": cpu_us(lambda i: query_vector(queries[i], args.dim, True), q_count),
                "api": cpu_us(lambda i: col.search({"vector": listed[i]}, k=K, filter=flt), q_count),
                "api (NumPy)": cpu_us(lambda i: col.search({"vector": queries[i]}, k=K, filter=flt), q_count),
                "api general": general_us(lambda i: col.search({"vector": listed[i]}, k=K, filter=flt), q_count),
                "api id": cpu_us(lambda i: col.search({"id": f"r{i}"}, k=K, filter=flt), q_count),
                "raw batch": cpu_us(lambda i: raw.search(queries, plan.pool, params=params), 1) / q_count,
                "api batch": cpu_us(lambda i: col.search({"vectors": listed}, k=K, filter=flt), 1) / q_count,
            }
            for name, us in rows.items():
                print(f"| {fname} | {name} | {us:7.1f} | {us / rows['raw faiss']:5.2f} | {us / rows['raw@same']:5.2f} |")
    finally:
        db.close()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
