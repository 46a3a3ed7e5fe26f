"""The search engine of one collection: what every ranked search shares.

A `Searcher` turns anchors (`id`, `ids`, `vector`, images) into vectors, embeds query
images with the collection's model, and runs the common tail of a search (grouping, boosts,
the store's ranking, hit shaping). Text, label, colour and near-duplicate searches build on
it; the collection facade owns one per collection.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import BadRequest, NotFound, NotImplementedYet
from ..models import get_encoder
from ..models.base import ImageEncoder
from ..models.images import DEFAULT_MAX_PIXELS, load_pixels
from ..records import check_ids, decode_base64
from ..store.base import CollectionSettings, CollectionStore, SearchRequest
from ..store.filters import Node
from .arrays import query_rows, query_vector
from .colors import color_query
from .search import SearchParams, combine_anchors, format_hits, hit_items, parse_boosts

#: Query kinds that carry an image: its bytes come from `Searcher.image_bytes`.
IMAGE_KINDS = ("url", "base64", "file", "image")


def anchor_ids(kind: str, value: Any) -> list[str]:
    """The record ids an `id` / `ids` anchor names, each checked as every id is; BadRequest if malformed."""
    ids = [value] if kind == "id" else value
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise BadRequest(f"'{kind}' must be {'a string' if kind == 'id' else 'a non-empty list of strings'}")
    return check_ids(ids, f"'{kind}'")


class Searcher:
    """Anchors, query images and the shared search tail over one collection's store.

    `fetch_url` and `read_file` give the bytes of `url` and `file` query images; `read_file`
    is None where local files must not be read (the HTTP server).
    """

    def __init__(self, store: CollectionStore, *, fetch_url: Callable[[str], bytes],
                 read_file: Callable[[Path], bytes] | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.store = store
        self.fetch_url = fetch_url
        self.read_file = read_file
        self.max_pixels = max_pixels

    @property
    def settings(self) -> CollectionSettings:
        return self.store.settings

    @property
    def name(self) -> str:
        return self.store.settings.name

    @property
    def encoder(self) -> ImageEncoder | None:
        model = self.settings.model
        return None if model == "none" else get_encoder(model)

    # -- anchors ---------------------------------------------------------------------------
    def anchors(self, query: dict) -> tuple[list[np.ndarray], list[str]]:
        """Vectors of one anchor object, and the stored ids it names (to exclude from hits)."""
        kind, value = next(iter(query.items()))
        if kind in ("id", "ids"):
            ids = anchor_ids(kind, value)
            found = self.store.vectors(ids)
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"record {missing[0]!r} not found in collection {self.name!r}")
            return [found[i] for i in ids], list(ids)
        return [self.anchor_vector(query)[0]], []

    def anchor_vector(self, query: dict) -> tuple[np.ndarray, list[str]]:
        """One vector for an anchor object (the mean of `ids`), and the stored ids it names."""
        kind, value = next(iter(query.items()))
        if kind in ("id", "ids"):
            vecs, ids = self.anchors(query)
            return np.mean(np.stack(vecs), axis=0), ids
        if kind == "vector":
            return self.to_space(query_vector(value, self.settings.dim, self.settings.metric == "cosine")), []
        if kind == "vectors":
            raise BadRequest("a 'vectors' query (several queries in one call) only works as the main query of search")
        if kind == "color":
            raise BadRequest("a 'color' query only works as the main query of search (not in rerank, "
                             "recommend or 'negative')")
        if kind == "text":
            raise NotImplementedYet(f"search by {kind} is not built yet")
        return self.to_space(self.embed_image(self.image_bytes(kind, value))), []

    def to_space(self, vector: np.ndarray) -> np.ndarray:
        """A model vector (an image's, a given one's) in the space the collection searches: mapped
        by its tuning, if tuned (stored vectors, and so `id` anchors, are mapped already)."""
        transform = self.store.transform
        return vector if transform is None else transform.apply(vector)

    def image_bytes(self, kind: str, value: Any) -> bytes:
        """The image file bytes an `image`, `base64`, `url` or `file` query names."""
        if kind == "image":
            if not isinstance(value, (bytes, bytearray)):
                raise BadRequest("'image' must be the bytes of an image file")
            return bytes(value)
        if kind == "base64":
            return decode_base64(value)
        if kind == "url":
            if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
                raise BadRequest("'url' must be an http:// or https:// URL")
            return self.fetch_url(value)
        if kind == "file":
            if self.read_file is None:
                raise BadRequest("'file' queries are only accepted by the CLI and the Python API")
            if not isinstance(value, (str, Path)):
                raise BadRequest("'file' must be a path")
            return self.read_file(Path(value))
        raise BadRequest(f"unknown query kind '{kind}'")

    def embed_image(self, data: bytes) -> np.ndarray:
        """The collection model's vector for an image file's bytes."""
        encoder = self.encoder
        if encoder is None:
            raise BadRequest(f"collection {self.name!r} has model 'none': query by 'vector' or 'id'")
        pixels = load_pixels(data, encoder.input_size, fit=encoder.fit, max_pixels=self.max_pixels)
        return encoder.embed(pixels[None]).vectors[0]

    # -- searches --------------------------------------------------------------------------
    def query_vector(self, params: SearchParams) -> tuple[np.ndarray, list[str], list[np.ndarray], list[np.ndarray]]:
        """The combined vector of the query's positive and `negative` anchors (query/search.py's
        rule), the anchor ids to leave out of the hits, and the positives' and negatives' vectors."""
        positives, exclude = self.anchors(params.query)
        negatives: list[np.ndarray] = []
        for anchor in params.negative:
            vecs, ids = self.anchors(anchor)
            negatives += vecs
            exclude += ids
        return combine_anchors(positives, negatives, params.negative_weight), exclude, positives, negatives

    def visual(self, params: SearchParams) -> list[dict]:
        """Hits of a search ranked by looks: the anchors' combined vector, or a colour query."""
        slot_scores = None
        if "color" in params.query:  # ranked by colour, not by a vector: see query/colors.py
            slot_scores, vector, exclude = color_query(self.store, params), np.zeros(1, np.float32), []
        else:
            vector, exclude, positives, negatives = self.query_vector(params)
            if params.explain:  # the score's parts, for query/explain.py
                params.trace.update(positive=combine_anchors(positives, [], 0.0),
                                    negative=combine_anchors(negatives, [], 0.0) if negatives else None)
        return self.run(params, vector, exclude=exclude, slot_scores=slot_scores)

    def visual_many(self, params: SearchParams, vectors: list[Any]) -> list[list[dict]]:
        """Hits per vector of a `vectors` query (several queries in one call): each list is what
        `visual` returns for `{"vector": v}` with the same parameters (negative anchors apply to
        every vector), from one batched store search."""
        queries = self.vector_rows(vectors)
        negatives: list[np.ndarray] = []
        exclude: list[str] = []
        for anchor in params.negative:
            vecs, ids = self.anchors(anchor)
            negatives += vecs
            exclude += ids
        if negatives:  # combine_anchors' arithmetic, on every row at once
            queries = (queries - params.negative_weight * np.mean(np.stack(negatives), axis=0)).astype(np.float32)
        return self.run_many(params, queries, exclude=exclude)

    def vector_rows(self, vectors: list[Any]) -> np.ndarray:
        """The rows of a `vectors` query as `anchor_vector` makes each `{"vector": v}`: checked
        (a bad one named by position), unit length for cosine, mapped by the tuning; bit for bit
        the same values, computed for all rows at once."""
        rows = query_rows(vectors, self.settings.dim)
        if self.settings.metric == "cosine":  # l2_normalize's sum per row: the same float32 results
            norms = np.sqrt(np.add.reduce(rows * rows, axis=1))
            rows = rows / np.where(norms > 0, norms, np.float32(1.0))[:, None]
        if self.store.transform is not None:  # row by row: a matrix product may round otherwise
            rows = np.stack([self.to_space(row) for row in rows])
        return rows

    def run_many(self, params: SearchParams, queries: np.ndarray, *, exclude: list[str]) -> list[list[dict]]:
        """`run` for each row of `queries`: one store search and one metadata read for the batch."""
        group_by = None if params.group_by is False else (params.group_by or self.settings.group_field)
        boosts = parse_boosts(self.settings.boosts, stored=True) + params.boosts
        request = SearchRequest(vector=queries[0], k=params.k, offset=params.offset, where=params.where,
                                group_by=group_by, exclude=exclude, boosts=boosts)
        if group_by:  # each hit's group comes with the store's hits
            found = self.store.search_many(queries, request)
            unique = list(dict.fromkeys(hit.id for hits in found for hit in hits))
            docs = dict(zip(unique, self.store.get(unique)))
            rows = [([hit.id for hit in hits], [hit.score for hit in hits], [docs[hit.id] for hit in hits],
                     [hit.group for hit in hits]) for hits in found]
        else:  # ids, scores and documents straight from the store
            rows = [(ids, scores, docs, None) for ids, scores, docs in self.store.search_many_docs(queries, request)]
        out = []
        for query, (ids, scores, docs, groups) in zip(queries, rows):
            items = hit_items(ids, scores, docs, params.fields)
            if items is None:  # deleted meanwhile: as `run` handles it
                out.append(self.run(params, query, exclude=exclude))
                continue
            if groups is not None:
                for item, group in zip(items, groups):
                    item["_group"] = group
            out.append(items)
        return out

    def run(self, params: SearchParams, vector: np.ndarray, *, exclude: list[str],
            slot_scores: np.ndarray | None = None, extra_boosts: Sequence[tuple[Node, float]] = ()) -> list[dict]:
        """The tail every ranked search shares: grouping (the request's, else the collection's),
        the collection's boosts then the request's, the store's ranking, and hit shaping."""
        group_by = None if params.group_by is False else (params.group_by or self.settings.group_field)
        boosts = parse_boosts(self.settings.boosts, stored=True) + params.boosts + list(extra_boosts)
        request = SearchRequest(vector=vector, k=params.k, offset=params.offset, where=params.where,
                                group_by=group_by, exclude=exclude, boosts=boosts, slot_scores=slot_scores)
        # imported where used: both build on this module (collapse reads fingerprints through
        # query/duplicates.py), and an import statement per search costs a microsecond each
        if params.collapse is not None:
            from .collapse import collapse_hits
            found = collapse_hits(self, params, request, group_by)
        else:
            found = self.ranked(params, request, group_by)
        if params.explain:
            from .explain import explain_hits
            explain_hits(self, params, found, vector=vector, slot_scores=slot_scores,
                         boosts=(parse_boosts(self.settings.boosts, stored=True), params.boosts, list(extra_boosts)))
        return found

    def ranked(self, params: SearchParams, request: SearchRequest, group_by: str | None) -> list[dict]:
        """The store's best hits for `request`, shaped, without those scoring under `min_score`."""
        found, vanished = [], 0
        for _ in range(4):  # hits deleted between the search and reading their metadata: ask for more
            hits = self.store.search(dataclasses.replace(request, k=request.k + vanished) if vanished else request)
            found = format_hits(self.store, hits, params.fields, group_by)
            if len(found) == len(hits) or len(found) >= request.k:
                break
            vanished += len(hits) - len(found)
        found = found[:request.k]
        if params.min_score is not None:  # best first: the hits under it are a tail
            found = [hit for hit in found if hit["_score"] >= params.min_score]
        return found
