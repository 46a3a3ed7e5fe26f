"""Facets: per metadata path, value counts and numeric ranges, from a field index's postings.

Both backends answer `facets` with this code (Milvus over a field index of the matching
records it read), so their answers are identical.
"""
from __future__ import annotations

import numpy as np

from .field_index import FieldIndex


def facets_of(fields: FieldIndex, live: np.ndarray, top: int) -> list[dict]:
    """The facet of every metadata path of `fields` over the rows where `live` is set.

    Engine fields other than `_labels.label` are left out: they are not useful to filter by."""
    out = []
    for path in sorted(fields.paths):
        if path.startswith("_") and path != "_labels.label":
            continue
        facet = _facet(path, fields.paths[path], live, top)
        if facet is not None:
            out.append(facet)
    return out


def _facet(path: str, post, live: np.ndarray, top: int) -> dict | None:
    """One path's facet: records having it, top string/boolean values with counts, numeric range."""
    rows, vids = post.rows.view(), post.vids.view()
    inside = rows < len(live)
    rows, vids = rows[inside], vids[inside]
    keep = live[rows]
    rows, vids = rows[keep], vids[keep]
    if not len(rows):
        return None
    pairs = np.unique(rows * len(post.keys) + vids)  # a value listed twice in one record counts once
    counts = np.bincount(pairs % len(post.keys), minlength=len(post.keys))
    tags = [k[0] for k in post.keys]
    scalar = [i for i, t in enumerate(tags) if t in ("s", "b", "n") and counts[i]]
    if not scalar:
        return None
    facet: dict = {"path": path, "count": int(len(np.unique(rows)))}
    labelled = sorted((i for i in scalar if tags[i] in ("s", "b")), key=lambda i: (-counts[i], str(post.keys[i][1])))
    if labelled:
        facet["distinct"] = len(labelled)
        facet["values"] = [{"value": post.keys[i][1], "count": int(counts[i])} for i in labelled[:top]]
    numbers = [post.keys[i][1] for i in scalar if tags[i] == "n"]
    if numbers:
        lo, hi = min(numbers), max(numbers)
        facet["min"] = int(lo) if float(lo).is_integer() else lo
        facet["max"] = int(hi) if float(hi).is_integer() else hi
    kinds = {"s": "string", "b": "boolean", "n": "number"}
    found = {kinds[tags[i]] for i in scalar}
    facet["type"] = found.pop() if len(found) == 1 else "mixed"
    return facet
