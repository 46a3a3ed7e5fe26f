"""`same_label`: keep only results that share the query's automatic (ImageNet) label.

The query is classified by the collection's model (the top label of the query image, or
the stored top label of each anchor record for `id`/`ids` queries) and the search gets the
extra filter `{"_labels.label": {"$in": [those labels]}}`: a record passes when any of its
stored labels (top 5 above 2 %) is one of them. An image query is embedded once: its vector
replaces the image in the query, so the ranking uses the same forward pass.
"""
from __future__ import annotations

from ..errors import BadRequest, NotFound
from ..models.images import load_pixels
from ..store.filters import And, Cond
from .engine import IMAGE_KINDS, Searcher, anchor_ids
from .search import SearchParams

LABEL_PATH = "_labels.label"


def query_labels(engine: Searcher, query: dict) -> tuple[list[str], dict]:
    """The query's top label(s), and the query to run (an image becomes its vector)."""
    kind, value = next(iter(query.items()))
    if kind in ("id", "ids"):
        ids = anchor_ids(kind, value)
        docs = engine.store.get(ids)
        for rid, doc in zip(ids, docs):
            if doc is None:
                raise NotFound(f"record {rid!r} not found in collection {engine.name!r}")
        labels = [doc["_labels"][0]["label"] for doc in docs if doc.get("_labels")]
        if not labels:
            raise BadRequest("same_label: the anchor record has no labels (a '_vector' record?)")
        return list(dict.fromkeys(labels)), query
    if kind in IMAGE_KINDS:
        encoder = engine.encoder
        if encoder is None:
            raise BadRequest(f"same_label: collection {engine.name!r} has no image model to classify the query")
        pixels = load_pixels(engine.image_bytes(kind, value), encoder.input_size, fit=encoder.fit,
                             max_pixels=engine.max_pixels)
        emb = encoder.embed(pixels[None])
        if not emb.labels or not emb.labels[0]:
            raise BadRequest(f"same_label: model {engine.settings.model!r} gives no labels")
        return [emb.labels[0][0]["label"]], {"vector": emb.vectors[0].tolist()}
    raise BadRequest(f"same_label needs a query by image or by id, not by '{kind}'")


def restrict_to_same_label(engine: Searcher, params: SearchParams) -> list[str]:
    """Add the label filter to `params` (in place); returns the labels it keeps."""
    labels, params.query = query_labels(engine, params.query)
    params.where = And((params.where, Cond(LABEL_PATH, "$in", labels)))
    return labels
