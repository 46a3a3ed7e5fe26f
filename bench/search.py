"""Search at scale: lookalike (exact/HNSW/IVF planner) against the raw FAISS index on the same data.

    python bench/search.py                                  # 100k, clustered + real, int8 (~5 min)
    python bench/search.py --sizes 100000,1000000 --data clustered --dtype i8 --index hnsw,ivf
    python bench/search.py --sizes 5000000 --data clustered --queries 200 --index ivf,hnsw \
        --raw-same-graph --keep /big/disk/bench5m    # if memory allows; --keep reuses the written rows

For each data set and size it writes the vectors (with two metadata flags: `p10` true on
10 % of records, `p01` on 0.1 %) into a fresh collection through the store API, builds
its index (timed; each of `--index` in turn on the same records), builds the same FAISS
index directly from the NumPy array (the "raw" rows: same M, ef, int8 scalar quantiser,
filter by `IDSelectorBitmap`; IVF and `--raw-same-graph` search lookalike's own index) and
a float32 `IndexHNSWFlat` (same M and efConstruction: FAISS as a user glues it; 4 bytes a
dimension more memory, `--no-equal-recall` leaves it out), and then runs the same queries
against all, each method over all queries in turn, in rotating order over 4 rounds, so that
a busy shared machine slows all alike and no method runs on caches another one just warmed
with the same query. Two comparisons with the bare
library: at *equal recall* (`raw@recall`, issue 21's measure: the plain float32 graph as wide
as it must be to find what lookalike finds) and at *equal work* (`raw@same`: lookalike's own
plan and re-scoring replayed, which isolates lookalike's overhead). Rows per case:

- `raw`: the library at the width lookalike's calibration chose for the filter (efSearch /
  nprobe; the configured one where lookalike scans exactly), top 10 of its 2k int8 candidates
- `raw@same`: the library doing exactly the work lookalike's planner chose for that query
  (`CollectionIndex.last_plan()`: the same efSearch/nprobe sequence, candidate count and
  bitmap selector, or the same exact scan), plus the same float32 re-scoring of the
  candidates from the in-memory array: what the planner's choice costs without lookalike
- `raw@recall`: the float32 `IndexHNSWFlat` (top 10 of its exact float32 scores, filter by
  `IDSelectorBitmap`) at the narrowest efSearch of 16, 24, 32, 48, 64, 96, 128, ... 4096
  whose recall@10 on these queries reaches the `api` row's (found by a batch search per
  width before the timed rounds; the note gives the ef, or says the recall was never reached
  and which ef came closest)
- `store`, `api`: lookalike's engine, and the Python API on top of it (`col.search({"vector": q})`
  with `q` the query's float32 NumPy array, as a Python caller holding embeddings passes it)
- `raw batch`, `raw@recall batch`, `api batch`: every query in one call (`index.search` of the
  batch; the API's `{"vectors": array}` query); "p50" is the time per query of the whole call

Reported per row:

- build s: index build (lookalike: from its vector file, in the background thread)
- index MB: codes + graph links held in memory; x f32 / x i8: that over the raw vector bytes
- recall@10 against exact search over the same records (for filters: over the matching ones)
- p50/p99 ms: one query at a time; `store` is the engine (filter, plan, HNSW, exact re-score),
  `api` adds `Collection.search` (query parsing, documents from SQLite, projection)
- p50/raw, p50/raw@same, p50/raw@recall: p50 over the `raw`, `raw@same` and `raw@recall` row's
  p50 (batch rows: time per query over the raw and the raw@recall batch's); a `# api/raw` line
  per case gives the API's ratios: single over raw@recall (issue 21's target: 1.2 unfiltered,
  1.5 filtered) and over raw@same, batched over both batches
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
# the repository root first, in place of this folder (its scripts are named like standard modules)
sys.path[0] = str(HERE.parent)

import lookalike  # noqa: E402
from lookalike.index.exact import top_k  # noqa: E402
from lookalike.store.filters import parse_filter  # noqa: E402
from lookalike.store import SearchRequest, StoredRecord  # noqa: E402
from bench import search_data  # noqa: E402
clustered, real = search_data.clustered, search_data.real

K = 10
#: Timed passes over the queries per method (order rotated between passes).
ROUNDS = 4
FILTERS = {"none": None, "10%": {"p10": True}, "0.1%": {"p01": True}}


def rss_anon_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("RssAnon"):
                return int(line.split()[1]) / 1024
    return 0.0


def exact_truth(data: np.ndarray, queries: np.ndarray,
                masks: dict[str, np.ndarray | None]) -> dict[str, list[set[int]]]:
    """Exact top 10 per query for every filter (one pass over the scores per chunk of queries)."""
    out: dict[str, list[set[int]]] = {name: [] for name in masks}
    for start in range(0, len(queries), 50):
        scores = queries[start:start + 50] @ data.T
        for name, mask in masks.items():
            part = np.where(mask, scores, -np.inf) if mask is not None else scores
            best = np.argpartition(-part, K, axis=1)[:, :K]
            out[name] += [set(map(int, row)) for row in best]
    return out


def load_collection(db, name: str, data: np.ndarray, masks: dict[str, np.ndarray], args):
    """The collection with every vector written through the store API (exact while loading).

    With `--keep`, a collection already holding these rows (same size, same seed) is reused.
    """
    existing = [c["name"] for c in db.collections()]
    if name in existing:
        col = db.collection(name)
        if col._store.count() == len(data):
            print(f"# reusing the {len(data):,} records kept in {args.keep}", flush=True)
            return col
        db.drop(name)
    col = db.collection(name, create=True, model="none", dim=data.shape[1], index={"type": "exact"},
                        compression={"dtype": args.dtype, "pca_dim": args.pca})
    store = col._store
    for start in range(0, len(data), 50_000):
        batch = [StoredRecord(id=f"r{i}", doc={"p10": bool(masks["10%"][i]), "p01": bool(masks["0.1%"][i])},
                              computed={}, vector=data[i], source_hash="", content_hash=f"{i:016x}")
                 for i in range(start, min(start + 50_000, len(data)))]
        store.write(batch)
    return col


def build_index(db, col, name: str, kind: str, args) -> tuple[float, float]:
    """Switch the collection to `kind` (hnsw or ivf) and wait for its build; (secs, anon MB grown)."""
    before = rss_anon_mb()
    t = time.perf_counter()
    settings = {"type": kind, "connectivity": args.m, "expansion_add": args.ef_add,
                "expansion_search": args.ef_search, "threshold": args.threshold,
                "filter_threshold": args.filter_threshold, "nprobe": args.nprobe, "nlist": args.nlist}
    db.ensure_collection(name, index=settings, compression={"dtype": args.dtype, "pca_dim": args.pca})
    col._store.wait_index()
    info = col.info()["index"]
    assert info["active"] == kind, info
    return time.perf_counter() - t, rss_anon_mb() - before


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


def build_flat(data: np.ndarray, args):
    """FAISS as a user glues it: `IndexHNSWFlat` over the float32 rows (same M and efConstruction
    as lookalike), inner product, no codes to train; (index, secs, MB of vectors and links)."""
    import faiss
    t = time.perf_counter()
    index = faiss.IndexHNSWFlat(data.shape[1], args.m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = args.ef_add
    for start in range(0, len(data), 100_000):
        index.add(data[start:start + 100_000])
    mb = (index.ntotal * data.shape[1] * 4 + index.hnsw.neighbors.size() * 4) / 2**20
    return index, time.perf_counter() - t, mb


#: efSearch values `raw@recall` tries, narrowest first, until it reaches lookalike's recall.
EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072, 4096)


def recall_of(found: list[set[int]], truth: list[set[int]]) -> float:
    return float(np.mean([len(g & t) / K for g, t in zip(found, truth)]))


def equal_recall_ef(flat, queries: np.ndarray, truth: list[set[int]], target: float,
                    mask: np.ndarray | None) -> tuple[int, float, bool]:
    """The narrowest efSearch of EF_LADDER at which `flat` (top 10, float32 scores, filter as an
    IDSelectorBitmap) reaches `target` recall@10 on `queries`: (ef, its recall, reached); never
    reached: the best recall's (narrowest) ef. Each width is one batch search of the queries."""
    bits, selector = bitmap_selector(mask)
    best = (EF_LADDER[0], -1.0)
    for ef in EF_LADDER:
        _, ids = flat.search(queries, K, params=search_params(flat, ef, K, selector))
        rec = recall_of([set(map(int, row[row >= 0])) for row in ids], truth)
        if rec > best[1] + 1e-12:
            best = (ef, rec)
        if rec >= target - 1e-9:
            return ef, rec, True
    return best[0], best[1], False


