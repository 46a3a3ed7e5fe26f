"""Text and hybrid search: `{"text": ...}` queries and the `text` / `hybrid` search parameters.

Design notes (how it works and why): docs/text.md, "Notes: `lookalike/query/text_search.py`".
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import BadRequest
from ..models.base import l2_normalize
from ..models.text import get_text_encoder
from ..store.filters import Cond
from ..validation import check_number, check_weight, is_field_names
from .engine import Searcher
from .search import SearchParams, combine_anchors, dotted

MAX_TEXT = 2000
DEFAULT_HYBRID = 0.5


def check_compound(value: Any) -> dict:
    """Validate the `compound` collection setting; returns it normalised ({} turns it off)."""
    if not isinstance(value, dict):
        raise BadRequest("'compound' must be an object such as {\"image\": 1, \"text\": 0.5, "
                         "\"attributes\": {\"fields\": [\"category\"], \"weight\": 0.3}}")
    unknown = set(value) - {"image", "text", "attributes"}
    if unknown:
        raise BadRequest(f"unknown 'compound' part(s): {', '.join(sorted(unknown))}; use image, text, attributes")
    if not value:
        return {}
    out: dict = {}
    for part in ("image", "text"):
        out[part] = check_weight(f"compound.{part}", value.get(part, 1.0 if part == "image" else 0.0))
    attrs = value.get("attributes")
    if attrs is not None:
        if not isinstance(attrs, dict) or set(attrs) - {"fields", "weight"}:
            raise BadRequest("'compound.attributes' must be {\"fields\": [...], \"weight\": number}")
        fields = attrs.get("fields")
        if not fields or not is_field_names(fields):
            raise BadRequest("'compound.attributes.fields' must be a non-empty list of field names")
        out["attributes"] = {"fields": list(fields), "weight": check_weight("compound.attributes.weight",
                                                                            attrs.get("weight", 1.0))}
    if out["image"] + out["text"] + out.get("attributes", {}).get("weight", 0.0) <= 0:
        raise BadRequest("'compound' needs at least one positive weight")
    return out


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float, bool)) and not (isinstance(value, float) and not np.isfinite(value))


def compound_parts(engine: Searcher, params: SearchParams, exclude: list[str]) -> tuple[float, float, list]:
    """(w_image, w_text, attribute boosts) of the collection's compound setting for an id query,
    all divided by the total weight so scores stay in the cosine range."""
    spec = engine.settings.compound
    w_i, w_t = spec.get("image", 1.0), spec.get("text", 0.0)
    if not engine.settings.text_fields:
        w_t = 0.0  # no text vectors to compare
    attrs = spec.get("attributes") or {}
    w_a = attrs.get("weight", 0.0)
    total = w_i + w_t + w_a
    if total <= 0:
        return 1.0, 0.0, []
    boosts = []
    if w_a and exclude:
        docs = [d for d in engine.store.get(exclude) if d is not None]
        share = w_a / total / len(attrs["fields"]) / max(1, len(docs))
        for doc in docs:
            for path in attrs["fields"]:
                value = dotted(doc, path)
                if _scalar(value):
                    boosts.append((Cond(path, "$eq", value), share))
    return w_i / total, w_t / total, boosts


def check_text(text: Any, what: str = "text") -> str:
    if not isinstance(text, str) or not text.strip():
        raise BadRequest(f"'{what}' must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise BadRequest(f"'{what}' is longer than {MAX_TEXT} characters")
    return text


def check_hybrid(hybrid: Any) -> float | None:
    if hybrid is None:
        return None
    return check_number(hybrid, 0, 1, "'hybrid' must be a number from 0 (looks only) to 1 (text only)")


def wants_text(query: dict, text: Any, hybrid: Any) -> bool:
    """Whether a search goes through this module rather than plain visual search."""
    return text is not None or hybrid is not None or next(iter(query)) == "text"


def text_tower(engine: Searcher):
    """The collection model's text tower (CLIP-like TorchScript models), or None."""
    if engine.settings.model == "none":
        return None
    encoder = engine.encoder
    return encoder if getattr(encoder, "text_tower", None) is not None else None


def sentence_vector(text: str) -> np.ndarray:
    return get_text_encoder().embed([text])[0]


