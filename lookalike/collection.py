"""The Python API: `connect()` gives a Database, `db.collection()` a Collection.

Method names, arguments and return shapes are the HTTP contract's, so code written against
this API runs unchanged against a server through `lookalike.Client`.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import BadRequest, Conflict, NotFound, NotImplementedYet
from .fetch import fetch_url, read_file
from .filecache import FileDigests, for_data_dir
from .ingest import Ingestor
from .models import get_encoder, l2_normalize
from .models.images import DEFAULT_MAX_PIXELS, load_pixels
from .models.registry import DEFAULT_MODEL, check_model_name
from .query.filters import And, Cond, Not, parse_filter
from .query.search import (SearchParams, check_int, check_query, combine_anchors, parse_boosts, parse_search,
                           format_hits, project)
from .index.settings import normalize_compression, normalize_index
from .records import check_id, check_ids, decode_base64, parse_vector
from .store import CollectionSettings, CollectionStore, SearchRequest, Store, open_store
from .store.base import KNOWN_DIMS, METRICS, check_collection_name

SETTING_KEYS = ("model", "dim", "metric", "group_field", "text_fields", "boosts", "index", "compression",
                "thumbnails", "compound")


class Collection:
    """One collection: upsert, get, delete, search, recommend, rerank."""

    def __init__(self, store: CollectionStore, *, allow_file: bool = True,
                 max_pixels: int = DEFAULT_MAX_PIXELS, file_digests: FileDigests | None = None) -> None:
        self._store = store
        self.allow_file = allow_file
        self.max_pixels = max_pixels
        self.file_digests = file_digests

    @property
    def name(self) -> str:
        return self._store.settings.name

    @property
    def settings(self) -> CollectionSettings:
        return self._store.settings

    @property
    def encoder(self):
        model = self.settings.model
        return None if model == "none" else get_encoder(model)

    # -- records -------------------------------------------------------------------------
    def upsert(self, records: Iterable[dict], *, base_dir: str | Path | None = None,
               batch_size: int = 32, on_batch=None) -> list[dict]:
        """Insert or update records; one result per record, in order (see the contract)."""
        return list(self.upsert_iter(records, base_dir=base_dir, batch_size=batch_size, on_batch=on_batch))

    def upsert_iter(self, records: Iterable[dict], *, base_dir: str | Path | None = None,
                    batch_size: int = 32, on_batch=None):
        """Like `upsert`, yielding results as batches are written (for streaming ingest)."""
        ingestor = Ingestor(self._store, self.encoder, allow_file=self.allow_file,
                            base_dir=Path(base_dir) if base_dir else None, batch_size=batch_size,
                            max_pixels=self.max_pixels, file_digests=self.file_digests)
        return ingestor.run(records, on_batch=on_batch)

    def get(self, id: str) -> dict:
        """The stored record with its computed fields; NotFound if absent."""
        check_id(id)
        doc = self._store.get([id])[0]
        if doc is None:
            raise NotFound(f"record {id!r} not found in collection {self.name!r}")
        doc.pop("_fingerprint", None)  # internal: near-duplicate hashes (query/duplicates.py)
        return doc

    def delete(self, ids: Sequence[str] | str | None = None, *, filter: dict | None = None) -> int:
        """Delete by ids or by filter; returns how many records were deleted."""
        if isinstance(ids, str):
            ids = [ids]
        if (ids is None) == (filter is None):
            raise BadRequest("delete takes either 'ids' or 'filter'")
        if filter is not None:
            if not filter:
                raise BadRequest("an empty delete filter would delete everything; delete the collection instead")
            return self._store.delete(list(self._store.ids_where(parse_filter(filter))))
        return self._store.delete(check_ids(ids))

    def count(self) -> int:
        return self._store.count()

    def records(self, *, offset: int = 0, limit: int = 50, filter: dict | None = None,
                fields: list[str] | None = None) -> dict:
        """A page of records in write order, for browsing without a query.

        `{"records": [{"_id": ..., ...fields}], "total": N, "offset": ..., "limit": ...}`;
        `total` counts every record matching the filter.
        """
        check_int("offset", offset, 0, 10_000_000)
        check_int("limit", limit, 1, 1000)
        if fields is not None and (not isinstance(fields, list) or not all(isinstance(f, str) and f for f in fields)):
            raise BadRequest("'fields' must be a list of field names")
        ids, total = self._store.list_ids(parse_filter(filter), offset=offset, limit=limit)
        docs = self._store.get(ids)
        records = [{"_id": i, **project(d, fields)} for i, d in zip(ids, docs) if d is not None]
        return {"records": records, "total": total, "offset": offset, "limit": limit}

    def facets(self, *, filter: dict | None = None, top: int = 20) -> dict:
        """What the metadata holds, for building filters: per dotted path the records having it,
        the `top` most frequent string/boolean values with counts, and numeric `min`/`max`.
        """
        check_int("top", top, 1, 1000)
        facets, total = self._store.facets_and_count(parse_filter(filter), top=top)
        return {"facets": facets, "count": total}

    def thumbnail(self, id: str) -> bytes:
        """The small JPEG kept for a record made from a file or base64 image; NotFound otherwise."""
        data = self._store.thumbnail(id)
        if data is None:
            raise NotFound(f"no thumbnail kept for record {id!r} in collection {self.name!r}")
        return data

    def info(self) -> dict:
        """Settings and stats, as `GET /v1/collections/{name}` returns them."""
        s = self.settings
        stats = self._store.stats()
        return {"name": s.name, "count": self.count(), "dim": s.dim, "model": s.model, "metric": s.metric,
                "group_field": s.group_field, "text_fields": s.text_fields, "boosts": s.boosts,
                "thumbnails": getattr(s, "thumbnails", True),
                "index": stats.get("index", "exact"), "compression": s.compression, "bytes": stats.get("bytes", 0),
                "bytes_per_vector": stats.get("bytes_per_vector")}

    # -- search --------------------------------------------------------------------------
    def search(self, query: dict, k: int = 10, *, offset: int = 0, filter: dict | None = None,
               group_by: str | None = None, negative: list[dict] | None = None, boost: list[dict] | None = None,
               fields: list[str] | None = None, negative_weight: float = 0.5, text: str | None = None,
               hybrid: float | None = None, same_label: bool = False) -> dict:
        """Records most similar to the query, best first: `{"hits": [...], "took_ms": ...}`.

        `text` and `hybrid` (0..1) mix text similarity into the ranking (see query/text_search.py).
        """
        start = time.perf_counter()
        params = parse_search(query, k=k, offset=offset, filter=filter, group_by=group_by, negative=negative,
                              boost=boost, fields=fields, negative_weight=negative_weight, same_label=same_label)
        if params.same_label:  # classify the query, keep results with its label (query/labels.py)
            from .query.labels import restrict_to_same_label
            restrict_to_same_label(self, params)
        from .query.text_search import run_text_search, wants_text
        if wants_text(params.query, text, hybrid) or self.settings.compound:
            hits = run_text_search(self, params, text, hybrid)
        else:
            hits = self._run(params)
        return {"hits": hits, "took_ms": round((time.perf_counter() - start) * 1000, 3)}

    def recommend(self, id: str, k: int = 10, *, filter: dict | None = None, fields: list[str] | None = None,
                  offset: int = 0) -> dict:
        """Items that look like `id`, excluding it and the rest of its group."""
        start = time.perf_counter()
        params = parse_search({"id": id}, k=k, offset=offset, filter=filter, fields=fields)
        group_field = self.settings.group_field
        if group_field:
            value = _dotted(self.get(id), group_field)
            if value is not None and not isinstance(value, (dict, list)):
                params.where = And((params.where, Not(Cond(group_field, "$eq", value))))
            params.group_by = group_field
        hits = self._run(params)
        return {"hits": hits, "took_ms": round((time.perf_counter() - start) * 1000, 3)}

    def rerank(self, ids: list[str], query: dict, *, fields: list[str] | None = None) -> dict:
        """The given ids sorted by similarity to the query; unknown ids listed in `missing`."""
        start = time.perf_counter()
        if not isinstance(ids, list):
            raise BadRequest("'ids' must be a list of strings")
        check_int("number of ids", len(ids), 1, 10_000)
        check_ids(ids)
        check_query(query)
        vector, _ = self._anchor_vector(query)
        scores = self._store.scores(vector, ids)
        order = sorted(scores, key=lambda i: (-scores[i], ids.index(i)))
        docs = dict(zip(order, self._store.get(order)))
        hits = [{"_id": i, "_score": round(scores[i], 6), **project(docs[i] or {}, fields)} for i in order]
        missing = [i for i in dict.fromkeys(ids) if i not in scores]
        return {"hits": hits, "missing": missing, "took_ms": round((time.perf_counter() - start) * 1000, 3)}

    def match(self, query: dict, threshold: float | None = None, k: int = 10,
              fields: list[str] | None = None) -> dict:
        """Copies of an image (or of a record, `{"id": ...}`): hits with `"_match": "exact" | "near"`."""
        from .query.duplicates import match
        return match(self, query, threshold, k=k, fields=fields)

    def duplicates(self, threshold: float | None = None) -> dict:
        """Groups of records that are copies of each other: `{"clusters": [["a", "b"], ...]}`."""
        from .query.duplicates import duplicates
        return duplicates(self, threshold)

    def evaluate(self, truth: str | Path | list[dict], k: int = 10) -> dict:
        """Search quality against a golden set: a JSONL truth file's path or its lines as dicts
        (see `lookalike.evaluate`); `{"metrics": {"map@k", "ndcg@k", "precision@k", "recall@k"}, ...}`."""
        from .evaluate import evaluate, evaluate_file
        if isinstance(truth, (str, Path)):
            return evaluate_file(self, Path(truth), k=k)
        return evaluate(self, truth, k=k)

    def _run(self, params: SearchParams) -> list[dict]:
        slot_scores = None
        if "color" in params.query:  # ranked by colour, not by a vector: see query/colors.py
            from .query.colors import color_query
            slot_scores, vector, exclude = color_query(self._store, params), np.zeros(1, np.float32), []
        else:
            positives, exclude = self._anchors(params.query)
            negatives: list[np.ndarray] = []
            for anchor in params.negative:
                vecs, ids = self._anchors(anchor)
                negatives += vecs
                exclude += ids
            vector = combine_anchors(positives, negatives, params.negative_weight)
        group_by = None if params.group_by is False else (params.group_by or self.settings.group_field)
        boosts = parse_boosts(self.settings.boosts) + params.boosts
        request = SearchRequest(vector=vector, k=params.k, offset=params.offset, where=params.where,
                                group_by=group_by, exclude=exclude, boosts=boosts, slot_scores=slot_scores)
        found, vanished = [], 0
        for _ in range(4):  # hits deleted between the search and reading their metadata: ask for more
            hits = self._store.search(dataclasses.replace(request, k=request.k + vanished))
            found = format_hits(self._store, hits, params.fields, group_by)
            if len(found) == len(hits) or len(found) >= request.k:
                break
            vanished += len(hits) - len(found)
        return found[:request.k]

    def _anchors(self, query: dict) -> tuple[list[np.ndarray], list[str]]:
        """Vectors of one anchor object, and the stored ids it names (to exclude from hits)."""
        kind, value = next(iter(query.items()))
        if kind in ("id", "ids"):
            ids = [value] if kind == "id" else value
            if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
                raise BadRequest(f"'{kind}' must be {'a string' if kind == 'id' else 'a non-empty list of strings'}")
            check_ids(ids, f"'{kind}'")
            found = self._store.vectors(ids)
            missing = [i for i in ids if i not in found]
            if missing:
                raise NotFound(f"record {missing[0]!r} not found in collection {self.name!r}")
            return [found[i] for i in ids], list(ids)
        return [self._anchor_vector(query)[0]], []

    def _anchor_vector(self, query: dict) -> tuple[np.ndarray, list[str]]:
        kind, value = next(iter(query.items()))
        if kind in ("id", "ids"):
            vecs, ids = self._anchors(query)
            return np.mean(np.stack(vecs), axis=0), ids
        if kind == "vector":
            vec = parse_vector(value, self.settings.dim)
            return (l2_normalize(vec) if self.settings.metric == "cosine" else vec), []
        if kind == "color":
            raise BadRequest("a 'color' query only works as the main query of search (not in rerank, "
                             "recommend or 'negative')")
        if kind == "text":
            raise NotImplementedYet(f"search by {kind} is not built yet")
        return self.embed_image(self._image_bytes(kind, value)), []

    def _image_bytes(self, kind: str, value: Any) -> bytes:
        if kind == "image":
            if not isinstance(value, (bytes, bytearray)):
                raise BadRequest("'image' must be the bytes of an image file")
            return bytes(value)
        if kind == "base64":
            return decode_base64(value)
        if kind == "url":
            if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
                raise BadRequest("'url' must be an http:// or https:// URL")
            return fetch_url(value)
        if kind == "file":
            if not self.allow_file:
                raise BadRequest("'file' queries are only accepted by the CLI and the Python API")
            if not isinstance(value, (str, Path)):
                raise BadRequest("'file' must be a path")
            return read_file(Path(value))
        raise BadRequest(f"unknown query kind '{kind}'")

    def embed_image(self, data: bytes) -> np.ndarray:
        """The collection model's vector for an image file's bytes."""
        encoder = self.encoder
        if encoder is None:
            raise BadRequest(f"collection {self.name!r} has model 'none': query by 'vector' or 'id'")
        pixels = load_pixels(data, encoder.input_size, fit=encoder.fit, max_pixels=self.max_pixels)
        return encoder.embed(pixels[None]).vectors[0]


def _dotted(doc: dict, path: str) -> Any:
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class Database:
    """A store of collections, opened by `lookalike.connect()`."""

    def __init__(self, store: Store, *, allow_file: bool = True, file_digests: FileDigests | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.store = store
        self.allow_file = allow_file
        self.max_pixels = max_pixels  # per-image pixel limit (decompression bombs), for every collection
        self.file_digests = file_digests if allow_file else None

    def collection(self, name: str, create: bool = False, **settings: Any) -> Collection:
        """The named collection; with `create=True` made if missing (settings as in PUT)."""
        check_collection_name(name)
        col, _ = self.ensure_collection(name, **settings) if create else (self._open(name), False)
        return col

    def ensure_collection(self, name: str, **settings: Any) -> tuple[Collection, bool]:
        """Create or update a collection; returns (collection, created)."""
        check_collection_name(name)
        unknown = set(settings) - set(SETTING_KEYS)
        if unknown:
            raise BadRequest(f"unknown collection setting(s): {', '.join(sorted(unknown))}")
        given = {k: v for k, v in settings.items() if v is not None}
        _check_settings(given)
        try:
            col = self._open(name)
        except NotFound:
            model = given.get("model", DEFAULT_MODEL)
            dim = given.get("dim")
            if model == "none" and dim is None:
                raise BadRequest("a collection with model 'none' needs 'dim'") from None
            if model != "none" and dim is None and model not in KNOWN_DIMS:
                dim = get_encoder(model).dim
            elif model != "none" and dim is not None and dim != KNOWN_DIMS.get(model, dim):
                raise BadRequest(f"model {model!r} makes {KNOWN_DIMS[model]}-d vectors, not {dim}") from None
            cs = CollectionSettings(name=name, **{**given, "model": model, "dim": dim})
            try:
                return Collection(self.store.create_collection(cs), allow_file=self.allow_file,
                                  max_pixels=self.max_pixels, file_digests=self.file_digests), True
            except Conflict:  # created concurrently
                col = self._open(name)
        for key, normalize in (("index", normalize_index), ("compression", normalize_compression)):
            if key in given:  # partial objects change only the keys they name
                part = {"type": given[key]} if isinstance(given[key], str) else given[key]  # "exact" shorthand
                given[key] = normalize({**getattr(col.settings, key), **part}, col.settings.dim)
        changes = {k: v for k, v in given.items() if getattr(col.settings, k) != v}
        if ("model" in changes or "dim" in changes) and col.count() > 0:
            raise Conflict(f"collection {name!r} holds records made with model {col.settings.model!r} "
                           f"({col.settings.dim}-d); create a new collection for another model")
        if changes:
            if "model" in changes and "dim" not in given and changes["model"] != "none":
                changes["dim"] = KNOWN_DIMS.get(changes["model"]) or get_encoder(changes["model"]).dim
            col._store.update_settings(**changes)
        return col, False

    def _open(self, name: str) -> Collection:
        return Collection(self.store.collection(name), allow_file=self.allow_file, max_pixels=self.max_pixels,
                          file_digests=self.file_digests)

    def collections(self) -> list[dict]:
        """`[{"name", "count", "model"}]` for every collection."""
        out = []
        for s in self.store.list_collections():
            out.append({"name": s.name, "count": self.store.collection(s.name).count(), "model": s.model})
        return out

    def drop(self, name: str) -> None:
        self.store.drop_collection(name)

    def close(self) -> None:
        self.store.close()
        if self.file_digests is not None:
            self.file_digests.close()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_settings(s: dict) -> None:
    if "model" in s:
        check_model_name(s["model"])
    if "metric" in s and s["metric"] not in METRICS:
        raise BadRequest(f"unknown metric {s['metric']!r}; use one of: {', '.join(METRICS)}")
    if "dim" in s and (not isinstance(s["dim"], int) or isinstance(s["dim"], bool) or not 1 <= s["dim"] <= 65536):
        raise BadRequest("'dim' must be an integer from 1 to 65536")
    if "group_field" in s and (not isinstance(s["group_field"], str) or not s["group_field"]):
        raise BadRequest("'group_field' must be a field name")
    if "text_fields" in s and (not isinstance(s["text_fields"], list)
                               or not all(isinstance(f, str) and f for f in s["text_fields"])):
        raise BadRequest("'text_fields' must be a list of field names")
    if "boosts" in s:
        parse_boosts(s["boosts"])
    if "compound" in s:
        from .query.text_search import check_compound
        s["compound"] = check_compound(s["compound"])
    if "thumbnails" in s and not isinstance(s["thumbnails"], bool):
        raise BadRequest("'thumbnails' must be true or false")
    if "index" in s:
        normalize_index(s["index"])
    if "compression" in s:
        normalize_compression(s["compression"], s.get("dim"))


def connect(location: str | Path | None = None, *, allow_file: bool = True,
            max_pixels: int = DEFAULT_MAX_PIXELS, read_only: bool = False) -> Database:
    """Open a data folder (created if needed) or an external store by URL.

    A data folder has one writer at a time: opening one that another process (a running
    `lookalike serve`, an ingest) holds raises Conflict naming that process. `read_only=True`
    takes no lock and creates nothing (NotFound if there is no data there): for searches
    beside a writer. `max_pixels` bounds width x height of every decoded image (larger ones
    are refused, 413).
    """
    import os
    location = str(location or os.environ.get("LOOKALIKE_DATA") or "./lookalike-data")
    store = open_store(location, read_only=read_only)
    if not allow_file:
        digests = None
    elif read_only:  # the folder's digest cache is written: a reader keeps its own for this run
        digests = FileDigests.in_memory()
    else:
        digests = for_data_dir(location)
    return Database(store, allow_file=allow_file, file_digests=digests, max_pixels=max_pixels)