def bitmap_selector(mask: np.ndarray | None) -> tuple[np.ndarray | None, object]:
    """A filter `mask` as FAISS's IDSelectorBitmap and the packed bits it points into (keep
    both alive while searching); (None, None) without a filter."""
    import faiss
    if mask is None:
        return None, None
    bits = np.packbits(mask, bitorder="little")
    return bits, faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))


def search_params(index, width: int, k: int, selector):
    """FAISS parameters for an HNSW (efSearch) or IVF (nprobe; HNSW quantizer beam) index."""
    import faiss
    if hasattr(index, "hnsw"):
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(width, k)
    else:
        params = faiss.SearchParametersIVF()
        params.nprobe = width
        quantizer = faiss.SearchParametersHNSW()
        quantizer.efSearch = max(128, 2 * width)  # as lookalike's IvfIndex
        params.quantizer_params = quantizer
        params._keep = quantizer
    if selector is not None:
        params.sel = selector
    return params


def raw_searcher(index, mask: np.ndarray | None, args, width: int | None = None):
    """The library at lookalike's calibrated width (`width`; else the configured default): top 10
    of its 2k best codes, no re-scoring."""
    bits, selector = bitmap_selector(mask)
    pool = 2 * K if args.dtype != "f32" else K
    if width is None:
        width = args.ef_search if hasattr(index, "hnsw") else args.nprobe
    params = search_params(index, width, pool, selector)

    def search(q: np.ndarray) -> set[int]:
        _, ids = index.search(q[None], pool, params=params)
        found = ids[0][ids[0] >= 0]
        return set(map(int, found[:K])), bits  # keep the bitmap alive with the closure
    return search


