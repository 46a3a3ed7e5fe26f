"""Aligned statistics of every keypoint-verified `match` hit on bench/copyset.py's set (issue 16).

    python bench/copyhits.py [--db DIR] [--every N] [--out /tmp/copyhits.pkl]

A rule that rejects false matches must cost no true copy, so a candidate statistic is measured
on both sides before a threshold is chosen. For each query, `match` runs as usual while the
verified copies it finds are recorded (query/match.py `verified`, wrapped); each hit verified
by a keypoint fit is then aligned with the set's own stored picture (the transform RANSAC
found, query at SIDE / 2 pixels) and measured:

- `outside`: share of the query outside the stored image's footprint;
- `out_detail`: share of the query outside the footprint (eroded 2 px) with local detail
  (5 x 5 lightness std over 8 of 255): what the stored image does not explain;
- `dis24`, `dis48`: share of the footprint whose lightness differs by more than 24 / 48 of
  255 after a robust linear fit of the query's lightness to the stored one (brightness,
  contrast, grey undone): overlays, painted-over or differing drawing.

`match` keeps no stored pixels (only keypoints and a 12 x 12 colour grid, models/keypoints.py),
so the inside statistics say what a finer stored representation could tell, not what `match`
can test today. The table gives, per statistic, the quantiles of the true first hits and, for
each false hit (a hit for a non-copy query), how many true first hits reach its value: zero
means a threshold there would cost no copy of this set. `--db` keeps the ingested collection.
"""
from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import pickle  # noqa: E402
import threading  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

import copyset  # noqa: E402
import lookalike  # noqa: E402
from copybench import accepted, b64  # noqa: E402
from lookalike.models.keypoints import KEYPOINTS, reduced  # noqa: E402
from lookalike.query import match as match_mod  # noqa: E402

STATS = ("outside", "out_detail", "dis24", "dis48")


def _detail(grey: np.ndarray) -> np.ndarray:
    """Local lightness std (5 x 5) of the lightly blurred image."""
    g = cv2.GaussianBlur(grey, (3, 3), 0)
    mean = cv2.blur(g, (5, 5))
    return np.sqrt(np.maximum(cv2.blur(g * g, (5, 5)) - mean * mean, 0))


