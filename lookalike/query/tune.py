"""`tune`: learn from a collection's own labels what "alike" means there (issue 17).

Records sharing a value of a metadata field (or of the collection's `group_field`, with
`groups`) should come close. A linear map is fitted on the raw model vectors of the labelled
records whose value is not in a held-out quarter of the values, in the principal axes of all
the collection's vectors (they use no labels): the learner (a regularised linear discriminant or
within-category whitening, `learners.choose_learner`) is chosen on a split of those training
values, as no one learner won on every real set; search by id of the held-out records among
the collection's records is then scored before and after (P@5, mAP@10: labels the fit never
saw, the other records as distractors, as `eval --holdout` scores). The map is
applied only when both do not fall and P@5 rises; it is stored in the collection's settings
(`tuning`) with the held-out values, so `lookalike eval --holdout` can score with them later.
Records without the field are mapped too; the raw vectors stay, so `reset` goes back exactly.
"""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..errors import BadRequest, NotImplementedYet
from ..store import CollectionStore
from ..store.transform import transform_of
from ..validation import check_bool, check_field_name
from .learners import CHOICES, MAX_SCORED, choose_learner, principal_basis, retrieval_scores, scored_sample
from .search import dotted

#: At least this many labelled records, and this many values with 2+ records, to tune at all.
MIN_RECORDS = 20
MIN_VALUES = 4
#: The share of values (categories) held out for validation, and the seed that draws them
#: (bench/relevance.py --tune --seeds varies it to average over several draws).
HOLDOUT = 0.25
HOLDOUT_SEED = 17


def _labels(store: CollectionStore, field: str, ids: list[str]) -> list[Any]:
    """The field's value per id (None when missing, a list, an object or a float)."""
    out: list[Any] = []
    for lo in range(0, len(ids), 1000):
        for doc in store.get(ids[lo:lo + 1000]):
            value = dotted(doc, field) if doc is not None else None
            out.append(value if isinstance(value, (str, int, bool)) else None)
    return out