def recall_searcher(flat, mask: np.ndarray | None, ef: int):
    """The float32 `IndexHNSWFlat` at efSearch `ef`: top 10, filter as an IDSelectorBitmap."""
    bits, selector = bitmap_selector(mask)
    params = search_params(flat, ef, K, selector)

    def search(q: np.ndarray) -> set[int]:
        _, ids = flat.search(q[None], K, params=params)
        return set(map(int, ids[0][ids[0] >= 0])), bits  # keep the bitmap alive with the closure
    return search


def same_searcher(index, data: np.ndarray, mask: np.ndarray | None):
    """The library replaying lookalike's plan for a query: same widths, pool, selector or
    exact scan, then the same float32 re-scoring from `data` (the collection's memory-mapped
    vector file, as lookalike does: at 5M rows it may not all be in the page cache)."""
    data = data.view(np.ndarray)
    bits, selector = bitmap_selector(mask)
    slots = np.flatnonzero(mask) if mask is not None else None
    cache: dict[tuple, object] = {}

    def search(q: np.ndarray, plan) -> set[int]:
        for width in plan.widths:  # none for an exact plan
            key = (width, plan.pool, plan.filtered)
            params = cache.get(key)
            if params is None:
                params = cache[key] = search_params(index, width, plan.pool, selector if plan.filtered else None)
            _, ids = index.search(q[None], plan.pool, params=params)
        if plan.kind == "exact" or plan.fallback:
            cand = slots if slots is not None else np.arange(len(data))
            scores = np.einsum("ij,j->i", data[cand], q) if slots is not None else np.einsum("ij,j->i", data, q)
        else:
            cand = ids[0][ids[0] >= 0]
            scores = np.einsum("ij,j->i", data[cand], q)
        best = top_k(scores, K)
        return set(map(int, cand[best])), bits
    return search


