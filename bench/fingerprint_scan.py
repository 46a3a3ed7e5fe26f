"""`match`'s fingerprint scan: every pair of crop windows by one BLAS product, or FAISS's binary k-NN.

    python bench/fingerprint_scan.py [--scale 20000] [--queries 40] [--db DIR]

Up to FINGERPRINT_SCAN_MAX records, `match` scores every stored fingerprint against the query's
(query/duplicates.py `similarities`), its 81 crop sub-windows against each record's 25 crop
windows among them: about 2,000 pairs a record. The collection is bench/copyset.py's records
with bench/copybench.py's synthetic distractors up to `--scale`; its first N fingerprints are
scanned for N in 441, 1,000, 2,000, 5,000, 20,000 (up to `--scale`), with every `--queries`-th
query of the set, both ways in turns: `top=0` (the product over every pair, on the BLAS
threads the machine gives) and `top=12` (`_top_crop_scores` on one thread, what `match` asks
for). Printed per N: milliseconds a query each way (wall, and CPU of every thread), the wall
ratio, and how many queries got the same 12 best scores both ways (all, or the k-NN's bound
is wrong).
"""
from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
sys.path.append(os.path.dirname(os.path.abspath(__file__)))

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import copybench  # noqa: E402
import copyset  # noqa: E402
import lookalike  # noqa: E402
from lookalike.index.faiss_lib import hamming_faiss  # noqa: E402
from lookalike.models.fingerprint import query_hashes  # noqa: E402
from lookalike.query.duplicates import similarities, stored_fingerprints  # noqa: E402
from lookalike.query.match import FINGERPRINT_CANDIDATES  # noqa: E402


def best(sims: np.ndarray, k: int) -> np.ndarray:
    """The k best scores, sorted (ties make the ids, not the scores, depend on the order)."""
    return np.sort(sims[np.argpartition(-sims, min(len(sims), k) - 1)[:k]])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=20_000)
    ap.add_argument("--queries", type=int, default=40, help="queries taken (spread over the set's)")
    ap.add_argument("--db", default="", help="keep the collection here between runs")
    args = ap.parse_args()
    if hamming_faiss() is None:
        raise SystemExit("the k-NN needs FAISS (the `ann` extra)")
    s = copyset.build()
    picked = s.queries[::max(1, len(s.queries) // args.queries)][:args.queries]
    hashes_of = [query_hashes(im) for _, im, _ in picked]
    with tempfile.TemporaryDirectory() as tmp, lookalike.connect(args.db or tmp) as db:
        col = db.collection(f"scan-{args.scale}", create=True)
        if col.count() < max(args.scale, len(s.stored)):
            for start in range(0, len(s.stored), 64):
                col.upsert([{"_id": rid, "_base64": copybench.b64(im)} for rid, _, im in s.stored[start:start + 64]])
            copybench.add_distractors(col, [rid for rid, _, _ in s.stored], args.scale)
        _, hashes = stored_fingerprints(col._store)
    print(f"{len(picked)} queries, fingerprints of {len(hashes)} records; BLAS threads as the machine gives, "
          "FAISS on one (as `match` calls it)")
    print("| records | BLAS product ms a query (CPU) | FAISS k-NN ms a query (CPU) | ratio (wall) | same 12 best |\n|---|---|---|---|---|")
    for n in sorted({size for size in (441, 1_000, 2_000, 5_000, 20_000, args.scale) if size <= len(hashes)}):
        part, same = hashes[:n], 0
        times: dict[int, list[float]] = {0: [], FINGERPRINT_CANDIDATES: []}
        cpu: dict[int, list[float]] = {0: [], FINGERPRINT_CANDIDATES: []}
        for i, qh in enumerate(hashes_of):
            got = {}
            for top in ((0, FINGERPRINT_CANDIDATES) if i % 2 == 0 else (FINGERPRINT_CANDIDATES, 0)):
                start, clock = time.perf_counter(), time.process_time()
                sims = similarities(part, qh, top=top)
                times[top].append((time.perf_counter() - start) * 1000)
                cpu[top].append((time.process_time() - clock) * 1000)
                got[top] = best(sims, FINGERPRINT_CANDIDATES)
            same += bool(np.array_equal(got[0], got[FINGERPRINT_CANDIDATES]))
        full, knn = np.mean(times[0]), np.mean(times[FINGERPRINT_CANDIDATES])
        print(f"| {n:,} | {full:.1f} ({np.mean(cpu[0]):.1f}) | {knn:.1f} ({np.mean(cpu[FINGERPRINT_CANDIDATES]):.1f}) "
              f"| {full / knn:.1f} | {same}/{len(hashes_of)} |")


if __name__ == "__main__":
    main()