def holdout_split(values: list[Any], seed: int | None = None) -> set:
    """The held-out values: a fixed-seed (`HOLDOUT_SEED`) quarter of the values with 2+ records (at least 2)."""
    counts: dict[Any, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    usable = sorted((v for v, c in counts.items() if c >= 2), key=repr)
    rng = np.random.default_rng(HOLDOUT_SEED if seed is None else seed)
    n = max(2, int(round(len(usable) * HOLDOUT)))
    return {usable[i] for i in rng.permutation(len(usable))[:n]}


def tune(store: CollectionStore, field: str | None = None, *, groups: bool = False, reset: bool = False) -> dict:
    """Tune (or `reset`) a collection; returns `{"collection", "field", "applied", "before", "after",
    "records", "values", "held_out", "method", "version", "took_ms"}` (see docs/api.md)."""
    start = time.perf_counter()
    name = store.settings.name
    check_bool("groups", groups)
    check_bool("reset", reset)
    if not store.capabilities.tuning:
        raise NotImplementedYet(f"collection {name!r} is in a store that cannot tune: "
                                "use the embedded store")
    previous = store.settings.tuning or {}
    if reset:
        if field is not None or groups:
            raise BadRequest("give either 'reset' or what to tune by ('field' or 'groups'), not both")
        if previous:
            store.set_tuning({})
        return {"collection": name, "applied": False, "reset": True, "was_tuned": bool(previous),
                "took_ms": round((time.perf_counter() - start) * 1000, 3)}
    if groups:
        if field is not None:
            raise BadRequest("give either 'field' or 'groups' (which uses the collection's group_field), not both")
        field = store.settings.group_field
        if not field:
            raise BadRequest(f"collection {name!r} has no group_field: set one, or tune by a 'field'")
    if field is None:
        raise BadRequest("tune needs a 'field' whose values say which records are alike (or 'groups')")
    check_field_name("field", field)
    if store.settings.metric != "cosine":
        raise BadRequest(f"tune needs metric 'cosine'; collection {name!r} uses {store.settings.metric!r}")
    ids, raw = store.raw_all_vectors()
    values = _labels(store, field, ids)
    labelled = [i for i, v in enumerate(values) if v is not None]
    if not labelled:
        raise BadRequest(f"no record of collection {name!r} has a text, number or boolean value in field {field!r}")
    distinct = {values[i] for i in labelled}
    if len(distinct) < 2:
        raise BadRequest(f"field {field!r} has one value ({next(iter(distinct))!r}) in collection {name!r}: "
                         "tuning needs records with different values")
    held = holdout_split([values[i] for i in labelled])
    counts: dict[Any, int] = {}
    for i in labelled:
        counts[values[i]] = counts.get(values[i], 0) + 1
    train = [i for i in labelled if values[i] not in held and counts[values[i]] >= 2]
    check = [i for i in labelled if values[i] in held]
    if len(labelled) < MIN_RECORDS or sum(1 for c in counts.values() if c >= 2) < MIN_VALUES:
        raise BadRequest(f"too few labelled records to tune collection {name!r} by {field!r}: {len(labelled)} records "
                         f"with {sum(1 for c in counts.values() if c >= 2)} values shared by 2+ records; "
                         f"needs {MIN_RECORDS} records and {MIN_VALUES} shared values")
    ylab = np.unique(np.array([repr(values[i]) for i in labelled]), return_inverse=True)[1]
    y_of = dict(zip(labelled, ylab))
    y_train = np.array([y_of[i] for i in train])
    y_check = np.array([y_of[i] for i in check])
    sample = scored_sample(y_check, MAX_SCORED // 4)  # whole held-out categories
    check, y_check = [i for i, keep in zip(check, sample) if keep], y_check[sample]
    rows, y_rows = _checked_rows(len(ids), check, y_check)
    # The principal axes use no labels: taken from every stored vector (held-out and unlabelled
    # records too), every axis (learners.CHOICES narrows them for the discriminants).
    basis = principal_basis(raw, None)
    method, candidates = choose_learner(raw[train], y_train, basis=basis)
    transform = CHOICES[method](raw[train], y_train, basis=basis)
    before = retrieval_scores(_normalised(raw[rows]), y_rows)
    after = retrieval_scores(transform.apply(raw[rows]), y_rows)
    applied = after["p@5"] > before["p@5"] and after["map@10"] >= before["map@10"]
    version = int(previous.get("version", 0)) + 1 if applied else int(previous.get("version", 0))
    report = {"field": field, "groups": groups, "method": method, "candidates": candidates, "records": len(labelled),
              "values": len(distinct), "held_out": sorted(held, key=repr), "before": _rounded(before),
              "after": _rounded(after), "tuned_at": time.time(), "version": version}
    if applied:
        store.set_tuning({**report, "transform": transform.to_dict()})
    return {"collection": name, **{k: v for k, v in report.items() if k != "held_out"},
            "held_out_values": len(held), "applied": applied,
            "took_ms": round((time.perf_counter() - start) * 1000, 3)}


def _checked_rows(n: int, check: list[int], y_check: np.ndarray, seed: int = 23) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels) that tune's check scores: the held-out records query, as `eval --holdout`'s
    do, among themselves and the other records (fitted, unlabelled), which are never relevant:
    on icon families a map that helped searches over the whole collection by +0.12 P@5 lowered
    mAP@10 among the held-out records alone. At most MAX_SCORED rows (others drawn at random)."""
    others = np.setdiff1d(np.arange(n), check)
    room = max(0, MAX_SCORED - len(check))
    if len(others) > room:
        others = np.sort(np.random.default_rng(seed).choice(others, room, replace=False))
    rows = np.concatenate([np.asarray(check, dtype=np.int64), others])
    labels = np.concatenate([np.asarray(y_check), -1 - np.arange(len(others))])  # each its own: never relevant
    return rows, labels


def holdout_truth(store: CollectionStore) -> list[dict]:
    """Golden-set lines from the values the collection's tune held out: each record with one of
    them queries by id; relevant = the other records with its value. BadRequest when untuned."""
    tuning = store.settings.tuning or {}
    if transform_of(tuning) is None:
        raise BadRequest(f"collection {store.settings.name!r} is not tuned: 'holdout' scores with the values "
                         "its tune held out (run tune first)")
    held = set(tuning.get("held_out", []))
    ids, _ = store.raw_all_vectors()
    by_value: dict[Any, list[str]] = {}
    for rid, value in zip(ids, _labels(store, tuning["field"], ids)):
        if value is not None and value in held:
            by_value.setdefault(value, []).append(rid)
    truth = [{"query": {"id": rid}, "relevant": [o for o in members if o != rid]}
             for members in by_value.values() if len(members) >= 2 for rid in members]
    if not truth:
        raise BadRequest(f"no records of collection {store.settings.name!r} carry a held-out value of "
                         f"{tuning['field']!r} any more")
    return truth


def tuning_info(tuning: dict | None) -> dict | None:
    """What `info` shows of a collection's tuning (the learned matrix left out), or None."""
    if not tuning or transform_of(tuning) is None:
        return None
    return {k: tuning[k] for k in ("field", "groups", "method", "version", "records", "values", "before", "after",
                                   "tuned_at") if k in tuning}


def _normalised(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in scores.items()}
