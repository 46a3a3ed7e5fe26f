"""Where a `match` query's time goes (issue 16): milliseconds per query for each stage.

    python bench/copyprofile.py [--stored 8] [--queries 48]
    python bench/copyprofile.py --real [--scale 10000] [--queries 200] [--dump hits.json]
    python bench/copyprofile.py --real --scale 100000 --matching both   # FAISS against OpenCV

A collection of scikit-image photos (`--stored` of them); queries are copies of them (every
transform of lookalike/testing/copies.py COPY_TRANSFORMS in turn) and as many non-copies
(photos not stored, edited). `--real`: bench/copyset.py's set instead (every `--queries`-th
of its queries), with bench/copybench.py's synthetic distractors up to `--scale` records;
`--dump` writes each query's hits (ids, scores, `_match`) as JSON, to compare two versions'
decisions. `--matching both` runs every query twice, its descriptor matching by FAISS's binary
k-NN and by OpenCV's batchDistance in turns (which first alternating), and prints each one's
latency and matching time side by side (the stage table then sums both). Each stage's
functions are wrapped with a timer; stages nest (`verify` holds `descriptor matching` and
`RANSAC`), so the rows do not add up to the total. Wall-clock and CPU
(process_time: every thread of the process) are both shown: on a shared machine the CPU
milliseconds are the steadier, on a quiet one the wall-clock is what a user waits.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from functools import wraps

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import numpy as np

import lookalike
from lookalike.query import match as match_mod
from lookalike.query import verify as verify_mod
from lookalike.testing.copies import COPY_TRANSFORMS
from lookalike.testing.photos import jpeg_base64, skimage_photo

PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "horse", "brick",
          "grass", "gravel", "moon", "page", "text", "clock", "cell"]
OUTSIDE = ["hubble_deep_field", "retina", "immunohistochemistry", "logo"]

TIMES: dict[str, float] = collections.defaultdict(float)
#: The stage row of descriptor matching (`--matching both` reads it per run).
MATCHING = "    descriptor matching + ratio test"
CPU: dict[str, float] = collections.defaultdict(float)
CALLS: dict[str, int] = collections.defaultdict(int)


def timed(module, name: str, label: str) -> None:
    """Wrap `module.name` so that its calls add to TIMES[label]."""
    real = getattr(module, name)

    @wraps(real)
    def wrapper(*args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return real(*args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - start
            CPU[label] += time.process_time() - cpu
            CALLS[label] += 1
    setattr(module, name, wrapper)


def instrument() -> None:
    import cv2

    timed(match_mod, "_query", "query: decode, embedding, hashes, ORB")
    timed(match_mod, "query_hashes", "  hashes")
    timed(match_mod, "features", "  ORB (plain, mirror, dense)")
    timed(match_mod, "_candidates", "candidates (fingerprints, embedding)")
    timed(match_mod, "_centre_candidates", "centre embedding (nothing verified)")
    timed(match_mod, "verified", "verification (all candidates)")
    timed(verify_mod, "estimate", "  estimate (descriptor matching + RANSAC)")
    timed(verify_mod, "descriptor_matches", MATCHING)
    timed(verify_mod, "photometric", "  photometric check")
    timed(match_mod, "_flat_match", "  fingerprint fallback")
    timed(match_mod, "smooth_match", "  smooth fallback")
    real_ransac = cv2.estimateAffinePartial2D

    def ransac(*args, **kwargs):
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return real_ransac(*args, **kwargs)
        finally:
            TIMES["    RANSAC"] += time.perf_counter() - start
            CPU["    RANSAC"] += time.process_time() - cpu
            CALLS["    RANSAC"] += 1
    cv2.estimateAffinePartial2D = ransac
    encoder_embed = None

    def embed_timer(encoder):
        nonlocal encoder_embed
        if encoder_embed is not None:
            return
        encoder_embed = encoder.embed

        def embed(*args, **kwargs):
            start, cpu = time.perf_counter(), time.process_time()
            try:
                return encoder_embed(*args, **kwargs)
            finally:
                TIMES["  embedding"] += time.perf_counter() - start
                CPU["  embedding"] += time.process_time() - cpu
                CALLS["  embedding"] += 1
        encoder.embed = embed
    instrument.embed_timer = embed_timer  # type: ignore[attr-defined]


def use_matching(mode: str) -> None:
    """Descriptor matching by FAISS or OpenCV from now on ("default": whichever is installed)."""
    verify_mod.use_faiss(mode != "opencv")
    if mode == "faiss" and verify_mod._faiss() is None:
        raise SystemExit("--matching faiss needs FAISS (the `ann` extra)")


def photo_queries(args) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(stored (id, base64), queries (kind, base64)) of the scikit-image photos."""
    stored = {n: skimage_photo(n, 512) for n in PHOTOS[:args.stored]}
    outside = [skimage_photo(n, 512) for n in OUTSIDE]
    names = list(COPY_TRANSFORMS)
    queries = []
    for i in range(args.queries):
        photo = list(stored.values())[i % len(stored)]
        queries.append(("copy", jpeg_base64(COPY_TRANSFORMS[names[i % len(names)]](photo, i), 92)))
        im = outside[i % len(outside)]
        queries.append(("non-copy", jpeg_base64(COPY_TRANSFORMS[names[(i * 7) % len(names)]](im, i), 92)))
    return [(n, jpeg_base64(im, 92)) for n, im in stored.items()], queries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stored", type=int, default=8)
    ap.add_argument("--queries", type=int, default=48)
    ap.add_argument("--real", action="store_true", help="bench/copyset.py's set (every --queries-th query)")
    ap.add_argument("--scale", type=int, default=0, help="with --real: synthetic distractors up to this many records")
    ap.add_argument("--dump", default="", help="write each query's hits here (JSON)")
    ap.add_argument("--no-scan", action="store_true", help="candidates as past FINGERPRINT_SCAN_MAX records (the "
                    "embedding's alone, as at 100k), whatever the collection's size")
    ap.add_argument("--matching", choices=("default", "faiss", "opencv", "both"), default="default",
                    help="descriptor matching by FAISS or OpenCV (query/verify.py `two_nearest`), or both in turns")
    ap.add_argument("--db", default="", help="keep the collection in this folder between runs (delete it when "
                    "the stored features or the set change)")
    args = ap.parse_args()
    if args.real:
        import copybench
        import copyset

        s = copyset.build()
        stored = [(rid, copybench.b64(im)) for rid, _, im in s.stored]
        picked = s.queries[::max(1, len(s.queries) // args.queries)][:args.queries]
        queries = [(("copy" if item is not None else "non-copy"), copybench.b64(im)) for _, im, item in picked]
        names = [name for name, _, _ in picked]
    else:
        stored, queries = photo_queries(args)
        names = [kind for kind, _ in queries]
    with tempfile.TemporaryDirectory() as tmp, lookalike.connect(args.db or tmp) as db:
        name = f"profile-{'real' if args.real else args.stored}-{args.scale}"
        col = db.collection(name, create=True)
        ready = col.count() >= max(args.scale, len(stored))  # a run stopped half way builds it again
        if not ready:
            for start in range(0, len(stored), 64):
                col.upsert([{"_id": n, "_base64": data} for n, data in stored[start:start + 64]])
            if args.real and args.scale:
                import copybench

                copybench.add_distractors(col, [n for n, _ in stored], args.scale)
        col._store.wait_index()  # past its threshold the graph is built in the background: time it built
        if args.no_scan:
            match_mod.FINGERPRINT_SCAN_MAX = 0
        col.match({"base64": queries[0][1]})  # warm: model, caches
        instrument()
        instrument.embed_timer(col._searcher.encoder)  # type: ignore[attr-defined]
        per_kind: dict[str, list[float]] = collections.defaultdict(list)
        cpu_kind: dict[str, list[float]] = collections.defaultdict(list)
        found, dump = 0, []
        modes = {"default": ["default"], "both": ["faiss", "opencv"]}.get(args.matching, [args.matching])
        by_mode: dict[str, dict[str, list[float]]] = {m: collections.defaultdict(list) for m in modes}
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for i, ((kind, data), name) in enumerate(zip(queries, names)):
            for mode in modes if i % 2 == 0 else modes[::-1]:
                use_matching(mode)
                matching = TIMES[MATCHING]
                start, cpu = time.perf_counter(), time.process_time()
                hits = col.match({"base64": data})["hits"]
                by_mode[mode]["wall"].append((time.perf_counter() - start) * 1000)
                by_mode[mode]["cpu"].append((time.process_time() - cpu) * 1000)
                by_mode[mode]["matching"].append((TIMES[MATCHING] - matching) * 1000)
                if mode == modes[0]:
                    per_kind[kind].append(by_mode[mode]["wall"][-1])
                    cpu_kind[kind].append(by_mode[mode]["cpu"][-1])
                    found += kind == "copy" and bool(hits)
                    dump.append({"query": name, "hits": [{k: h[k] for k in ("_id", "_score", "_match")} for h in hits]})
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        count = col.count()
    n = len(queries) * len(modes)   # runs: the stage table is per run
    copies = sum(kind == "copy" for kind, _ in queries)
    print(f"{count} records, {len(queries)} queries ({copies} copies, {found} found; {len(queries) - copies} "
          f"non-copies), each run {len(modes)}x ({', '.join(modes)}); "
          f"wall {wall * 1000 / n:.1f} ms, CPU {cpu * 1000 / n:.1f} ms a query")
    if len(modes) > 1:
        print("| descriptor matching | wall p50 ms | wall mean ms | CPU mean ms | matching ms a query |\n|---|---|---|---|---|")
        for mode, m in by_mode.items():
            print(f"| {mode} | {np.percentile(m['wall'], 50):.1f} | {np.mean(m['wall']):.1f} | {np.mean(m['cpu']):.1f} "
                  f"| {np.mean(m['matching']):.2f} |")
    for kind, ms in per_kind.items():
        print(f"{kind}: wall p50 {np.percentile(ms, 50):.1f} ms, mean {np.mean(ms):.1f} ms; "
              f"CPU p50 {np.percentile(cpu_kind[kind], 50):.1f} ms, mean {np.mean(cpu_kind[kind]):.1f} ms")
    print("| stage | wall ms a query | CPU ms a query | calls a query |\n|---|---|---|---|")
    for label, total in TIMES.items():
        print(f"| {label} | {total * 1000 / n:.2f} | {CPU[label] * 1000 / n:.2f} | {CALLS[label] / n:.1f} |")
    if args.dump:
        with open(args.dump, "w") as f:
            json.dump(dump, f, indent=0)


if __name__ == "__main__":
    main()
