"""Aligned statistics of every keypoint-verified `match` hit on bench/copyset.py's set (issue 16).

    python bench/copyhits.py [--db DIR] [--every N] [--pictures] [--out /tmp/copyhits.pkl]
    python bench/copyhits.py --seed 2 --unchecked   # another draw, the pixel check off

A rule that rejects false matches must cost no true copy, so a candidate statistic is measured
on both sides before a threshold is chosen. For each query, `match` runs as usual while the
verified copies it finds are recorded (query/match.py `verified`, wrapped); each hit verified
by a keypoint fit is then aligned with the record's kept thumbnail (the 160 px JPEG of the
collection's `thumbnails` setting; `--pictures`: the set's own picture instead) by the
transform RANSAC found, and measured by query/aligned.py `compare`, the comparison `match`
itself makes (its pixel check, `agrees`, then drops hits, so a run shows the hits it kept):

- `outside`: share of the query (at 160 px) outside the stored image's footprint;
- `out_detail`: share of the query outside the footprint (eroded 2 px) with local detail
  (5 x 5 lightness std over 8 of 255): what the stored image does not explain;
- `dis24`, `dis48`: share of the footprint whose lightness differs by more than 24 / 48 of
  255 after a robust linear fit of the query's lightness to the stored one (brightness,
  contrast, grey undone): overlays, painted-over or differing drawing.

The table gives, per statistic, the quantiles of the true first hits and, for each false hit
(a hit for a non-copy query), how many true first hits reach its value: zero means a
threshold there would cost no copy of this set; then the milliseconds `compare` took a hit.
`--out` keeps every row (with the outside-detail mask) for further measures; `--db` keeps
the ingested collection. `--seed` takes another draw of the set (the thresholds were chosen on
seed 0); `--unchecked` turns the pixel check off (`agrees` always true), so that the hits it
would drop are measured too, and each row says whether it would have (`agrees`).
"""
from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import pickle  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import copyset  # noqa: E402
import lookalike  # noqa: E402
from copybench import accepted, b64  # noqa: E402
from lookalike.models.keypoints import KEYPOINTS, mirrored, reduced  # noqa: E402
from lookalike.query import aligned  # noqa: E402
from lookalike.query import match as match_mod  # noqa: E402

STATS = ("outside", "out_detail", "dis24", "dis48")
#: The pixel check as `match` makes it (`--unchecked` turns match's off; each row still says
#: whether it would pass).
AGREES = aligned.agrees


def collect(col, s: copyset.CopySet, every: int, pictures: bool = False) -> list[dict]:
    """One row per keypoint-verified hit: query, hit, rank, whether right, transform, statistics
    (query/aligned.py `compare`, against the kept thumbnail or, `pictures`, the set's picture)."""
    seen: list[tuple[object, object, object]] = []
    lock = threading.Lock()
    plain = match_mod.verified

    def recorded(query, stored, similarity, dense=False):
        v = plain(query, stored, similarity, dense)
        if v is not None:
            with lock:
                seen.append((stored, v, query))
        return v

    match_mod.verified = recorded
    item_of = s.item_of()
    items = set(item_of.values())
    pics = {rid: im for rid, _, im in s.stored}
    store = col._searcher.store
    rows = []
    try:
        for n, (name, im, item) in enumerate(s.queries[::every]):
            seen.clear()
            hits = col.match({"base64": b64(im)})["hits"]
            ids = [h["_id"] for h in hits]
            cache = match_mod._feature_cache(store)
            ok = accepted(name, item, items) if item else set()
            for rank, (h, doc) in enumerate(zip(hits, store.get(ids))):
                mine = cache.get(h["_id"], doc.get(KEYPOINTS)) if doc else None
                v, q = next(((v, q) for f, v, q in seen if f is mine), (None, None))
                if v is None or v.estimate.inliers == 0 or q.rgb is None:
                    continue
                e = v.estimate
                rgb = mirrored(q.rgb) if e.mirrored else q.rgb
                thumb = (aligned.query_grey(reduced(pics[h["_id"]])) if pictures
                         else aligned.thumbnail_grey(store.thumbnail(h["_id"])))
                t = time.perf_counter()
                a = aligned.compare(aligned.query_grey(rgb), q.plain.size, thumb, mine.size, e.matrix, keep_mask=True)
                took = time.perf_counter() - t
                rows.append({"n": n * every, "transform": name, "id": h["_id"], "rank": rank,
                             "right": item_of[h["_id"]] in ok, "copy": item is not None, "inliers": e.inliers,
                             "spread": e.spread, "stored_cover": e.stored_cover, "query_cover": e.query_cover,
                             "ncc": v.ncc, "ms": took * 1000, "outside": a.outside, "out_detail": a.out_detail,
                             "dis24": a.dis24, "dis48": a.dis48, "out_mask": np.packbits(a.out_mask),
                             "shape": a.out_mask.shape,
                             "agrees": AGREES(a)})
    finally:
        match_mod.verified = plain
    return rows


def report(rows: list[dict]) -> None:
    first = [r for r in rows if r["right"] and r["rank"] == 0]
    false = [r for r in rows if not r["copy"]]
    print(f"{len(first)} true first hits, {len(false)} hits for non-copies "
          f"({sum(r['agrees'] for r in false)} of them passing the pixel check)")
    print("| statistic | true first hits: min / 5 % / 50 % / 95 % / 99 % / max |")
    print("|---|---|")
    for key in STATS:
        q = np.percentile([r[key] for r in first], [0, 5, 50, 95, 99, 100]) if first else []
        print(f"| {key} | {' / '.join(f'{v:.3f}' for v in q)} |")
    print("\nfalse hits (value, and how many true first hits reach it):")
    for r in sorted(false, key=lambda r: (r["n"], r["rank"])):
        cells = ", ".join(f"{k} {r[k]:.3f} ({sum(t[k] >= r[k] for t in first)})" for k in STATS)
        print(f"query {r['n']} rank {r['rank']} {r['id']}: {cells}")
    ms = [r["ms"] for r in rows]
    if ms:
        print(f"\n`compare` ms a hit: p50 {np.percentile(ms, 50):.2f}, p90 {np.percentile(ms, 90):.2f}, "
              f"p99 {np.percentile(ms, 99):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default=None, help="keep the ingested collection here between runs")
    ap.add_argument("--every", type=int, default=1, help="take every n-th query")
    ap.add_argument("--out", default="/tmp/copyhits.pkl")
    ap.add_argument("--pictures", action="store_true", help="against the set's pictures, not the kept thumbnails")
    ap.add_argument("--seed", type=int, default=0, help="another draw of the set (copyset.build's seed)")
    ap.add_argument("--unchecked", action="store_true", help="the pixel check off: every verified hit kept and measured")
    args = ap.parse_args()
    if args.unchecked:
        aligned.agrees = lambda a: True
    s = copyset.build(seed=args.seed)
    db = lookalike.connect(args.db or "/tmp/copyhits-db")
    col = db.collection(f"copies-{args.seed}", create=True)
    if col.count() != len(s.stored):
        for start in range(0, len(s.stored), 64):
            col.upsert([{"_id": rid, "_base64": b64(im)} for rid, _, im in s.stored[start:start + 64]])
    rows = collect(col, s, args.every, args.pictures)
    with open(args.out, "wb") as fh:
        pickle.dump(rows, fh)
    report(rows)


if __name__ == "__main__":
    main()