def ratio(x: float) -> str:
    """A ratio for the table: two decimals, three under 0.1 (where two would print 0.00)."""
    return f"{x:5.2f}" if not x < 0.1 else f"{x:5.3f}"


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
    folder = args.keep or tempfile.mkdtemp(prefix="lookalike-bench-", dir=args.tmp)
    db = lookalike.connect(folder)
    col = load_collection(db, "bench", data, masks, args)
    t = time.perf_counter()
    cached = Path(folder) / f"truth-{n}-{len(queries)}.npz"
    if args.keep and cached.exists():
        with np.load(cached) as saved:
            truth = {name: [set(map(int, row)) for row in saved[name]] for name in FILTERS}
    else:
        truth = exact_truth(data, queries, {name: masks.get(name) for name in FILTERS})
        if args.keep:
            np.savez(cached, **{name: np.array([sorted(r) for r in rows]) for name, rows in truth.items()})
    print(f"# exact truth {time.perf_counter() - t:.0f}s", flush=True)
    flat = None if args.no_equal_recall else build_flat(data, args)  # shared by every index kind
    for kind in args.index.split(","):
        build_s, ours_anon = build_index(db, col, "bench", kind, args)
        measure(label, kind, col, data, queries, masks, truth, build_s, ours_anon, args, rows, flat)
    del flat
    db.close()
    if not args.keep:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)


