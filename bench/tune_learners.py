"""Which learner tunes a collection best? P@5 / mAP@10 on categories the learner never saw.

Real pictures (bench/realsets.py: icon names drawn by several themes). The categories, not the
records, are split, so every number is for labels the tune never saw. Means over seeds.

- `--protocol half`: a learner fits on half the categories; search by id is scored among the
  other half's records only.
- `--protocol holdout`: `lookalike eval --holdout`'s split (query/tune.py `holdout_split`: a
  quarter of the categories held out, seeds 17, 1, 2); held-out records query the whole set, the
  fitted records included. `--why` adds what explains the gap between the protocols: P@5 when
  searching the held-out records only, and the share of the top 5 that are fitted records.

    python bench/tune_learners.py [--model efficientnet-lite0-style] [--seeds 3] [--limit N]
        [--set icons|icon-families] [--protocol half|holdout] [--why]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.realsets import load_embedded  # noqa: E402
from bench.realsets import SETS  # noqa: E402
from lookalike.query.tune import holdout_split  # noqa: E402
from lookalike.query.learners import (choose_learner, fit_identity, fit_lda, fit_pca_whiten,  # noqa: E402
                                      fit_proxy_head, fit_within_whiten, retrieval_scores)

CANDIDATES = {
    "untuned": fit_identity,
    "pca-whiten 128": fit_pca_whiten,
    "lda 64 shrink .3": lambda x, y: fit_lda(x, y, dims=64, shrink=0.3),
    "lda 128 shrink .1": lambda x, y: fit_lda(x, y, dims=128, shrink=0.1),
    "lda 128 shrink .3": lambda x, y: fit_lda(x, y, dims=128, shrink=0.3),
    "lda 128 shrink .6": lambda x, y: fit_lda(x, y, dims=128, shrink=0.6),
    "lda 256 shrink .3": lambda x, y: fit_lda(x, y, dims=256, shrink=0.3),
    "within-whiten .03": fit_within_whiten,
    "within-whiten .3": lambda x, y: fit_within_whiten(x, y, shrink=0.3),
    "chosen (tune's choice)": lambda x, y: __import__("lookalike.query.learners", fromlist=["CHOICES"]).CHOICES[
        choose_learner(x, y)[0]](x, y),
    "proxy-head 128": fit_proxy_head,
    "proxy-head 128 t.1": lambda x, y: fit_proxy_head(x, y, temperature=0.1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0-style")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--only", default=None, help="comma-separated candidate names")
    parser.add_argument("--set", default="icons", choices=SETS)
    parser.add_argument("--protocol", default="half", choices=("half", "holdout"))
    parser.add_argument("--why", action="store_true", help="with --protocol holdout: the distractor columns")
    args = parser.parse_args()
    ids, cats, vectors = load_embedded(args.set, args.model, args.limit)
    labels = np.unique(cats, return_inverse=True)[1]
    what = ("tune on half the categories, score on the other half" if args.protocol == "half" else
            "eval --holdout: a quarter of the categories held out, their records query the whole set")
    print(f"{args.set}: {len(ids)} pictures, {labels.max() + 1} categories, {args.model}; {what} ({args.seeds} seeds)\n")
    names = args.only.split(",") if args.only else list(CANDIDATES)
    why = args.why and args.protocol == "holdout"
    print(f"{'learner':<22} {'P@5':>6} {'mAP@10':>7} {'fit s':>6}" + (f" {'P@5 held-out only':>18} {'top5 fitted':>12}"
                                                                      if why else ""))
    for name in names:
        scores, took, extra = [], 0.0, []
        for seed in range(args.seeds):
            tune = fitted_rows(cats, labels, seed, args.protocol)
            start = time.perf_counter()
            t = CANDIDATES[name](vectors[tune], labels[tune])
            took += time.perf_counter() - start
            if args.protocol == "half":
                scores.append(retrieval_scores(t.apply(vectors[~tune]), labels[~tune]))
                continue
            tuned = t.apply(vectors)
            scores.append(holdout_scores(tuned, labels, ~tune))
            if why:
                extra.append((retrieval_scores(tuned[~tune], labels[~tune])["p@5"], fitted_share(tuned, ~tune)))
        p = np.mean([s["p@5"] for s in scores])
        m = np.mean([s["map@10"] for s in scores])
        tail = f" {np.mean([e[0] for e in extra]):>18.3f} {np.mean([e[1] for e in extra]):>12.2f}" if why else ""
        print(f"{name:<22} {p:>6.3f} {m:>7.3f} {took / args.seeds:>6.1f}{tail}", flush=True)
    if why:
        print(f"\nfitted records: {np.mean([fitted_rows(cats, labels, s, 'holdout').mean() for s in range(args.seeds)]):.2f}"
              " of the set")


def fitted_rows(cats: list[str], labels: np.ndarray, seed: int, protocol: str) -> np.ndarray:
    """Row mask of the records a learner fits on (the others' categories it never sees)."""
    if protocol == "holdout":
        held = holdout_split(list(cats), seed=(17, 1, 2)[seed] if seed < 3 else seed)
        return ~np.isin(np.asarray(cats), list(held))
    rng = np.random.default_rng(seed)
    return np.isin(labels, rng.permutation(labels.max() + 1)[: (labels.max() + 1) // 2])


def holdout_scores(tuned: np.ndarray, labels: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    """P@5 / mAP@10 of the `queries` rows, each searching every other row (as `eval --holdout`)."""
    marked = labels.copy()
    marked[~queries] = -1 - np.arange((~queries).sum())  # fitted rows: never relevant, never queries
    return retrieval_scores(tuned, marked)  # singletons (the fitted rows) are left out of the means


def fitted_share(tuned: np.ndarray, queries: np.ndarray) -> float:
    """Mean share of fitted records in the held-out queries' top 5."""
    q = np.flatnonzero(queries)
    sims = tuned[q] @ tuned.T
    sims[np.arange(len(q)), q] = -np.inf
    top = np.argsort(-sims, axis=1)[:, :5]
    return float((~queries)[top].mean())


if __name__ == "__main__":
    main()
