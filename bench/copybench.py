"""Real-picture copy detection (issue 16): recall@1 per transform of `match`, plain embedding
search and pHash side by side, the false-match rate on non-copies, and timings.

    python bench/copybench.py [--originals 60] [--distractors 400] [--pairs 12] [--threshold T]

The set is bench/copyset.py's. recall@1: the first hit belongs to the query's item (a grey
query may find any tint of its picture); for `match` also a hit at all. `false`: share of
non-copies for which `match` returned anything. pHash and search rank every record (a tie
counts as a miss for pHash); they are shown for the copies only (they always answer).
"""
from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import base64  # noqa: E402
import collections  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import imagehash  # noqa: E402
import numpy as np  # noqa: E402

import copyset  # noqa: E402
import lookalike  # noqa: E402
from lookalike.testing.copies import encode  # noqa: E402


def b64(im) -> str:
    return base64.b64encode(encode(im, quality=92)).decode()


def accepted(name: str, item: str, items: set[str]) -> set[str]:
    """Items a query's first hit may belong to: its own, and for a grey query any tint of it."""
    if "grey" not in name:
        return {item}
    base = item.split("-tint")[0]
    return {i for i in items if i == base or i.startswith(base + "-tint")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=60)
    ap.add_argument("--distractors", type=int, default=400)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--threshold", type=float, default=None)
    ap.add_argument("--no-baselines", action="store_true")
    args = ap.parse_args()
    t = time.perf_counter()
    s = copyset.build(args.originals, args.distractors, args.pairs)
    item_of = s.item_of()
    items = set(item_of.values())
    print(f"set: {len(s.stored)} stored pictures ({len(items)} items), {len(s.queries)} queries "
          f"({sum(q[2] is None for q in s.queries)} non-copies); built in {time.perf_counter() - t:.0f} s")
    with tempfile.TemporaryDirectory() as tmp, lookalike.connect(tmp) as db:
        col = db.collection("copies", create=True)
        t = time.perf_counter()
        for start in range(0, len(s.stored), 64):
            col.upsert([{"_id": rid, "_base64": b64(im)} for rid, _, im in s.stored[start:start + 64]])
        print(f"ingested in {time.perf_counter() - t:.1f} s ({col.count()} records)\n")
        hashes = {} if args.no_baselines else {rid: imagehash.phash(im) for rid, _, im in s.stored}
        rows: dict[str, list] = collections.defaultdict(lambda: [0, 0, 0, 0])  # n, match, search, phash
        false, nonc, ms, misses = 0, 0, [], []
        for name, im, item in s.queries:
            data = b64(im)
            res = col.match({"base64": data}, threshold=args.threshold)
            ms.append(res["took_ms"])
            hits = res["hits"]
            if item is None:
                nonc += 1
                false += bool(hits)
                if hits:
                    misses.append(("false", name, hits[0]["_id"], hits[0]["_score"], hits[0]["_match"]))
                continue
            key = "pair" if "+" in name else name
            ok = accepted(name, item, items)
            r = rows[key]
            r[0] += 1
            good = bool(hits) and item_of.get(hits[0]["_id"]) in ok
            r[1] += good
            if not good:
                misses.append((name, item, hits[0]["_id"] if hits else None, hits[0]["_score"] if hits else None))
            if not args.no_baselines:
                top = col.search({"base64": data}, k=1)["hits"]
                r[2] += bool(top) and item_of[top[0]["_id"]] in ok
                h = imagehash.phash(im)
                d = {rid: h - v for rid, v in hashes.items()}
                best = min(d.values())
                winners = [rid for rid, v in d.items() if v == best]
                r[3] += len(winners) == 1 and item_of[winners[0]] in ok
        print("| transform | queries | `match` | embedding search | pHash |")
        print("|---|---|---|---|---|")
        total = np.zeros(4)
        for key, (n, m, e, p) in rows.items():
            total += (n, m, e, p)
            print(f"| {key} | {n} | {m / n:.3f} | {e / n:.3f} | {p / n:.3f} |")
        n = total[0]
        print(f"| **all copies** | {int(n)} | {total[1] / n:.3f} | {total[2] / n:.3f} | {total[3] / n:.3f} |")
        print(f"\nfalse matches on non-copies: {false}/{nonc} = {false / max(1, nonc):.3f}")
        print(f"match took_ms: p50 {np.percentile(ms, 50):.1f}, p90 {np.percentile(ms, 90):.1f} "
              f"(collection of {col.count()})")
        if os.environ.get("COPYBENCH_MISSES"):
            for m in misses:
                print("miss", m)


if __name__ == "__main__":
    main()
