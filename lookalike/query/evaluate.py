"""Search quality against a golden set: mAP@k, nDCG@k, precision@k and recall@k.

Design notes (how it works and why): docs/search.md, "Notes: `lookalike/query/evaluate.py`".
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..errors import BadRequest, LookalikeError
from ..validation import check_int, is_grade

METRICS = ("map", "ndcg", "precision", "recall")
#: Search parameters a truth line may carry besides `query` and `relevant`.
SEARCH_KEYS = ("filter", "group_by", "negative", "boost", "fields", "negative_weight", "text", "hybrid", "offset")


@dataclass
class TruthQuery:
    """One line of a truth file: the query, graded relevant ids and extra search parameters."""

    query: dict
    relevant: dict[str, float]
    params: dict = field(default_factory=dict)
    line: int = 0


# -- metrics (pure NumPy) -------------------------------------------------------------------
def precision_at_k(grades: np.ndarray, k: int) -> np.ndarray:
    """Per query: share of the top k hits that are relevant (grade > 0). `grades`: Q x >=k."""
    return (np.asarray(grades, dtype=np.float64)[:, :k] > 0).sum(axis=1) / k


def recall_at_k(grades: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query: share of all relevant ids found in the top k (0 where nothing is relevant)."""
    found = (np.asarray(grades, dtype=np.float64)[:, :k] > 0).sum(axis=1)
    n = np.asarray(n_relevant, dtype=np.float64)
    return np.divide(found, n, out=np.zeros_like(found, dtype=np.float64), where=n > 0)


