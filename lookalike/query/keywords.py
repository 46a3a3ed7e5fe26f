"""Keywords with pictures: exact-term BM25 matching, alone or blended with an image/id query.

`{"keywords": "AB-123 acme"}` ranks records by BM25 over their id and `text_fields` (the
store's keyword index: SQLite FTS5 in the embedded store, see store/embedded/fts.py).
Beside an anchor, `{"id": "x", "keywords": "acme"}`, the two rankings are blended per record:

- `fusion="rrf"` (default), reciprocal-rank fusion: score = 61 * ((1 - w) / (60 + visual rank)
  + w / (60 + keyword rank)), ranks counted from 1 over the whole collection, a record the
  keywords do not match adding nothing on that side. Rank-based, so BM25's unbounded scale
  and cosine's [-1, 1] never need calibrating against each other; 1.0 = first on both.
- `fusion="weighted"`: score = (1 - w) * cosine + w * BM25 / best BM25 of the query
  (0 where the keywords do not match): keeps the visual score's meaning, for callers that
  threshold on it.

`w` is `keyword_weight` (0..1, default 0.5). Filters, boosts, grouping and paging apply to the
blended scores as to any search. Design notes: docs/search.md, "Keywords with pictures".
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadRequest, NotImplementedYet
from ..validation import check_number
from .engine import Searcher
from .search import SearchParams

FUSIONS = ("rrf", "weighted")
RRF_K = 60
DEFAULT_KEYWORD_WEIGHT = 0.5
MAX_KEYWORDS = 2000


def check_keywords(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("'keywords' must be a non-empty string of words, e.g. \"AB-123 acme\"")
    if len(value) > MAX_KEYWORDS:
        raise BadRequest(f"'keywords' is longer than {MAX_KEYWORDS} characters")
    return value


def check_fusion(fusion: Any, weight: Any) -> tuple[str, float]:
    if fusion not in FUSIONS:
        raise BadRequest(f"'fusion' must be one of: {', '.join(FUSIONS)}")
    return fusion, check_number(weight, 0, 1, "'keyword_weight' must be a number from 0 (looks only) "
                                              "to 1 (keywords only)")


def keyword_scores(engine: Searcher, keywords: str) -> np.ndarray:
    """BM25 per slot (NaN where no match); 501 for a store without a keyword index."""
    store = engine.store
    if not store.capabilities.keywords:
        raise NotImplementedYet(
            f"collection {engine.name!r} is in a store without keyword search: lookalike's Milvus collections "
            "have no BM25 analyzer field (Milvus full-text search needs 2.5+ and a schema built for it); "
            "use the embedded store for 'keywords'")
    return store.keyword_scores(keywords)


def _ranks(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each finite score, best first, equal scores sharing the best rank among
    them (so ties are not broken by write order); inf where not finite."""
    out = np.full(len(scores), np.inf, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(scores))
    descending = np.sort(-scores[finite])
    out[finite] = np.searchsorted(descending, -scores[finite], side="left") + 1
    return out


def blend(visual: np.ndarray, keyword: np.ndarray, fusion: str, weight: float) -> np.ndarray:
    """Blended per-slot scores (see the module docstring); NaN where neither side scores."""
    n = min(len(visual), len(keyword))
    visual, keyword = visual[:n], keyword[:n]
    if fusion == "rrf":
        rv, rk = _ranks(visual), _ranks(keyword)
        out = (RRF_K + 1) * ((1 - weight) / (RRF_K + rv) + weight / (RRF_K + rk))
    else:
        best = np.nanmax(keyword) if np.isfinite(keyword).any() else 1.0
        out = (1 - weight) * visual + weight * np.nan_to_num(keyword / (best or 1.0), nan=0.0)
    out = out.astype(np.float32)
    out[~np.isfinite(visual) & ~np.isfinite(keyword)] = np.nan
    return out


def run_keyword_search(engine: Searcher, params: SearchParams, keywords: str, *, anchored: bool,
                       fusion: str, weight: float) -> list[dict]:
    """Hits of a keyword search: BM25 alone, or blended with the anchor's looks when `anchored`."""
    keyword = keyword_scores(engine, check_keywords(keywords))
    if not anchored:
        if params.negative:
            raise BadRequest("'negative' anchors need an image or id query beside 'keywords'")
        best = np.nanmax(keyword) if np.isfinite(keyword).any() else 1.0
        slot_scores, exclude = keyword / (best or 1.0), []  # the best match scores 1
        vector = np.zeros(engine.settings.dim, np.float32)
    else:
        if "color" in params.query:
            raise BadRequest("'keywords' go beside an image, id, ids or vector query, not a colour query")
        vector, exclude, _, _ = engine.query_vector(params)
        visual = engine.store.hybrid_scores(vector, None, 0.0)
        slot_scores = blend(visual, keyword, fusion, weight)
    return engine.run(params, vector, exclude=exclude, slot_scores=slot_scores)