def aligned_stats(query: np.ndarray, stored: np.ndarray, matrix: np.ndarray) -> dict[str, float]:
    """The statistics above for RGB arrays at SIDE and the 2 x 3 query -> stored transform."""
    h, w = query.shape[0] // 2, query.shape[1] // 2
    # both halved by area first (warpAffine does not average), then the stored one warped:
    # query half-pixels -> stored half-pixels is the same transform with its shift halved
    small = cv2.resize(stored, (stored.shape[1] // 2, stored.shape[0] // 2), interpolation=cv2.INTER_AREA)
    to_stored = matrix * np.array([[1.0, 1.0, 0.5]])
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(small, to_stored, (w, h), flags=flags, borderValue=(0, 0, 0))
    inside = cv2.warpAffine(np.ones(small.shape[:2], np.float32), to_stored, (w, h), flags=flags, borderValue=0)
    gq = cv2.cvtColor(cv2.resize(query, (w, h), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY).astype(np.float32)
    gs = cv2.cvtColor(warped, cv2.COLOR_RGB2GRAY).astype(np.float32)
    kernel = np.ones((5, 5), np.uint8)
    ins = cv2.erode((inside > 0.99).astype(np.uint8), kernel).astype(bool)
    out = cv2.erode((inside < 0.01).astype(np.uint8), kernel).astype(bool)
    row = {"outside": float((inside < 0.5).mean()), "out_detail": float((out & (_detail(gq) > 8)).mean()),
           "dis24": 0.0, "dis48": 0.0}
    if ins.sum() > 50:
        a, b = gs[ins], gq[ins]
        keep = np.ones(len(a), bool)
        gain, offset = 1.0, float(np.mean(b - a))
        for _ in range(2):  # the fit of the best three quarters: an overlay does not bend it
            x, y = a[keep], b[keep]
            if x.std() > 1.0:  # least squares; a flat footprint keeps the plain offset
                gain = float(np.mean((x - x.mean()) * (y - y.mean())) / x.var())
                offset = float(y.mean() - gain * x.mean())
            residual = np.abs(gain * a + offset - b)
            keep = residual <= np.quantile(residual, 0.75)
        residual = np.abs(gain * a + offset - b)
        row.update(dis24=float((residual > 24).mean()), dis48=float((residual > 48).mean()))
    return row


def collect(col, s: copyset.CopySet, every: int) -> list[dict]:
    """One row per keypoint-verified hit: query, hit, rank, whether right, transform, statistics."""
    seen: list[tuple[object, object]] = []
    lock = threading.Lock()
    plain = match_mod.verified

    def recorded(query, stored, similarity, dense=False):
        v = plain(query, stored, similarity, dense)
        if v is not None:
            with lock:
                seen.append((stored, v))
        return v

    match_mod.verified = recorded
    item_of = s.item_of()
    items = set(item_of.values())
    pictures = {rid: im for rid, _, im in s.stored}
    store = col._searcher.store
    rows = []
    try:
        for n, (name, im, item) in enumerate(s.queries[::every]):
            seen.clear()
            hits = col.match({"base64": b64(im)})["hits"]
            ids = [h["_id"] for h in hits]
            cache = match_mod._feature_cache(store)
            ok = accepted(name, item, items) if item else set()
            query = reduced(im)
            for rank, (h, doc) in enumerate(zip(hits, store.get(ids))):
                mine = cache.get(h["_id"], doc.get(KEYPOINTS)) if doc else None
                v = next((v for f, v in seen if f is mine), None)
                if v is None or v.estimate.inliers == 0:
                    continue
                e = v.estimate
                q = np.ascontiguousarray(query[:, ::-1]) if e.mirrored else query
                rows.append({"n": n * every, "transform": name, "id": h["_id"], "rank": rank,
                             "right": item_of[h["_id"]] in ok, "copy": item is not None, "inliers": e.inliers,
                             **aligned_stats(q, reduced(pictures[h["_id"]]), e.matrix)})
    finally:
        match_mod.verified = plain
    return rows


def report(rows: list[dict]) -> None:
    first = [r for r in rows if r["right"] and r["rank"] == 0]
    false = [r for r in rows if not r["copy"]]
    print(f"{len(first)} true first hits, {len(false)} hits for non-copies")
    print("| statistic | true first hits: min / 5 % / 50 % / 95 % / 99 % / max |")
    print("|---|---|")
    for key in STATS:
        q = np.percentile([r[key] for r in first], [0, 5, 50, 95, 99, 100]) if first else []
        print(f"| {key} | {' / '.join(f'{v:.3f}' for v in q)} |")
    print("\nfalse hits (value, and how many true first hits reach it):")
    for r in sorted(false, key=lambda r: (r["n"], r["rank"])):
        cells = ", ".join(f"{k} {r[k]:.3f} ({sum(t[k] >= r[k] for t in first)})" for k in STATS)
        print(f"query {r['n']} rank {r['rank']} {r['id']}: {cells}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None, help="keep the ingested collection here between runs")
    ap.add_argument("--every", type=int, default=1, help="take every n-th query")
    ap.add_argument("--out", default="/tmp/copyhits.pkl")
    args = ap.parse_args()
    s = copyset.build()
    db = lookalike.connect(args.db or "/tmp/copyhits-db")
    col = db.collection("copies", create=True)
    if col.count() != len(s.stored):
        for start in range(0, len(s.stored), 64):
            col.upsert([{"_id": rid, "_base64": b64(im)} for rid, _, im in s.stored[start:start + 64]])
    rows = collect(col, s, args.every)
    with open(args.out, "wb") as fh:
        pickle.dump(rows, fh)
    report(rows)


if __name__ == "__main__":
    main()
