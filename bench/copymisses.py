"""Failure analysis of `match` on bench/copyset.py's set (issue 16): one line per miss.

    python bench/copymisses.py [--out /tmp/copymisses.jsonl] [--db DIR]

For each copy `match` misses: its transform, item, what `match` returned, the rank of the
item's first record in plain embedding search (top 20), and for each of the item's stored
records (plain and mirrored query) the descriptor matches, RANSAC inliers, whether the fit is
plausible, and the photometric check's lightness correlation and hue difference. For each
non-copy that matched: what it matched. `--db` keeps the ingested collection between runs
(delete it when the stored features change).
"""
from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402

import numpy as np  # noqa: E402

import copyset  # noqa: E402
import lookalike  # noqa: E402
from copybench import accepted, b64  # noqa: E402
from lookalike.models.keypoints import KEYPOINTS, decode_features  # noqa: E402
from lookalike.query import match as match_mod  # noqa: E402
from lookalike.query.verify import estimate, photometric  # noqa: E402


def diagnose(engine, data: str, stored_ids: list[str]) -> list[dict]:
    """Verification details of the query against each stored record named."""
    q, _ = match_mod._query(engine, "base64", data)
    out = []
    for rid, doc in zip(stored_ids, engine.store.get(stored_ids)):
        stored = decode_features(doc.get(KEYPOINTS)) if doc else None
        if stored is None:
            out.append({"id": rid, "keypoints": None})
            continue
        row = {"id": rid, "stored_kp": len(stored.points), "query_kp": len(q.plain.points)}
        for tag, (feats, look) in (("plain", (q.plain, q.look)), ("mirror", q.mirror())):
            e = estimate(feats, stored, tag == "mirror")
            if e is None:
                row[tag] = None
                continue
            ncc, hue, distance = photometric(e, look, stored)
            row[tag] = {"matches": e.matches, "inliers": e.inliers, "plausible": e.plausible, "angle": e.angle,
                        "scale": e.scale, "cover": [round(e.stored_cover, 2), round(e.query_cover, 2)],
                        "ncc": round(ncc, 3), "hue": round(hue, 1),
                         "distance": round(distance, 1)}
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/copymisses.jsonl")
    ap.add_argument("--db", default=None)
    ap.add_argument("--every", type=int, default=1, help="take every n-th query")
    args = ap.parse_args()
    s = copyset.build()
    item_of = s.item_of()
    items = set(item_of.values())
    records_of = collections.defaultdict(list)
    for rid, item, _ in s.stored:
        records_of[item].append(rid)
    db = lookalike.connect(args.db or "/tmp/copymisses-db")
    col = db.collection("copies", create=True)
    if col.count() != len(s.stored):
        for start in range(0, len(s.stored), 64):
            col.upsert([{"_id": rid, "_base64": b64(im)} for rid, _, im in s.stored[start:start + 64]])
    engine = col._searcher
    n_miss = n_false = 0
    per: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])  # queries, found
    ms = []
    with open(args.out, "w") as fh:
        for n, (name, im, item) in enumerate(s.queries[::args.every]):
            data = b64(im)
            res = col.match({"base64": data})
            hits = res["hits"]
            ms.append(res["took_ms"])
            if item is None:
                if hits:
                    n_false += 1
                    fh.write(json.dumps({"kind": "false", "n": n, "transform": name, "hits": [
                        (h["_id"], h["_score"], h["_match"]) for h in hits[:3]]}) + "\n")
                continue
            ok = accepted(name, item, items)
            row = per["pair" if "+" in name else name]
            row[0] += 1
            if hits and item_of.get(hits[0]["_id"]) in ok:
                row[1] += 1
                continue
            n_miss += 1
            top = [h["_id"] for h in col.search({"base64": data}, k=20)["hits"]]
            rank = next((i for i, rid in enumerate(top) if item_of.get(rid) in ok), None)
            fh.write(json.dumps({"kind": "miss", "n": n, "transform": name, "item": item,
                                 "got": [(h["_id"], h["_score"], h["_match"]) for h in hits[:2]],
                                 "embedding_rank": rank, "records": diagnose(engine, data, records_of[item][:4])},
                                default=str) + "\n")
            fh.flush()
    for key, (n, found) in sorted(per.items()):
        print(f"| {key} | {n} | {found / n:.3f} |")
    n, found = (sum(v[i] for v in per.values()) for i in (0, 1))
    nonc = sum(q[2] is None for q in s.queries[::args.every])
    print(f"| **all copies** | {n} | {found / n:.3f} |\nfalse matches {n_false}/{nonc}, "
          f"p50 {np.percentile(ms, 50):.1f} ms; misses {n_miss}: {args.out}")


if __name__ == "__main__":
    main()
