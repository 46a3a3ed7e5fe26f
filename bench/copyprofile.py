"""Where a `match` query's time goes (issue 16): milliseconds per query for each stage.

    python bench/copyprofile.py [--stored 8] [--queries 48]

A collection of scikit-image photos (`--stored` of them); queries are copies of them (every
transform of lookalike/testing/copies.py COPY_TRANSFORMS in turn) and as many non-copies
(photos not stored, edited). Each stage's functions are wrapped with a timer; stages nest
(`verify` holds `knnMatch` and `RANSAC`), so the rows do not add up to the total. Run it on a
quiet machine: the numbers are wall-clock.
"""
from __future__ import annotations

import argparse
import collections
import tempfile
import time
from functools import wraps

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
CALLS: dict[str, int] = collections.defaultdict(int)


def timed(module, name: str, label: str) -> None:
    """Wrap `module.name` so that its calls add to TIMES[label]."""
    real = getattr(module, name)

    @wraps(real)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            TIMES[label] += time.perf_counter() - start
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
    timed(verify_mod, "estimate", "  estimate (knnMatch + RANSAC)")
    timed(verify_mod, "_matches", "    knnMatch + ratio test")
    timed(verify_mod, "photometric", "  photometric check")
    timed(match_mod, "_flat_match", "  fingerprint fallback")
    timed(match_mod, "smooth_match", "  smooth fallback")
    real_ransac = cv2.estimateAffinePartial2D

    def ransac(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real_ransac(*args, **kwargs)
        finally:
            TIMES["    RANSAC"] += time.perf_counter() - start
            CALLS["    RANSAC"] += 1
    cv2.estimateAffinePartial2D = ransac
    encoder_embed = None

    def embed_timer(encoder):
        nonlocal encoder_embed
        if encoder_embed is not None:
            return
        encoder_embed = encoder.embed

        def embed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return encoder_embed(*args, **kwargs)
            finally:
                TIMES["  embedding"] += time.perf_counter() - start
                CALLS["  embedding"] += 1
        encoder.embed = embed
    instrument.embed_timer = embed_timer  # type: ignore[attr-defined]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stored", type=int, default=8)
    ap.add_argument("--queries", type=int, default=48)
    args = ap.parse_args()
    stored = {n: skimage_photo(n, 512) for n in PHOTOS[:args.stored]}
    outside = [skimage_photo(n, 512) for n in OUTSIDE]
    names = list(COPY_TRANSFORMS)
    queries = []
    for i in range(args.queries):
        photo = list(stored.values())[i % len(stored)]
        queries.append(("copy", jpeg_base64(COPY_TRANSFORMS[names[i % len(names)]](photo, i), 92)))
        im = outside[i % len(outside)]
        queries.append(("non-copy", jpeg_base64(COPY_TRANSFORMS[names[(i * 7) % len(names)]](im, i), 92)))
    with tempfile.TemporaryDirectory() as tmp, lookalike.connect(tmp) as db:
        col = db.collection("profile", create=True)
        col.upsert([{"_id": n, "_base64": jpeg_base64(im, 92)} for n, im in stored.items()])
        col.match({"base64": queries[0][1]})  # warm: model, caches
        instrument()
        instrument.embed_timer(col._searcher.encoder)  # type: ignore[attr-defined]
        per_kind: dict[str, list[float]] = collections.defaultdict(list)
        found = 0
        for kind, data in queries:
            start = time.perf_counter()
            hits = col.match({"base64": data})["hits"]
            per_kind[kind].append((time.perf_counter() - start) * 1000)
            found += kind == "copy" and bool(hits)
    n = len(queries)
    print(f"{args.stored} stored photos, {n} queries ({n // 2} copies, {found} found; {n // 2} non-copies)")
    for kind, ms in per_kind.items():
        print(f"{kind}: p50 {np.percentile(ms, 50):.1f} ms, mean {np.mean(ms):.1f} ms")
    print("| stage | ms a query | calls a query |\n|---|---|---|")
    for label, total in TIMES.items():
        print(f"| {label} | {total * 1000 / n:.2f} | {CALLS[label] / n:.1f} |")


if __name__ == "__main__":
    main()