def measure(label: str, kind: str, col, data: np.ndarray, queries: np.ndarray, masks: dict, truth: dict,
            build_s: float, ours_anon: float, args, rows: list[str], flat=None) -> None:
    """Rows raw, raw@same, raw@recall, store, api for each filter, with the collection's index of
    `kind` (`flat`: build_flat's (index, secs, MB), or None for no raw@recall row)."""
    import faiss
    n = len(data)
    reload_s = reload_secs(col._store)
    info = col.info()
    ours_mb = info["index"]["memory_bytes"] / 2**20
    ann = col._store._index._ann
    same_graph = args.raw_same_graph or kind == "ivf"
    if same_graph:  # the raw library searching lookalike's own index: isolates the overhead
        raw, raw_build_s, raw_anon, raw_mb = ann.raw, float("nan"), 0.0, ours_mb
    else:
        raw, raw_build_s, raw_anon = build_raw(data, args)
        raw_mb = (raw.ntotal * faiss.downcast_index(raw.storage).code_size + raw.hnsw.neighbors.size() * 4) / 2**20
    f32_mb, i8_mb = n * data.shape[1] * 4 / 2**20, n * data.shape[1] / 2**20
    store = col._store
    lists = f" nlist {info['index']['lists']} nprobe {args.nprobe}" if kind == "ivf" else ""
    for fname, flt in FILTERS.items():
        mask = masks.get(fname)
        where = parse_filter(flt)
        # lookalike's index (the plan's widths refer to it) and vector file
        same_fn = same_searcher(ann.raw, store._vectors.matrix, mask)

        def ours_store(q: np.ndarray) -> set[int]:
            return {int(h.id[1:]) for h in store.search(SearchRequest(vector=q, k=K, where=where))}

        def ours_api(q: np.ndarray) -> set[int]:
            return {int(h["_id"][1:]) for h in col.search({"vector": q}, k=K, filter=flt)["hits"]}

        names = ("raw", "store", "raw@same", "api") + (("raw@recall",) if flat else ())
        lat: dict[str, list[float]] = {name: [] for name in names}
        got: dict[str, list[set[int]]] = {name: [] for name in names}
        plans = []
        for q in queries:  # each query's plan (deterministic: nothing is written meanwhile); warms page-ins
            ours_store(q)
            plans.append(store._index.last_plan())
        # the raw library at the width lookalike's calibration chose for this filter (equal recall
        # before re-scoring differences; raw@same adds the re-scoring): the first width its plans try
        first = [p.widths[0] for p in plans if p.widths]
        raw_width = max(set(first), key=first.count) if first else None
        raw_fn = raw_searcher(raw, mask, args, raw_width)
        # raw@recall: the float32 graph's narrowest efSearch reaching the API's recall on these queries
        target = recall_of([ours_api(q) for q in queries], truth[fname])
        if flat:
            ef, ef_recall, reached = equal_recall_ef(flat[0], queries, truth[fname], target, mask)
            recall_fn = recall_searcher(flat[0], mask, ef)
        for i, q in enumerate(queries[:20]):
            raw_fn(q)
            same_fn(q, plans[i])
            ours_api(q)
            if flat:
                recall_fn(q)
        # Whoever searches a query first pays the CPU-cache misses of its graph path (measured: the
        # second search of the same query takes half the time), so each runs over all the queries
        # in turn (their paths together exceed the caches), in ROUNDS with the order rotated, so a
        # busy shared machine's slow minutes hit all alike.
        for r in range(ROUNDS):
            for j in range(len(names)):
                name = names[(r + j) % len(names)]
                for i, q in enumerate(queries):
                    t = time.perf_counter()
                    if name == "raw":
                        result = raw_fn(q)[0]
                    elif name == "raw@same":
                        result = same_fn(q, plans[i])[0]
                    elif name == "raw@recall":
                        result = recall_fn(q)[0]
                    elif name == "store":
                        result = ours_store(q)
                    else:
                        result = ours_api(q)
                    lat[name].append(time.perf_counter() - t)
                    if r == 0:
                        got[name].append(result)
                    if name == "store":
                        assert store._index.last_plan() == plans[i]
        fns = {"raw": lambda q: raw_fn(q[1]), "raw@same": lambda q: same_fn(q[1], plans[q[0]]),
               "store": lambda q: ours_store(q[1]), "api": lambda q: ours_api(q[1]),
               "raw@recall": lambda q: recall_fn(q[1])}
        widths = sorted({p.widths[-1] for p in plans if p.widths})
        plan_note = f"plan {plans[0].kind} width {widths[0]}-{widths[-1]} pool {plans[0].pool}" if widths \
            else f"plan {plans[0].kind}"
        at_recall = percentiles(lat["raw@recall"])[0] if flat else float("nan")
        for name in names:
            rec = recall_of(got[name], truth[fname])
            p50, p99 = percentiles(lat[name])
            rate = qps(fns[name], list(enumerate(queries)))
            if name in ("raw", "raw@same"):
                build, mem = raw_build_s, raw_mb
                extra = f"same {kind} as lookalike" if same_graph else f"anon+{raw_anon:.0f}MB"
                extra += f", width {raw_width if raw_width is not None else 'default'}"
                if name == "raw@same":
                    extra = f"same {kind} as lookalike, {plan_note}"
            elif name == "raw@recall":
                build, mem = flat[1], flat[2]
                extra = f"IndexHNSWFlat f32, ef {ef}" + (f" (api recall {target:.3f} reached)" if reached else
                                                        f": api recall {target:.3f} never reached, best {ef_recall:.3f}")
            else:
                build, mem, extra = build_s, ours_mb, f"anon+{ours_anon:.0f}MB reload {reload_s:.2f}s"
            over_raw = p50 / percentiles(lat["raw"])[0]
            same = p50 / percentiles(lat["raw@same"])[0]
            rows.append(f"| {label} | {kind} | {n:>9,} | {fname:>4} | {name:10} | {build:7.1f} | {mem:8.1f} | "
                        f"{mem / f32_mb:5.2f} | {mem / i8_mb:5.2f} | {rec:6.3f} | {p50:6.2f} | {p99:6.2f} | "
                        f"{ratio(over_raw)} | {ratio(same)} | {ratio(p50 / at_recall)} | {rate:7.0f} | "
                        f"{extra}{lists if name == 'store' else ''}")
            print(rows[-1], flush=True)
        api_p50 = percentiles(lat["api"])[0]
        single = (api_p50 / at_recall, api_p50 / percentiles(lat["raw@same"])[0])
        recall_batch = (flat[0], ef) if flat else None
        batch_rows(label, kind, n, fname, flt, col, raw, mask, raw_width, queries, truth[fname], args, rows, single,
                   recall_batch)