def resolve(engine: Searcher, params: SearchParams, text: Any, hybrid: Any
            ) -> tuple[np.ndarray | None, np.ndarray | None, float, list[str]]:
    """(visual query vector or None, text query vector or None, h, ids to exclude)."""
    h = check_hybrid(hybrid)
    kind, value = next(iter(params.query.items()))
    has_text_vectors = bool(engine.settings.text_fields)
    positives: list[np.ndarray] = []
    exclude: list[str] = []
    if kind == "text":
        if text is not None:
            raise BadRequest("give the text once: as the query {\"text\": ...} or as the 'text' parameter")
        text = check_text(value, "query.text")
        tower = text_tower(engine)
        if tower is not None:
            positives = [engine.to_space(tower.embed_text([text])[0])]
        elif not has_text_vectors:
            raise BadRequest(f"collection {engine.name!r} cannot search by text: set its 'text_fields' "
                             "(searches metadata and labels), or use a model with a text tower (see docs/text.md)")
    else:
        positives, exclude = engine.anchors(params.query)
        if text is not None:
            text = check_text(text)
    negatives: list[np.ndarray] = []
    for anchor in params.negative:
        vecs, ids = engine.anchors(anchor)
        negatives += vecs
        exclude += ids
    if negatives and not positives:
        raise BadRequest("'negative' anchors need an image anchor or a model with a text tower")
    vector = combine_anchors(positives, negatives, params.negative_weight) if positives else None

    text_query = None
    if text is not None and has_text_vectors:
        text_query = sentence_vector(text)
    elif text is not None and kind != "text":
        raise BadRequest(f"the 'text' parameter needs text vectors: set 'text_fields' on collection {engine.name!r}")
    elif text is None and h is not None and kind != "text":
        if not has_text_vectors:
            raise BadRequest(f"'hybrid' mixes in text similarity: set 'text_fields' on collection {engine.name!r}")
        if kind not in ("id", "ids"):
            raise BadRequest("'hybrid' without 'text' uses the anchor records' own text: query by 'id' or 'ids', "
                             "or give 'text'")
        own = engine.store.text_vectors(exclude)
        if not len(own):
            raise BadRequest("the anchor records have no text vectors (written before 'text_fields' was set)")
        text_query = l2_normalize(own.mean(axis=0))
    if vector is None:
        h = 1.0
    elif text_query is None:
        h = 0.0
    elif h is None:
        h = DEFAULT_HYBRID
    return vector, text_query, h, exclude


def _visual_anchors(engine: Searcher, params: SearchParams) -> tuple[list, list, float]:
    positives, _ = engine.anchors(params.query)
    negatives: list = []
    for anchor in params.negative:
        negatives += engine.anchors(anchor)[0]
    return positives, negatives, params.negative_weight


def run_text_search(engine: Searcher, params: SearchParams, text: Any = None, hybrid: Any = None) -> list[dict]:
    """Hits for a text / hybrid search, shaped like `Collection.search` hits."""
    kind = next(iter(params.query))
    compound = bool(engine.settings.compound) and text is None and hybrid is None and kind in ("id", "ids")
    extra: list = []
    if compound:
        ids = [params.query[kind]] if kind == "id" else list(params.query[kind])
        positives, negatives, weight = _visual_anchors(engine, params)
        vector = combine_anchors(positives, negatives, weight)
        exclude = ids + [i for a in params.negative if next(iter(a)) in ("id", "ids")
                         for i in ([a["id"]] if "id" in a else a["ids"])]
        w_i, w_t, extra = compound_parts(engine, params, ids)
        own = engine.store.text_vectors(ids) if w_t else np.zeros((0, 0), np.float32)
        text_query = l2_normalize(own.mean(axis=0)) if len(own) else None
        if text_query is None:  # anchors without text: their share goes to looks
            w_i, w_t = w_i + w_t, 0.0
        # hybrid_scores gives (1 - h) * visual + h * text; scaled by w_i + w_t the weights are w_i, w_t
        scale = w_i + w_t
        slot_scores = engine.store.hybrid_scores(vector, text_query, w_t / scale if scale else 0.0) * np.float32(scale)
    else:
        vector, text_query, h, exclude = resolve(engine, params, text, hybrid)
        if text_query is None:  # visual only (h = 0, or a CLIP text query without text_fields)
            slot_scores = None
        else:
            slot_scores = engine.store.hybrid_scores(vector if h < 1 else None, text_query, h)
    if vector is None:
        vector = np.zeros(engine.settings.dim, np.float32)
    return engine.run(params, vector, exclude=exclude, slot_scores=slot_scores, extra_boosts=extra)
