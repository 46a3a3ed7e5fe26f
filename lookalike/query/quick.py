"""The short path of the most common search: one `vector` or `id` anchor, k, offset, a filter,
`fields`, and nothing else that shapes the ranking.

`Collection.search` sends such a query here before its general path (parsing every option
into `SearchParams`, anchors, the shared tail of `Searcher.run`). The same checks run here (by
the same functions, or inline for the plain numbers), and the short path gives up (None) on
any value they might refuse, so a bad value raises what the general path raises; and on anything
it does not handle — a bad parameter, a record deleted between the
ranking and the read of its metadata — and the general path then answers, or raises, as
always. So its hits are the general path's, key for key (tests/test_quick_search.py).

What it leaves out is per-query Python work: the options object and its copies, the list of
stored boosts, the anchor list and its copy, the retry loop around the store search.
"""
from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..store.base import SearchRequest
from ..store.filters import parse_filter
from ..validation import check_field_names
from .arrays import query_vector
from .engine import Searcher, anchor_ids
from .keywords import FUSIONS
from .search import MAX_K, MAX_OFFSET, hit_items

#: Anchor kinds the short path takes.
KINDS = ("vector", "id")
#: Types of the numbers it takes as they are (bools, NaN and subclasses go to the general path).
NUMBERS = (int, float)


def quick_search(searcher: Searcher, query: Any, k: Any, offset: Any, filter: Any, fields: Any,
                 negative_weight: Any, fusion: Any, keyword_weight: Any) -> list[dict] | None:
    """The hits of a plain `vector` / `id` search, or None where the general path must answer
    (the caller has checked that every other option is at its default)."""
    if type(query) is not dict or len(query) != 1:
        return None
    kind, value = next(iter(query.items()))
    if kind not in KINDS:
        return None
    settings = searcher.settings
    if settings.group_field or settings.boosts or settings.compound:
        return None
    # the general path's checks of the numbers (check_int, check_number, check_fusion), inline:
    # their calls cost as much as the tests; any value they might refuse goes to the general path
    if type(k) is not int or not 1 <= k <= MAX_K or type(offset) is not int or not 0 <= offset <= MAX_OFFSET \
            or type(negative_weight) not in NUMBERS or not 0 <= negative_weight <= 10 \
            or fusion not in FUSIONS or type(keyword_weight) not in NUMBERS or not 0 <= keyword_weight <= 1:
        return None
    try:  # the general path's checks; their errors are raised there again
        if fields is not None:
            check_field_names("fields", fields)
        where = parse_filter(filter)
        if kind == "vector":
            vector, exclude = searcher.to_space(query_vector(value, settings.dim, settings.metric == "cosine")), []
        else:
            exclude = anchor_ids(kind, value)
            found = searcher.store.vectors(exclude)
            if not found:
                return None  # NotFound, raised by the general path
            vector = found[exclude[0]]
    except BadRequest:
        return None
    request = SearchRequest(vector=vector, k=k, offset=offset, where=where, exclude=exclude)
    ids, scores, docs = searcher.store.search_docs(request)
    return hit_items(ids, scores, docs, fields)  # None: a record was deleted since the ranking
