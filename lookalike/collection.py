"""The Python API: `connect()` gives a Database, `db.collection()` a Collection.

Method names, arguments and return shapes are the HTTP contract's, so code written against
this API runs unchanged against a server through `lookalike.Client`.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .errors import BadRequest, Conflict, NotFound, NotImplementedYet
from .index.settings import normalize_compression, normalize_index
from .ingest import Ingestor
from .ingest.fetch import fetch_url, read_file
from .ingest.filecache import FileDigests, for_data_dir
from .ingest.update import update as update_record
from .models import get_encoder
from .models.images import DEFAULT_MAX_PIXELS
from .models.registry import DEFAULT_MODEL, check_model_name
from .query import cleanup
from .query.clusters import duplicates
from .query.match import match
from .query.engine import Searcher
from .query.evaluate import evaluate, evaluate_file
from .query.explain import prepare as prepare_explain
from .query.keywords import DEFAULT_KEYWORD_WEIGHT, check_fusion, run_keyword_search
from .query.labels import restrict_to_same_label
from .query.modifiers import split_query
from .query.quick import quick_search
from .query.regions import apply_box, check_regions, region_hits
from .query.search import check_min_score, check_query, dotted, parse_boosts, parse_search, project
from .query.text_search import check_compound, run_text_search, wants_text
from .query.tune import holdout_truth, tune, tuning_info
from .records import INTERNAL, check_delete, check_id, check_ids
from .store import CollectionSettings, CollectionStore, Store, open_store
from .store.base import KNOWN_DIMS, METRICS, check_collection_name
from .store.filters import And, Cond, Not, parse_filter
from .validation import check_bool, check_dim, check_field_name, check_field_names, check_int

#: Queries one `vectors` search may carry.
MAX_VECTORS = 1000

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
        self._searcher = Searcher(store, fetch_url=fetch_url, read_file=read_file if allow_file else None,
                                  max_pixels=max_pixels)

    @property
    def name(self) -> str:
        return self._store.settings.name

    @property
    def settings(self) -> CollectionSettings:
        return self._store.settings

    @property
    def encoder(self):
        return self._searcher.encoder

    # -- records -------------------------------------------------------------------------
    def upsert(self, records: Iterable[dict], *, base_dir: str | Path | None = None, batch_size: int | None = None,
               on_batch=None, decode: str | None = None, resize: str | None = None,
               device: str | None = None) -> list[dict]:
        """Insert or update records; one result per record, in order (see the contract).

        Records are written `batch_size` at a time (default: 32 with an image model, 4096 in a
        collection of precomputed vectors, model 'none'): one transaction and one index add each.

        Pipeline options: `decode` "threads" or "processes" (where images are decoded;
        default `$LOOKALIKE_DECODE`, else threads), `resize` "auto", "host" or "device" (default
        `$LOOKALIKE_RESIZE`, else auto), `device` where the model runs ("cpu", "cuda", "cuda:N";
        default `$LOOKALIKE_DEVICE`, else CUDA when available). See docs/deployment.md.
        """
        return list(self.upsert_iter(records, base_dir=base_dir, batch_size=batch_size, on_batch=on_batch,
                                     decode=decode, resize=resize, device=device))

    def upsert_iter(self, records: Iterable[dict], *, base_dir: str | Path | None = None,
                    batch_size: int | None = None,
                    on_batch=None, decode: str | None = None, resize: str | None = None, device: str | None = None):
        """Like `upsert`, yielding results as batches are written (for streaming ingest)."""
        model = self.settings.model
        encoder = self.encoder if device is None or model == "none" else get_encoder(model, device)
        ingestor = Ingestor(self._store, encoder, allow_file=self.allow_file,
                            base_dir=Path(base_dir) if base_dir else None, batch_size=batch_size,
                            max_pixels=self.max_pixels, file_digests=self.file_digests, decode=decode, resize=resize)
        return ingestor.run(records, on_batch=on_batch)

    def get(self, id: str) -> dict:
        """The stored record with its computed fields; NotFound if absent."""
        check_id(id)
        doc = self._store.get([id])[0]
        if doc is None:
            raise NotFound(f"record {id!r} not found in collection {self.name!r}")
        return {k: v for k, v in doc.items() if k not in INTERNAL}

    def update(self, id: str, fields: dict) -> dict:
        """Change a record's metadata in place: `fields` are merged in (`None` removes one); the
        vector, computed fields, `_file`/`_url` and thumbnail stay. Returns the record as `get` does;
        NotFound if absent, BadRequest for a reserved field (`_id`, image sources, computed ones)."""
        return update_record(self._store, id, fields)

    def delete(self, ids: Sequence[str] | str | None = None, *, filter: dict | None = None) -> int:
        """Delete by ids or by filter; returns how many records were deleted."""
        ids = check_delete(ids, filter)
        if ids is None:
            if not filter:
                raise BadRequest("an empty delete filter would delete everything; delete the collection instead")
            return self._store.delete(list(self._store.ids_where(parse_filter(filter))))
        return self._store.delete(ids)

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
        if fields is not None:
            check_field_names("fields", fields)
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

    def kept_thumbnail(self, id: str) -> bytes | None:
        """The small JPEG kept for a record, or None (none kept, or a store without thumbnails)."""
        return self._store.thumbnail(id) if self._store.capabilities.thumbnails else None

    def thumbnail(self, id: str) -> bytes:
        """The small JPEG kept for a record made from a file or base64 image; NotFound otherwise."""
        data = self.kept_thumbnail(id)
        if data is None:
            raise NotFound(f"no thumbnail kept for record {id!r} in collection {self.name!r}")
        return data

    def tune(self, field: str | None = None, *, groups: bool = False, reset: bool = False) -> dict:
        """Learn from the records' `field` values (or `groups`: the group_field) which records are
        alike, and search in that space when it scores better on held-out values; `reset` goes
        back to the model's own vectors. `{"applied", "before", "after", ...}` (see query/tune.py)."""
        return tune(self._store, field, groups=groups, reset=reset)

    def compact(self) -> dict:
        """Rewrite the collection's files without the rows of deleted and replaced records, which
        stay on disk until then: `{"collection", "count", "bytes_before", "bytes"}` (see
        docs/storage.md). NotImplementedYet for a backend that compacts on its own (Milvus)."""
        if not self._store.capabilities.compaction:
            raise NotImplementedYet(f"collection {self.name!r} is in a store without compaction "
                                    "(Milvus compacts its own segments)")
        before = self._store.stats().get("bytes", 0)
        self._store.compact()
        return {"collection": self.name, "count": self.count(), "bytes_before": before,
                "bytes": self._store.stats().get("bytes", 0)}

    def info(self) -> dict:
        """Settings and stats, as `GET /v1/collections/{name}` returns them."""
        s = self.settings
        stats = self._store.stats()
        return {"name": s.name, "count": self.count(), "dim": s.dim, "model": s.model, "metric": s.metric,
                "group_field": s.group_field, "text_fields": s.text_fields, "boosts": s.boosts,
                "thumbnails": getattr(s, "thumbnails", True),
                "index": stats.get("index", "exact"), "compression": s.compression, "bytes": stats.get("bytes", 0),
                "bytes_per_vector": stats.get("bytes_per_vector"), "tuning": tuning_info(s.tuning)}

    # -- search --------------------------------------------------------------------------
    def search(self, query: dict, k: int = 10, *, offset: int = 0, filter: dict | None = None,
               group_by: str | None = None, negative: list[dict] | None = None, boost: list[dict] | None = None,
               fields: list[str] | None = None, negative_weight: float = 0.5, text: str | None = None,
               hybrid: float | None = None, same_label: bool = False, min_score: float | None = None,
               explain: bool = False, collapse: bool | dict | None = None, fusion: str = "rrf",
               keyword_weight: float = DEFAULT_KEYWORD_WEIGHT, regions: bool | int = False) -> dict:
        """Records most similar to the query, best first: `{"hits": [...], "took_ms": ...}`.

        `text` and `hybrid` (0..1) mix text similarity into the ranking (see docs/text.md);
        `min_score` drops hits scoring below it; `explain` adds `_explain` to each hit (query/explain.py);
        `collapse` keeps one hit per near-duplicate cluster (query/collapse.py).
        A query's `keywords` match exact terms, alone or blended with its anchor by `fusion`
        ("rrf" or "weighted") and `keyword_weight` (see query/keywords.py). A query's `box`
        searches that part of its picture; `regions` (true or 1..8) adds `"regions": [{"box",
        "hits"}]` for object regions proposed in it (see query/regions.py).
        """
        start = time.perf_counter()
        if (negative is None and boost is None and text is None and hybrid is None and min_score is None
                and (group_by is None or group_by is False) and same_label is False and explain is False
                and (collapse is None or collapse is False) and (regions is False or regions is None)):
            hits = quick_search(self._searcher, query, k, offset, filter, fields, negative_weight, fusion,
                                keyword_weight)  # query/quick.py: a plain vector or id query
            if hits is not None:
                return {"hits": hits, "took_ms": round((time.perf_counter() - start) * 1000, 3)}
        anchor, extra = split_query(query)
        params = parse_search(anchor or {"text": "keywords"}, k=k, offset=offset, filter=filter, group_by=group_by,
                              negative=negative, boost=boost, fields=fields, negative_weight=negative_weight,
                              same_label=same_label, min_score=min_score, explain=explain, collapse=collapse)
        if "vectors" in params.query:  # several queries in one call: a list of hit lists
            if extra or regions or params.explain or params.collapse or params.min_score is not None:
                raise BadRequest("a 'vectors' query takes no 'keywords', 'box', 'regions', 'explain', 'collapse' or "
                                 "'min_score': search those one vector at a time")
            return {"hits": self._search_vectors(params, text, hybrid),
                    "took_ms": round((time.perf_counter() - start) * 1000, 3)}
        fusion, keyword_weight = check_fusion(fusion, keyword_weight)
        n_regions = check_regions(regions)
        if "keywords" in extra and (text is not None or hybrid is not None or anchor is None and same_label):
            raise BadRequest("'keywords' cannot be combined with 'text', 'hybrid', or 'same_label' without an anchor")
        if n_regions and "box" in extra:
            raise BadRequest("give either a 'box' or 'regions', not both")
        read_stored = read_file if self.allow_file else None  # a stored record's own _file, for boxes
        if "box" in extra:
            params = apply_box(self._searcher, params, extra["box"], read_stored)
        given = params  # region proposals cut the query's own picture
        if params.explain and anchor is not None:  # the query's labels, colours and copy hashes (decoded once)
            params = dataclasses.replace(params, trace={})
            prepare_explain(self._searcher, params)

        def ranked(params) -> list[dict]:
            if params.same_label:  # classify the query, keep results with its label (query/labels.py)
                restrict_to_same_label(self._searcher, params)
            if "keywords" in extra:
                return run_keyword_search(self._searcher, params, extra["keywords"], anchored=anchor is not None,
                                          fusion=fusion, weight=keyword_weight)
            if wants_text(params.query, text, hybrid) or self.settings.compound:
                return run_text_search(self._searcher, params, text, hybrid)
            return self._searcher.visual(params)
        # a copy only where the query's own parameters are used again (`ranked` may narrow them)
        out: dict = {"hits": ranked(dataclasses.replace(params) if n_regions else params)}
        if n_regions:
            out["regions"] = region_hits(self._searcher, given, n_regions, read_stored, ranked)
        out["took_ms"] = round((time.perf_counter() - start) * 1000, 3)
        return out

    def _search_vectors(self, params, text: str | None, hybrid: float | None) -> list[list[dict]]:
        """Hits per vector of `{"vectors": [[...], ...]}`, each as `{"vector": ...}` would give them."""
        vectors = params.query["vectors"]
        if type(vectors) is np.ndarray:  # a 2-D float array (query/arrays.py checks it)
            if vectors.ndim == 2 and not len(vectors):
                raise BadRequest("'vectors' must be a non-empty list of vectors (lists of numbers)")
        elif not isinstance(vectors, list) or not vectors or \
                not all(isinstance(v, list) or type(v) is np.ndarray for v in vectors):
            raise BadRequest("'vectors' must be a non-empty list of vectors (lists of numbers)")
        check_int("number of vectors", len(vectors), 1, MAX_VECTORS)
        if text is not None or hybrid is not None or params.same_label:
            raise BadRequest("a 'vectors' query takes no 'text', 'hybrid' or 'same_label': search them one at a time")
        if self.settings.compound:  # ranked by several parts (query/text_search.py): one search each
            self._searcher.vector_rows(vectors)  # every row checked first, a bad one named by position
            return [run_text_search(self._searcher, dataclasses.replace(params, query={"vector": v}), None, None)
                    for v in vectors]
        return self._searcher.visual_many(params, vectors)

    def recommend(self, id: str, k: int = 10, *, filter: dict | None = None, fields: list[str] | None = None,
                  offset: int = 0, group_by: str | bool | None = None, min_score: float | None = None,
                  explain: bool = False, collapse: bool | dict | None = None) -> dict:
        """Items that look like `id`, excluding it and the rest of its group.

        `group_by`: one hit per value of this field (default the collection's `group_field`;
        False: every hit); the anchor's own group is excluded either way. `min_score`, `explain`
        and `collapse` as in `search`.
        """
        start = time.perf_counter()
        params = parse_search({"id": id}, k=k, offset=offset, filter=filter, fields=fields, group_by=group_by,
                              min_score=min_score, explain=explain, collapse=collapse)
        if params.explain:
            prepare_explain(self._searcher, params)
        group_field = self.settings.group_field
        if group_field:
            value = dotted(self.get(id), group_field)
            if value is not None and not isinstance(value, (dict, list)):
                params.where = And((params.where, Not(Cond(group_field, "$eq", value))))
        if params.group_by is None:
            params.group_by = group_field
        hits = self._searcher.visual(params)
        return {"hits": hits, "took_ms": round((time.perf_counter() - start) * 1000, 3)}

    def rerank(self, ids: list[str], query: dict, *, fields: list[str] | None = None,
               min_score: float | None = None) -> dict:
        """The given ids sorted by similarity to the query; unknown ids listed in `missing`; ids
        scoring below `min_score` are left out (they are not missing)."""
        start = time.perf_counter()
        min_score = check_min_score(min_score)
        if not isinstance(ids, list):
            raise BadRequest("'ids' must be a list of strings")
        check_int("number of ids", len(ids), 1, 10_000)
        check_ids(ids)
        check_query(query)
        vector, _ = self._searcher.anchor_vector(query)
        scores = self._store.scores(vector, ids)
        order = sorted(scores, key=lambda i: (-scores[i], ids.index(i)))
        docs = dict(zip(order, self._store.get(order)))
        hits = [{"_id": i, "_score": round(scores[i], 6), **project(docs[i] or {}, fields)} for i in order]
        if min_score is not None:
            hits = [hit for hit in hits if hit["_score"] >= min_score]
        missing = [i for i in dict.fromkeys(ids) if i not in scores]
        return {"hits": hits, "missing": missing, "took_ms": round((time.perf_counter() - start) * 1000, 3)}

    def match(self, query: dict, threshold: float | None = None, k: int = 10,
              fields: list[str] | None = None) -> dict:
        """Copies of an image (or of a record, `{"id": ...}`): hits with `"_match": "exact" | "near"`."""
        return match(self._searcher, query, threshold, k=k, fields=fields)

    def duplicates(self, threshold: float | None = None) -> dict:
        """Groups of records that are copies of each other: `{"clusters": [["a", "b"], ...]}`."""
        return duplicates(self._store, threshold)

    def duplicates_report(self, threshold: float | None = None) -> dict:
        """The copy clusters with a suggested keeper each (resolution, file size, metadata; see
        query/cleanup.py): `{"clusters": [{"cluster", "keeper", "reason", "members": [...]}]}`."""
        start = time.perf_counter()
        found = self.duplicates(threshold)["clusters"]
        return {"clusters": cleanup.report(self._store, found), "took_ms": round((time.perf_counter() - start) * 1000, 3)}

    def tag(self, ids: list[str], fields: dict) -> dict:
        """Set metadata fields (null removes one) on existing records without re-embedding them:
        `{"tagged": n, "missing": [...]}`."""
        return cleanup.tag(self._store, ids, fields)

    def resolve(self, keep: str, others: list[str], action: str = "delete", fields: dict | None = None) -> dict:
        """Resolve a copy cluster: keep `keep`, delete `others` (or tag them, by default with
        `{"duplicate_of": keep}`). Nothing happens when `keep` does not exist."""
        return cleanup.resolve(self._store, keep, others, action, fields)

    def evaluate(self, truth: str | Path | list[dict] | None = None, k: int = 10, *, holdout: bool = False) -> dict:
        """Search quality against a golden set: a JSONL truth file's path or its lines as dicts
        (see `lookalike.query.evaluate`); `{"metrics": {"map@k", "ndcg@k", "precision@k", "recall@k"}, ...}`.
        `holdout` (no truth): search by id among the records whose tuned field has one of the
        values the last tune held out (labels it never learned from); relevant = same value."""
        if holdout:
            if truth is not None:
                raise BadRequest("give either a truth file or 'holdout', not both")
            return evaluate(self, holdout_truth(self._store), k=k)
        if truth is None:
            raise BadRequest("evaluate needs a truth file (or 'holdout' on a tuned collection)")
        if isinstance(truth, (str, Path)):
            return evaluate_file(self, Path(truth), k=k)
        return evaluate(self, truth, k=k)

    def embed_image(self, data: bytes) -> np.ndarray:
        """The collection model's vector for an image file's bytes."""
        return self._searcher.embed_image(data)


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
    if "dim" in s:
        check_dim(s["dim"])
    if "group_field" in s:
        check_field_name("group_field", s["group_field"])
    if "text_fields" in s:
        check_field_names("text_fields", s["text_fields"])
    if "boosts" in s:
        parse_boosts(s["boosts"])
    if "compound" in s:
        s["compound"] = check_compound(s["compound"])
    if "thumbnails" in s:
        check_bool("thumbnails", s["thumbnails"])
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
    location = str(location or os.environ.get("LOOKALIKE_DATA") or "./lookalike-data")
    store = open_store(location, read_only=read_only)
    if not allow_file:
        digests = None
    elif read_only:  # the folder's digest cache is written: a reader keeps its own for this run
        digests = FileDigests.in_memory()
    else:
        digests = for_data_dir(location)
    return Database(store, allow_file=allow_file, file_digests=digests, max_pixels=max_pixels)