def batch_rows(label: str, kind: str, n: int, fname: str, flt, col, raw, mask, width, queries: np.ndarray,
               truth: list[set[int]], args, rows: list[str], single: tuple[float, float],
               recall_batch: tuple | None = None) -> None:
    """All queries in one call: `{"vectors": array}` through the API against one FAISS search of
    the batch at the same width, and (`recall_batch`: the float32 graph and its ef) at equal
    recall (all on 2 threads); the time per query of the best of ROUNDS. `single`: the API's
    p50 over raw@recall's and over raw@same's, for the `# api/raw` line."""
    bits, selector = bitmap_selector(mask)
    pool = 2 * K if args.dtype != "f32" else K
    params = search_params(raw, width or (args.ef_search if hasattr(raw, "hnsw") else args.nprobe), pool, selector)
    searches = {"raw batch": lambda: raw.search(queries, pool, params=params)[1]}
    if recall_batch is not None:
        flat, ef = recall_batch
        flat_params = search_params(flat, ef, K, selector)
        searches["raw@recall batch"] = lambda: flat.search(queries, K, params=flat_params)[1]
    times: dict[str, list[float]] = {name: [] for name in (*searches, "api batch")}
    got: dict[str, list[set[int]]] = {}
    for _ in range(ROUNDS):
        for name, search in searches.items():
            t = time.perf_counter()
            ids = search()
            times[name].append(time.perf_counter() - t)
            got[name] = [set(map(int, row[row >= 0][:K])) for row in ids]
        t = time.perf_counter()
        hits = col.search({"vectors": queries}, k=K, filter=flt)["hits"]
        times["api batch"].append(time.perf_counter() - t)
        got["api batch"] = [{int(h["_id"][1:]) for h in one} for one in hits]
    per = {name: min(spent) / len(queries) * 1000 for name, spent in times.items()}
    base, at_recall = per["raw batch"], per.get("raw@recall batch", float("nan"))
    # the targets (#21: 1.2x unfiltered, 1.5x filtered), one line per case for the closing note
    print(f"# api/raw {label} {kind} {n:,} filter {fname}: single {ratio(single[0]).strip()} over raw@recall "
          f"(f32 graph at equal recall{f', ef {recall_batch[1]}' if recall_batch else ''}), {single[1]:.2f} over "
          f"raw@same (lookalike's plan and re-scoring); batched {ratio(per['api batch'] / at_recall).strip()} over the "
          f"raw@recall batch, {per['api batch'] / base:.2f} over the raw batch (per query)", flush=True)
    for name in times:
        rec = recall_of(got[name], truth)
        rows.append(f"| {label} | {kind} | {n:>9,} | {fname:>4} | {name:10} | | | | | {rec:6.3f} | {per[name]:6.3f} | | "
                    f"{ratio(per[name] / base)} | | {ratio(per[name] / at_recall)} | {1000 / per[name]:7.0f} | "
                    f"{len(queries)} queries in one call; ms/query")
        print(rows[-1], flush=True)


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
    ap.add_argument("--threshold", type=int, default=None,
                    help="index.threshold (default: null, chosen by dimension as for users)")
    ap.add_argument("--filter-threshold", type=int, default=4096)
    ap.add_argument("--real-images", type=int, default=2000, help="images drawn and embedded for 'real'")
    ap.add_argument("--index", default="hnsw", help="comma-separated index types measured in turn: hnsw, ivf")
    ap.add_argument("--nlist", type=int, default=None, help="IVF lists (default: 4 sqrt(n))")
    ap.add_argument("--nprobe", type=int, default=32, help="IVF lists scanned per query")
    ap.add_argument("--keep", default=None, help="data folder kept (and reused when it holds the same rows)")
    ap.add_argument("--raw-same-graph", action="store_true",
                    help="raw FAISS rows search lookalike's graph instead of building their own (halves build time)")
    ap.add_argument("--tmp", default=None, help="folder for the temporary data folders")
    ap.add_argument("--no-equal-recall", action="store_true",
                    help="leave out raw@recall (a float32 IndexHNSWFlat: n x dim x 4 bytes more memory, its build)")
    args = ap.parse_args()
    try:
        import faiss
        faiss.omp_set_num_threads(2)
    except ImportError:
        sys.exit("bench/search.py needs the 'ann' extra (faiss-cpu)")
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start (shared machine: "
          f"latencies are noisy; methods alternate in rotating rounds so ratios are fair)")
    print(f"# dtype={args.dtype} pca={args.pca} M={args.m} ef_add={args.ef_add} ef_search={args.ef_search} "
          f"threshold={args.threshold} filter_threshold={args.filter_threshold} nlist={args.nlist} "
          f"nprobe={args.nprobe} k={K} queries={args.queries}")
    head = ("| data | index | n | filter | who | build s | index MB | x f32 | x i8 | recall | p50 ms | p99 ms | "
            "p50/raw | p50/raw@same | p50/raw@recall | qps (2 thr) | note |")
    print(head)
    print("|" + "---|" * 17)
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
