"""Which learner tunes a collection best? P@5 / mAP@10 on categories the learner never saw.

Real pictures (bench/realsets.py: icon names drawn by several themes). The categories, not the
records, are split in halves: a learner fits on one half; search by id is scored among the
other half's records only, so every number is for labels the tune never saw. Means over seeds.

    python bench/tune_learners.py [--model efficientnet-lite0-style] [--seeds 3] [--limit N]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.realsets import load_embedded  # noqa: E402
from lookalike.query.learners import (fit_identity, fit_lda, fit_pca_whiten, fit_proxy_head,  # noqa: E402
                                      retrieval_scores)

CANDIDATES = {
    "untuned": fit_identity,
    "pca-whiten 128": fit_pca_whiten,
    "lda 64 shrink .3": lambda x, y: fit_lda(x, y, dims=64, shrink=0.3),
    "lda 128 shrink .1": lambda x, y: fit_lda(x, y, dims=128, shrink=0.1),
    "lda 128 shrink .3": lambda x, y: fit_lda(x, y, dims=128, shrink=0.3),
    "lda 128 shrink .6": lambda x, y: fit_lda(x, y, dims=128, shrink=0.6),
    "lda 256 shrink .3": lambda x, y: fit_lda(x, y, dims=256, shrink=0.3),
    "proxy-head 128": fit_proxy_head,
    "proxy-head 128 t.1": lambda x, y: fit_proxy_head(x, y, temperature=0.1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0-style")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--only", default=None, help="comma-separated candidate names")
    args = parser.parse_args()
    ids, cats, vectors = load_embedded("icons", args.model, args.limit)
    labels = np.unique(cats, return_inverse=True)[1]
    print(f"{len(ids)} icons, {labels.max() + 1} categories, {args.model}; tune on half the categories, "
          f"score on the other half ({args.seeds} seeds)\n")
    names = args.only.split(",") if args.only else list(CANDIDATES)
    print(f"{'learner':<22} {'P@5':>6} {'mAP@10':>7} {'fit s':>6}")
    for name in names:
        scores, took = [], 0.0
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            tune_cats = rng.permutation(labels.max() + 1)[: (labels.max() + 1) // 2]
            tune = np.isin(labels, tune_cats)
            start = time.perf_counter()
            t = CANDIDATES[name](vectors[tune], labels[tune])
            took += time.perf_counter() - start
            scores.append(retrieval_scores(t.apply(vectors[~tune]), labels[~tune]))
        p = np.mean([s["p@5"] for s in scores])
        m = np.mean([s["map@10"] for s in scores])
        print(f"{name:<22} {p:>6.3f} {m:>7.3f} {took / args.seeds:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
