"""How long does `tune` take as a collection grows? Wall time of `col.tune` per size, 2 cores.

Synthetic vectors of the default encoder's width (1504), shaped like bench/realsets.py's icons:
a strong "style" direction per record (one of 8, shared across categories) plus a weak category
signal; categories of 20 records. The time covers reading the raw vectors and labels, choosing
the learner (three fits on a split of the categories), the final fit, scoring the held-out
quarter before and after, and mapping every row (the ANN index is rebuilt afterwards, in the
background, as after any tune; `index s` is the wait until it answers again).

    python bench/tune_scale.py [--sizes 5000,20000,100000] [--dim 1504] [--index exact]

`--index exact` leaves the ANN index out (its build at load time, minutes for 100k 1504-d
vectors on 2 cores, is not what this measures).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])

import lookalike  # noqa: E402


def records(n: int, dim: int, per_cat: int = 20, seed: int = 0):
    """Batches of `_vector` records with a `kind` label."""
    rng = np.random.default_rng(seed)
    styles = rng.normal(size=(8, dim)).astype(np.float32) * 2.0
    cats = rng.normal(size=(n // per_cat + 1, 64)).astype(np.float32)
    for lo in range(0, n, 10_000):
        rows = np.arange(lo, min(n, lo + 10_000))
        v = styles[rng.integers(8, size=len(rows))] + rng.normal(size=(len(rows), dim)).astype(np.float32) * 0.5
        v[:, :64] += cats[rows // per_cat] * 1.2
        yield [{"_id": f"r{r}", "_vector": vec.tolist(), "kind": f"k{r // per_cat}"} for r, vec in zip(rows, v)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5000,20000,100000")
    parser.add_argument("--dim", type=int, default=1504)
    parser.add_argument("--index", default="auto", help="the collection's index type (auto, exact, hnsw, ivf)")
    args = parser.parse_args()
    print(f"{'records':>8} {'dim':>5} {'load s':>7} {'tune s':>7} {'index s':>8} {'learner':<14} "
          f"{'P@5 before':>10} {'after':>6}")
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.TemporaryDirectory() as tmp, lookalike.connect(tmp) as db:
            col = db.collection("t", create=True, model="none", dim=args.dim, index={"type": args.index})
            start = time.perf_counter()
            for batch in records(n, args.dim):
                col.upsert(batch)
            loaded = time.perf_counter() - start
            start = time.perf_counter()
            out = col.tune(field="kind")
            tuned = time.perf_counter() - start
            start = time.perf_counter()
            col.search({"id": "r1"}, k=10)
            while col.info()["index"]["state"] == "building":
                time.sleep(0.5)
            ready = time.perf_counter() - start
            print(f"{n:>8} {args.dim:>5} {loaded:>7.1f} {tuned:>7.1f} {ready:>8.1f} {out['method']:<14} "
                  f"{out['before']['p@5']:>10.3f} {out['after']['p@5']:>6.3f}", flush=True)


if __name__ == "__main__":
    main()
