"""Search parameters: validation of k/offset/fields/boosts, anchor combination, projection.

Anchor rule (documented in docs/search.md): with positives P and negatives N (unit
vectors), the query vector is mean(P) - w * mean(N), w = `negative_weight` (default 0.5).
A hit's score is then its mean cosine similarity to the positives minus w times its mean
similarity to the negatives: with one positive and no negatives, plain cosine similarity.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..errors import BadRequest
from ..records import INTERNAL
from ..store.filters import MATCH_ALL, Node, parse_filter
from ..validation import check_bool, check_field_names, check_int, check_number

MAX_K = 1000
MAX_OFFSET = 100_000
DEFAULT_NEGATIVE_WEIGHT = 0.5
MAX_BOOST = 1e6  # larger weights overflow float32 scores
MAX_MIN_SCORE = 1e9  # beyond any score: boosts are at most MAX_BOOST each
QUERY_KINDS = ("id", "ids", "url", "base64", "vector", "vectors", "color", "text", "file", "image")


@dataclass
class SearchParams:
    query: dict
    k: int = 10
    offset: int = 0
    where: Node = MATCH_ALL
    group_by: str | None | bool = None  # False: no grouping, not even the collection's group_field
    negative: list[dict] = field(default_factory=list)
    boosts: list[tuple[Node, float]] = field(default_factory=list)
    fields: list[str] | None = None
    negative_weight: float = DEFAULT_NEGATIVE_WEIGHT
    same_label: bool = False  # only results sharing the query's top label (query/labels.py)
    min_score: float | None = None  # hits scoring below it are dropped (query/engine.py)
    explain: bool = False  # each hit carries `_explain`, the parts of its score (query/explain.py)
    collapse: dict | None = None  # one hit per near-duplicate cluster (query/collapse.py)
    trace: dict = field(default_factory=dict)  # what the ranking used, kept for `explain`


def check_query(query: Any, *, what: str = "query") -> dict:
    """A query object has exactly one known kind of anchor."""
    if not isinstance(query, dict) or len(query) != 1:
        raise BadRequest(f"'{what}' must be an object with exactly one of: {', '.join(QUERY_KINDS)}")
    kind = next(iter(query))
    if kind not in QUERY_KINDS:
        raise BadRequest(f"unknown {what} kind '{kind}'; use one of: {', '.join(QUERY_KINDS)}")
    return query


def parse_boosts(boost: Any, *, stored: bool = False) -> list[tuple[Node, float]]:
    """`[{"filter": {...}, "weight": 0.2}, ...]` -> parsed (filter, weight) pairs.

    A rule without a weight would change nothing, so it is refused; `stored`: rules a
    collection's settings kept from versions that took a missing weight as 0.
    """
    if boost is None:
        return []
    if not isinstance(boost, list):
        raise BadRequest("'boost' must be a list of {\"filter\": ..., \"weight\": ...} rules")
    out = []
    for n, rule in enumerate(boost, 1):
        if not isinstance(rule, dict) or set(rule) - {"filter", "weight"} or "filter" not in rule:
            raise BadRequest("each boost rule is {\"filter\": {...}, \"weight\": number}")
        if "weight" not in rule and not stored:
            raise BadRequest(f"boost rule {n} has no 'weight' (a number, e.g. 0.2; negative to demote), "
                             "so it would change nothing")
        weight = check_number(rule.get("weight", 0.0), -MAX_BOOST, MAX_BOOST,
                              f"a boost rule's 'weight' must be a number from -{MAX_BOOST:g} to {MAX_BOOST:g}")
        out.append((parse_filter(rule["filter"]), weight))
    return out


def parse_search(query: Any, *, k: Any = 10, offset: Any = 0, filter: Any = None, group_by: Any = None,
                 negative: Any = None, boost: Any = None, fields: Any = None,
                 negative_weight: Any = DEFAULT_NEGATIVE_WEIGHT, same_label: Any = False,
                 min_score: Any = None, explain: Any = False, collapse: Any = None) -> SearchParams:
    """Validate every search parameter at once, so a bad one fails before any work."""
    check_query(query)
    if negative is None:
        negative = []
    if not isinstance(negative, list):
        raise BadRequest("'negative' must be a list of anchors such as {\"id\": \"x\"}")
    for anchor in negative:
        check_query(anchor, what="negative")
    if group_by is not None and group_by is not False and (not isinstance(group_by, str) or not group_by):
        raise BadRequest("'group_by' must be a field name, or false for no grouping")
    if fields is not None:
        check_field_names("fields", fields)
    negative_weight = check_number(negative_weight, 0, 10, "'negative_weight' must be a number from 0 to 10")
    check_bool("same_label", same_label)
    check_bool("explain", explain)
    min_score, collapse = check_min_score(min_score), check_collapse(collapse)
    return SearchParams(query=query, k=check_int("k", k, 1, MAX_K), offset=check_int("offset", offset, 0, MAX_OFFSET),
                        where=parse_filter(filter), group_by=group_by, negative=negative,
                        boosts=parse_boosts(boost), fields=fields, negative_weight=negative_weight,
                        same_label=same_label, min_score=min_score, explain=explain, collapse=collapse)


def check_min_score(value: Any) -> float | None:
    """`min_score`: None (keep every hit) or a finite number; hits scoring below it are dropped."""
    if value is None:
        return None
    return check_number(value, -MAX_MIN_SCORE, MAX_MIN_SCORE,
                        f"'min_score' must be a number from -{MAX_MIN_SCORE:g} to {MAX_MIN_SCORE:g} "
                        f"(hits scoring below it are dropped), got {value!r}")


def check_collapse(value: Any) -> dict | None:
    """`collapse`: false/None (off), true, or `{"ids": bool, "threshold": 0..1}`; normalised to a
    dict or None. Checked here with the other parameters; applied by query/collapse.py."""
    if value is None or value is False:
        return None
    if value is True:
        value = {}
    if not isinstance(value, dict) or set(value) - {"ids", "threshold"}:
        raise BadRequest("'collapse' must be true, false or {\"ids\": true, \"threshold\": 0.6} "
                         "(ids: list the hidden ids; threshold: copy similarity 0..1)")
    check_bool("collapse.ids", value.get("ids", False))
    threshold = value.get("threshold")
    if threshold is not None:
        threshold = check_number(threshold, 0, 1, f"'collapse.threshold' must be a number from 0 to 1, got {threshold!r}")
    return {"ids": value.get("ids", False), "threshold": threshold}


def combine_anchors(positives: Sequence[np.ndarray], negatives: Sequence[np.ndarray], weight: float) -> np.ndarray:
    """mean(positives) - weight * mean(negatives): scores become mean similarities."""
    if len(positives) == 1 and not negatives:  # the common single anchor: its mean is itself
        return np.array(positives[0], dtype=np.float32)
    q = np.mean(np.stack(positives), axis=0)
    if negatives:
        q = q - weight * np.mean(np.stack(negatives), axis=0)
    return q.astype(np.float32)


def format_hits(store, hits: list, fields: list[str] | None, group_by: str | None) -> list[dict]:
    """Hits as the contract returns them: `_id`, `_score`, projected fields, `_group` when grouped."""
    ids = [hit.id for hit in hits]
    docs = store.get(ids)
    items = hit_items(ids, [hit.score for hit in hits], docs, fields)
    if items is not None:  # every one still stored
        if group_by:
            for item, hit in zip(items, hits):
                item["_group"] = hit.group
        return items
    out = []
    for hit, doc in zip(hits, docs):
        if doc is None:  # deleted after the search ranked it: not a hit any more
            continue
        item = hit_item(hit.id, hit.score, doc, fields)
        if group_by:
            item["_group"] = hit.group
        out.append(item)
    return out


HIDDEN_A, HIDDEN_B = INTERNAL  # the keys a hit never shows (tested by name: a tuple loop per hit costs more)


def hit_item(rid: str, score: float, doc: dict, fields: list[str] | None) -> dict:
    """`{"_id": rid, "_score": score rounded, **project(doc, fields)}`, the same keys in the same
    order, built without the intermediate projected dict when every field is shown (a third less
    time per hit)."""
    if fields is not None:
        return {"_id": rid, "_score": round(score, 6), **project(doc, fields)}
    item = {"_id": rid, "_score": round(score, 6)}
    item.update(doc)
    item["_id"] = rid  # a document's own `_id` is not shown in its place; the key keeps its position
    for key in INTERNAL:
        if key in item:
            del item[key]
    return item


def hit_items(ids: Sequence[str], scores: Sequence[float], docs: Sequence[dict | None],
              fields: list[str] | None) -> list[dict] | None:
    """`hit_item` of each (id, score, document), or None if a document is None (deleted since
    the ranking). Without `fields`, the common case, each hit is one dict display (`hit_item`'s
    call, `update` and key loop cost more per hit than the copy itself). `scores` may be a
    float32 array (`rounded`)."""
    if None in docs:
        return None
    if fields is not None:
        return [hit_item(rid, score, doc, fields)  # type: ignore[arg-type]
                for rid, score, doc in zip(ids, rounded(scores), docs)]
    # `_id` twice: the key keeps its first place and takes the last value (a document's own
    # `_id`, if it had one, never shows)
    out = [{"_id": rid, "_score": score, **doc, "_id": rid}  # type: ignore[dict-item]
           for rid, score, doc in zip(ids, rounded(scores), docs)]
    for item in out:
        if HIDDEN_A in item or HIDDEN_B in item:
            for key in INTERNAL:
                item.pop(key, None)
    return out


def rounded(scores: Sequence[float]) -> list[float]:
    """`[round(s, 6) for s in scores]`, for float32 scores in one NumPy pass with the same values
    (a third of the time of ten `round`s): a float32 times 10**6 is exact in float64 (24 + 20
    bits), so `rint` rounds its exact decimal value half to even as `round` does, and dividing
    the integer by 10**6 is correctly rounded, as is `round`'s reading of its decimal result."""
    if type(scores) is np.ndarray and scores.dtype == np.float32:
        wide = scores.astype(np.float64)
        wide *= 1e6
        np.rint(wide, out=wide)
        wide /= 1e6
        return wide.tolist()
    return [round(score, 6) for score in scores]


def dotted(doc: Any, path: str) -> Any:
    """The value at a dotted path of a document; None where the path is absent."""
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def project(doc: dict, fields: list[str] | None) -> dict:
    """The record's fields for a hit: all, or only those asked for (dotted paths allowed)."""
    if fields is None:
        return {k: v for k, v in doc.items() if k != "_id" and k not in INTERNAL}
    out = {}
    for name in fields:
        value: Any = doc
        for part in name.split("."):
            if not isinstance(value, dict) or part not in value:
                break
            value = value[part]
        else:
            out[name] = value
    return out
