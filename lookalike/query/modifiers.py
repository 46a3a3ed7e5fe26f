"""Query modifiers: keys that go beside a query's anchor, `{"id": "x", "box": [...], "keywords": "..."}`.

`box` searches a part of the anchor's picture (query/regions.py); `keywords` adds exact-term
matching (query/keywords.py) and may also stand alone. `split_query` takes them off, so the
rest is an ordinary one-anchor query for `check_query`.
"""
from __future__ import annotations

from typing import Any

from ..errors import BadRequest

MODIFIERS = ("box", "keywords")
#: Anchors a `box` can cut: those with pixels (a stored id's come from its file, URL or thumbnail).
BOX_KINDS = ("id", "url", "base64", "file", "image")


def split_query(query: Any) -> tuple[Any, dict]:
    """(the anchor query, or None for keywords alone; the modifiers given)."""
    if not isinstance(query, dict):
        return query, {}
    extra = {key: query[key] for key in MODIFIERS if key in query}
    if not extra:
        return query, {}
    anchor = {key: value for key, value in query.items() if key not in MODIFIERS}
    if "box" in extra:
        if len(anchor) != 1 or next(iter(anchor)) not in BOX_KINDS:
            raise BadRequest(f"'box' goes beside one image anchor: one of {', '.join(BOX_KINDS)}, "
                             "e.g. {\"id\": \"sku-1\", \"box\": [0.1, 0.2, 0.6, 0.9]}")
    return anchor or None, extra