def average_precision_at_k(grades: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query: mean of precision@i over relevant ranks i <= k, normalised by min(n_relevant, k)."""
    hit = (np.asarray(grades, dtype=np.float64)[:, :k] > 0).astype(np.float64)
    ranks = np.arange(1, hit.shape[1] + 1)
    prec_at_i = np.cumsum(hit, axis=1) / ranks
    denom = np.minimum(np.asarray(n_relevant, dtype=np.float64), k)
    total = (prec_at_i * hit).sum(axis=1)
    return np.divide(total, denom, out=np.zeros_like(total), where=denom > 0)


def dcg_at_k(grades: np.ndarray, k: int) -> np.ndarray:
    """Per query: sum of grade_i / log2(i + 1) over the first k ranks (linear gains)."""
    g = np.asarray(grades, dtype=np.float64)[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, g.shape[1] + 2))
    return (g * discounts).sum(axis=1)


def ndcg_at_k(grades: np.ndarray, ideal: np.ndarray, k: int) -> np.ndarray:
    """Per query: DCG@k of the ranking over DCG@k of the ideal one (grades sorted, best first)."""
    ideal_sorted = -np.sort(-np.asarray(ideal, dtype=np.float64), axis=1)
    best = dcg_at_k(ideal_sorted, k)
    got = dcg_at_k(grades, k)
    return np.divide(got, best, out=np.zeros_like(got), where=best > 0)


def score_rankings(rankings: list[list[str]], truths: list[dict[str, float]], k: int) -> dict[str, float]:
    """Mean metrics over queries, from ranked id lists and `{id: grade}` truths."""
    if len(rankings) != len(truths):
        raise ValueError("one ranking per truth is needed")
    if not rankings:
        return {f"{m}@{k}": 0.0 for m in METRICS}
    q = len(rankings)
    width = max(k, max((len(t) for t in truths), default=0))
    grades = np.zeros((q, k))
    ideal = np.zeros((q, width))
    for row, (ranked, truth) in enumerate(zip(rankings, truths)):
        grades[row, :min(k, len(ranked))] = [truth.get(i, 0.0) for i in ranked[:k]]
        positive = [g for g in truth.values() if g > 0]
        ideal[row, :len(positive)] = positive
    n_relevant = (ideal > 0).sum(axis=1)
    return {f"map@{k}": float(average_precision_at_k(grades, n_relevant, k).mean()),
            f"ndcg@{k}": float(ndcg_at_k(grades, ideal, k).mean()),
            f"precision@{k}": float(precision_at_k(grades, k).mean()),
            f"recall@{k}": float(recall_at_k(grades, n_relevant, k).mean())}


# -- truth files ----------------------------------------------------------------------------
def parse_truth_line(obj: Any, line: int) -> TruthQuery:
    """Validate one decoded truth line; BadRequest naming the line and the problem."""
    where = f"truth line {line}"
    if not isinstance(obj, dict):
        raise BadRequest(f"{where}: expected an object {{\"query\": ..., \"relevant\": ...}}")
    if "query" not in obj or "relevant" not in obj:
        raise BadRequest(f"{where}: needs both 'query' and 'relevant'")
    query = obj["query"]
    if not isinstance(query, dict) or len(query) != 1:
        raise BadRequest(f"{where}: 'query' must be an object with one anchor, such as {{\"id\": \"x\"}}")
    rel = obj["relevant"]
    if isinstance(rel, list):
        if not all(isinstance(i, str) and i for i in rel):
            raise BadRequest(f"{where}: 'relevant' must list record ids (strings)")
        relevant = {i: 1.0 for i in rel}
    elif isinstance(rel, dict):
        relevant = {}
        for rid, grade in rel.items():
            if not is_grade(grade):
                raise BadRequest(f"{where}: grade of {rid!r} must be a number >= 0, got {grade!r}")
            relevant[rid] = float(grade)
    else:
        raise BadRequest(f"{where}: 'relevant' must be a list of ids or an object {{id: grade}}")
    unknown = set(obj) - {"query", "relevant", *SEARCH_KEYS}
    if unknown:
        raise BadRequest(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; "
                         f"search parameters allowed: {', '.join(SEARCH_KEYS)}")
    params = {key: obj[key] for key in SEARCH_KEYS if key in obj}
    return TruthQuery(query=query, relevant=relevant, params=params, line=line)


def read_truth(path: Path) -> list[TruthQuery]:
    """Every query of a JSONL truth file (blank lines skipped); BadRequest naming a bad line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BadRequest(f"cannot read truth file {path}: {exc.strerror or exc}") from None
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"truth line {number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        out.append(parse_truth_line(obj, number))
    if not out:
        raise BadRequest(f"truth file {path} holds no queries")
    return out


# -- running --------------------------------------------------------------------------------
def evaluate(collection, truth: Iterable[TruthQuery | dict], k: int = 10) -> dict:
    """Run each query through `collection.search` and score it.

    Returns `{"metrics": {"map@k", "ndcg@k", "precision@k", "recall@k"}, "queries": N, "k": k,
    "per_query": [{"line", "query", "metrics"...}]}`. A query by id never finds itself, so the
    query's own id is dropped from its relevant set.
    """
    check_int("k", k, 1, 1000)
    items = [t if isinstance(t, TruthQuery) else parse_truth_line(t, n) for n, t in enumerate(truth, start=1)]
    rankings, truths, per_query = [], [], []
    for item in items:
        try:
            hits = collection.search(item.query, k=k, **{**item.params, "fields": []})["hits"]
        except LookalikeError as exc:
            raise type(exc)(f"truth line {item.line}: {exc.message}") from None
        relevant = dict(item.relevant)
        own = item.query.get("id")
        if isinstance(own, str):
            relevant.pop(own, None)
        ranked = [h["_id"] for h in hits]
        rankings.append(ranked)
        truths.append(relevant)
        per_query.append({"line": item.line, "query": item.query,
                          "metrics": score_rankings([ranked], [relevant], k)})
    return {"metrics": score_rankings(rankings, truths, k), "queries": len(items), "k": k, "per_query": per_query}


def evaluate_file(collection, path: Path, k: int = 10) -> dict:
    """`evaluate` over a JSONL truth file (see the module docstring for the format)."""
    return evaluate(collection, read_truth(path), k=k)
