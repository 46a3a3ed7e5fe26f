"""The Milvus store: the same collections, records and search, kept in a Milvus server (or Milvus Lite).

`lookalike.connect("milvus://host:19530")` (a Milvus server or cluster; `milvus://user:password@host:port/db`,
or a token in `$LOOKALIKE_MILVUS_TOKEN`) or `lookalike.connect("./file.db")` (Milvus Lite, one local
process). Nothing is kept in this process but a client: several servers pointed at one Milvus serve
the same results.

Layout: one Milvus collection per lookalike collection (`lk_` + the name, `_` written `__` and `-`
written `_d`, as Milvus allows only letters, digits and `_`), with fields `id` (VARCHAR primary key),
`vector` (FLOAT_VECTOR, a FLAT index with metric IP: exact search, the same hits as the embedded
store), `doc` and `computed` (JSON: the record as stored), `filter_view` (JSON, see `milvus_filters`),
`content_hash`, `source_hash` (skip unchanged records) and `updated`. Collection settings live in
one more collection, `lookalike_settings`.

Search: the filter is translated to a Milvus expression and Milvus returns the nearest vectors;
grouping and boosts are applied here to a widened candidate set (widened until the answer is
provably the exact one, up to Milvus's window of 16384 candidates), evaluated with the same field
index code as the embedded store, so results match it.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence
from urllib.parse import unquote, urlparse

import numpy as np

from ..errors import BadRequest, Conflict, LookalikeError, NotFound
from ..index.exact import top_k
from ..query.field_index import FieldIndex
from ..query.filters import MATCH_ALL, Node
from .base import (KNOWN_DIMS, CollectionSettings, CollectionStore, Hit, SearchRequest, Store, StoredRecord,
                   check_collection_name, plan_write)
from .milvus_filters import COLUMN, filter_view, to_expression

SETTINGS_COLLECTION = "lookalike_settings"
#: Milvus answers at most this many hits per search (limit + offset).
MAX_WINDOW = 16_384
#: Rows per upsert/get call (keeps gRPC messages well under their 64 MB limit).
CHUNK = 256
#: Milvus's limit on one JSON value.
MAX_JSON_BYTES = 65_536
_FIELDS = ("doc", "computed")


def milvus_name(name: str) -> str:
    """A lookalike collection name as a Milvus one (reversible, no collisions)."""
    return "lk_" + name.replace("_", "__").replace("-", "_d")


def _import_pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise LookalikeError("the Milvus store needs pymilvus: pip install 'lookalike[milvus]'") from None
    return pymilvus


def parse_location(location: str) -> dict:
    """MilvusClient arguments for `milvus://[user:password@]host[:port][/db]` or a Milvus Lite `*.db` path."""
    if not location.startswith("milvus://"):
        return {"uri": os.path.abspath(location)}
    url = urlparse(location)
    if not url.hostname:
        raise BadRequest(f"invalid Milvus URL {location!r}: use milvus://host:19530")
    try:
        port = url.port or 19530
    except ValueError:
        raise BadRequest(f"invalid port in Milvus URL {location!r}") from None
    args: dict[str, Any] = {"uri": f"http://{url.hostname}:{port}"}
    token = os.environ.get("LOOKALIKE_MILVUS_TOKEN")
    if url.username:
        token = f"{unquote(url.username)}:{unquote(url.password or '')}"
    if token:
        args["token"] = token
    if url.path.strip("/"):
        args["db_name"] = url.path.strip("/")
    return args


class MilvusCollection(CollectionStore):
    """One lookalike collection in a Milvus collection; every call goes to Milvus (no local state)."""

    def __init__(self, store: "MilvusStore", settings: CollectionSettings) -> None:
        self._store = store
        self._client = store.client
        self.settings = settings
        self.name = settings.name
        self._mname = milvus_name(settings.name)

    # -- reads ---------------------------------------------------------------------------
    def count(self) -> int:
        rows = self._store.call(self._client.query, self._mname, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _rows(self, ids: Sequence[str], fields: list[str]) -> dict[str, dict]:
        out: dict[str, dict] = {}
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), CHUNK):
            chunk = unique[start:start + CHUNK]
            for row in self._store.call(self._client.get, self._mname, ids=chunk, output_fields=fields):
                out[row["id"]] = row
        return out

    def hashes(self, ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        rows = self._rows(ids, ["content_hash", "source_hash"])
        return {i: (r["content_hash"], r["source_hash"]) for i, r in rows.items()}

    def get(self, ids: Sequence[str]) -> list[dict | None]:
        rows = self._rows(ids, list(_FIELDS))
        return [_stored(rows[i]) if i in rows else None for i in ids]

    def vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        rows = self._rows(ids, ["vector"])
        return {i: np.asarray(r["vector"], dtype=np.float32) for i, r in rows.items()}

    def _iterate(self, expr: str, fields: list[str], batch: int = 1000) -> Iterator[dict]:
        it = self._store.call(self._client.query_iterator, self._mname, batch_size=batch, filter=expr,
                              output_fields=fields)
        try:
            while True:
                rows = self._store.call(it.next)
                if not rows:
                    return
                yield from rows
        finally:
            it.close()

    def ids_where(self, where: Node) -> list[str]:
        return [row["id"] for row in self._iterate(to_expression(where), ["id"])]

    def list_ids(self, where: Node = MATCH_ALL, *, offset: int = 0, limit: int = 50) -> tuple[list[str], int]:
        ids = sorted(self.ids_where(where))
        return ids[offset:offset + limit], len(ids)

    def facets(self, where: Node = MATCH_ALL, *, top: int = 20) -> list[dict]:
        """Value counts and numeric ranges per path, as the embedded store computes them.

        Reads the matching records' metadata once and indexes it here (one pass; fine for
        catalogue-browsing sizes, not a cluster-wide aggregation).
        """
        from .embedded import _facet  # the embedded store's per-path summary, for identical answers

        docs = [_stored(row) for row in self._iterate(to_expression(where), list(_FIELDS))]
        fields = FieldIndex()
        fields.add(list(range(len(docs))), docs)
        live = np.ones(len(docs), dtype=bool)
        out = []
        for path in sorted(fields.paths):
            if path.startswith("_") and path != "_labels.label":
                continue
            facet = _facet(path, fields.paths[path], live, top)
            if facet is not None:
                out.append(facet)
        return out

    def all_vectors(self) -> tuple[list[str], np.ndarray]:
        ids, vecs = [], []
        for row in self._iterate("", ["id", "vector"]):
            ids.append(row["id"])
            vecs.append(np.asarray(row["vector"], dtype=np.float32))
        return ids, np.stack(vecs) if vecs else np.empty((0, self.settings.dim), dtype=np.float32)

    def scores(self, vector: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        found = self.vectors(ids)
        q = np.asarray(vector, dtype=np.float32)
        return {i: float(found[i] @ q) for i in ids if i in found}

    def stats(self) -> dict:
        row_bytes = 4 * (self.settings.dim or 0)
        index = {**self.settings.index, "active": "milvus-flat", "state": "ready", "library": "milvus",
                 "indexed_rows": self.count(), "memory_bytes": 0}
        return {"index": index, "bytes": index["indexed_rows"] * row_bytes, "bytes_per_vector": row_bytes}

    # -- search --------------------------------------------------------------------------
    def _nearest(self, vector: np.ndarray, limit: int, expr: str, with_docs: bool) -> list["_Candidate"]:
        fields = list(_FIELDS) if with_docs else ["id"]
        result = self._store.call(self._client.search, self._mname, data=[np.asarray(vector, np.float32).tolist()],
                                  anns_field="vector", limit=limit, filter=expr, output_fields=fields,
                                  search_params={"metric_type": "IP", "params": {}})
        return [_Candidate(h["id"], float(h["distance"]), _stored(h["entity"]) if with_docs else None)
                for h in result[0]]

    def search(self, request: SearchRequest) -> list[Hit]:
        need = request.k + request.offset
        excluded = set(request.exclude)
        if need + len(excluded) > MAX_WINDOW:
            raise BadRequest(f"k + offset is {need}; the Milvus store pages through at most "
                             f"{MAX_WINDOW - len(excluded)} hits of one query")
        expr = to_expression(request.where)
        plain = not request.boosts and not request.group_by
        headroom = sum(max(0.0, float(w)) for _, w in request.boosts)  # the most boosts can add
        pool = need + len(excluded) if plain else min(MAX_WINDOW, max(64, 4 * need) + len(excluded))
        while True:
            fetched = self._nearest(request.vector, pool, expr, with_docs=not plain)
            exhausted = len(fetched) < pool
            cands = [c for c in fetched if c.id not in excluded]
            if plain:
                return [Hit(c.id, c.score) for c in cands[request.offset:need]]
            # Unfetched records score at most the last fetched raw score plus every positive boost:
            # candidates above that bound are in their final order, the rest may still be overtaken.
            floor = -np.inf if exhausted or not fetched else fetched[-1].score + headroom
            hits, certain = self._rank(cands, request, floor)
            if certain >= need or exhausted or pool >= MAX_WINDOW:
                return hits[request.offset:need]
            pool = min(MAX_WINDOW, pool * 4)

    def _rank(self, cands: list["_Candidate"], request: SearchRequest, floor: float) -> tuple[list[Hit], int]:
        """Boosted, grouped hits of the candidates, and how many of them are certainly final."""
        n = len(cands)
        fields = FieldIndex()
        fields.add(list(range(n)), [c.doc or {} for c in cands])
        scores = np.array([c.score for c in cands], dtype=np.float32)
        for node, weight in request.boosts:
            scores = scores + np.float32(weight) * fields.mask(node, n)
        order = top_k(scores, n)
        certain_rows = int(np.sum(scores >= floor))
        if not request.group_by:
            return [Hit(cands[i].id, float(scores[i])) for i in order], certain_rows
        first = fields.first_values(request.group_by, n)
        seen: set = set()
        hits: list[Hit] = []
        certain = 0
        for rank, i in enumerate(order):
            vid = int(first[i])
            key = ("v", vid) if vid >= 0 else ("r", int(i))
            if key in seen:
                continue
            seen.add(key)
            group = fields.value_of(request.group_by, vid) if vid >= 0 else None
            hits.append(Hit(cands[i].id, float(scores[i]), group))
            if rank < certain_rows:
                certain += 1
        return hits, certain

    # -- writes --------------------------------------------------------------------------
    def write(self, records: Sequence[StoredRecord]) -> list[str]:
        statuses, changed = plan_write(records, self.hashes([r.id for r in records]))
        rows = [self._row(r) for r in changed]
        for start in range(0, len(rows), CHUNK):
            self._store.call(self._client.upsert, self._mname, rows[start:start + CHUNK])
        return statuses

    def _row(self, rec: StoredRecord) -> dict:
        vector = np.asarray(rec.vector, dtype=np.float32).reshape(-1)
        if len(vector) != self.settings.dim:
            raise BadRequest(f"record {rec.id!r} has a {len(vector)}-d vector, "
                             f"the collection expects {self.settings.dim}")
        row = {"id": rec.id, "vector": vector.tolist(), "doc": rec.doc, "computed": rec.computed,
               COLUMN: filter_view({**rec.doc, **rec.computed}), "content_hash": rec.content_hash,
               "source_hash": rec.source_hash, "updated": time.time()}
        for name in ("doc", "computed", COLUMN):
            size = len(json.dumps(row[name], ensure_ascii=False).encode())
            if size > MAX_JSON_BYTES:
                raise BadRequest(f"record {rec.id!r}: its {name} is {size} bytes of JSON, "
                                 f"over Milvus's limit of {MAX_JSON_BYTES}")
        return row

    def delete(self, ids: Sequence[str]) -> int:
        present = list(self.hashes(list(ids)))
        for start in range(0, len(present), CHUNK):
            self._store.call(self._client.delete, self._mname, ids=present[start:start + CHUNK])
        return len(present)

    def flush(self) -> None:
        """Seal recent writes into segments (after a bulk load; Milvus also does it on its own)."""
        self._store.call(self._client.flush, self._mname)

    def update_settings(self, **changes: Any) -> CollectionSettings:
        merged = CollectionSettings.from_dict({**self.settings.to_dict(), **changes})
        self._store._save_settings(merged)
        self.settings = merged
        return merged


@dataclass
class _Candidate:
    id: str
    score: float
    doc: dict | None  # metadata plus computed fields (what filters and grouping see)


def _stored(row: dict) -> dict:
    return {**(row.get("doc") or {}), **(row.get("computed") or {})}


class MilvusStore(Store):
    """Collections in a Milvus server (`milvus://host:port`) or a Milvus Lite file (`./file.db`)."""

    def __init__(self, location: str) -> None:
        pymilvus = _import_pymilvus()
        self.location = location
        self._exc = pymilvus.MilvusException
        self._types = pymilvus.DataType
        args = parse_location(location)
        try:
            self.client = pymilvus.MilvusClient(**args, timeout=30)
        except self._exc as exc:
            raise LookalikeError(f"cannot connect to Milvus at {location}: {exc.message}") from None
        except Exception as exc:  # grpc/connection errors come in several types
            raise LookalikeError(f"cannot connect to Milvus at {location}: {exc}") from None
        self._loaded: set[str] = set()
        self._ensure_settings_collection()

    def call(self, fn, *args: Any, **kwargs: Any) -> Any:
        """Run a client call; Milvus errors become LookalikeErrors with Milvus's message."""
        try:
            return fn(*args, **kwargs)
        except self._exc as exc:
            raise LookalikeError(f"Milvus error: {exc.message}") from None

    # -- settings ------------------------------------------------------------------------
    def _ensure_settings_collection(self) -> None:
        if self.call(self.client.has_collection, SETTINGS_COLLECTION):
            self._load(SETTINGS_COLLECTION)
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", self._types.VARCHAR, is_primary=True, max_length=128)
        schema.add_field("settings", self._types.VARCHAR, max_length=65_535)
        schema.add_field("vector", self._types.FLOAT_VECTOR, dim=2)  # Milvus needs one vector field
        self._create(SETTINGS_COLLECTION, schema, "vector")

    def _create(self, mname: str, schema: Any, vector_field: str) -> None:
        index = self.client.prepare_index_params()
        index.add_index(vector_field, index_type="FLAT", metric_type="IP")
        try:
            self.client.create_collection(mname, schema=schema, index_params=index, consistency_level="Strong")
        except self._exc:
            if not self.call(self.client.has_collection, mname):  # not a concurrent create: a real error
                raise
        self._load(mname)

    def _load(self, mname: str) -> None:
        """Milvus serves only loaded collections; a reopened file or restarted server starts released."""
        if mname in self._loaded:
            return
        state = self.call(self.client.get_load_state, mname)
        if "Loaded" not in str(state.get("state")):
            self.call(self.client.load_collection, mname)
        self._loaded.add(mname)

    def _settings_row(self, name: str) -> CollectionSettings | None:
        rows = self.call(self.client.get, SETTINGS_COLLECTION, ids=[name], output_fields=["settings"])
        return CollectionSettings.from_dict(json.loads(rows[0]["settings"])) if rows else None

    def _save_settings(self, settings: CollectionSettings) -> None:
        self.call(self.client.upsert, SETTINGS_COLLECTION,
                  [{"name": settings.name, "settings": json.dumps(settings.to_dict()), "vector": [1.0, 0.0]}])

    # -- collections ---------------------------------------------------------------------
    def list_collections(self) -> list[CollectionSettings]:
        rows = self.call(self.client.query, SETTINGS_COLLECTION, filter='name != ""', output_fields=["settings"],
                         limit=MAX_WINDOW)
        found = [CollectionSettings.from_dict(json.loads(r["settings"])) for r in rows]
        return sorted(found, key=lambda s: s.name)

    def create_collection(self, settings: CollectionSettings) -> MilvusCollection:
        check_collection_name(settings.name)
        if settings.dim is None:
            settings.dim = KNOWN_DIMS.get(settings.model)
        if not isinstance(settings.dim, int) or isinstance(settings.dim, bool) or not 1 <= settings.dim <= 32768:
            raise BadRequest(f"collection {settings.name!r} needs a vector dimension 'dim' between 1 and 32768 "
                             "(Milvus's limit)")
        if self._settings_row(settings.name) is not None:
            raise Conflict(f"collection {settings.name!r} already exists")
        mname = milvus_name(settings.name)
        if self.call(self.client.has_collection, mname):  # left over from an interrupted create or drop
            self.call(self.client.drop_collection, mname)
            self._loaded.discard(mname)
        t = self._types
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", t.VARCHAR, is_primary=True, max_length=1024)
        schema.add_field("vector", t.FLOAT_VECTOR, dim=settings.dim)
        for name in (*_FIELDS, COLUMN):
            schema.add_field(name, t.JSON)
        schema.add_field("content_hash", t.VARCHAR, max_length=64)
        schema.add_field("source_hash", t.VARCHAR, max_length=64)
        schema.add_field("updated", t.DOUBLE)
        self._create(mname, schema, "vector")
        self._save_settings(settings)
        return MilvusCollection(self, settings)

    def collection(self, name: str) -> MilvusCollection:
        settings = self._settings_row(name) if isinstance(name, str) else None
        if settings is None:
            raise NotFound(f"collection {name!r} not found")
        self._load(milvus_name(name))
        return MilvusCollection(self, settings)

    def drop_collection(self, name: str) -> None:
        self.collection(name)
        self.call(self.client.delete, SETTINGS_COLLECTION, ids=[name])
        self.call(self.client.drop_collection, milvus_name(name))
        self._loaded.discard(milvus_name(name))

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing twice or after the server went away is harmless
            pass


__all__ = ["MAX_WINDOW", "MilvusCollection", "MilvusStore", "milvus_name", "parse_location"]
