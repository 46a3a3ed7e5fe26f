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
one more collection, `lookalike_settings`. Records' text vectors (collections with `text_fields`)
live in a second Milvus collection per lookalike collection, `lk_NAME_text` (see `text_collection_name`).

Search: the filter is translated to a Milvus expression and Milvus returns the nearest vectors;
grouping and boosts are applied here to a widened candidate set (widened until the answer is
provably the exact one, up to Milvus's window of 16384 candidates), evaluated with the same field
index code as the embedded store, so results match it.

Text, hybrid and colour search rank by scores computed here, the embedded store's way, over a
*scan*: one pass over the live records (`query_iterator`, only the fields needed), numbered in
write order. Those numbers are this backend's "slots" for `postings`, `hybrid_scores` and
`SearchRequest.slot_scores`; the scan is kept per thread between those calls and the `search`
that uses their scores (see `_Scan`). Filters still run in Milvus (the same expression as a
vector search), boosts and grouping on the best candidates as above. Each such query reads the
whole collection once: exact, and fine up to some 100k records; not a cluster-scale path.
"""
from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence
from urllib.parse import unquote, urlparse

import numpy as np

from ..errors import BadRequest, Conflict, LookalikeError, NotFound
from ..records import COMPUTED
from ..index.exact import top_k
from .field_index import FieldIndex
from .filters import MATCH_ALL, Node
from .base import (KNOWN_DIMS, CollectionSettings, CollectionStore, Hit, SearchRequest, Store, StoredRecord,
                   check_collection_name, plan_write)
from .milvus_filters import COLUMN, filter_view, to_expression

SETTINGS_COLLECTION = "lookalike_settings"
#: Milvus answers at most this many hits per search (limit + offset).
MAX_WINDOW = 16_384
#: Scores of all rows come from one search up to this many rows (else from reading the vectors).
SCORE_WINDOW = MAX_WINDOW
#: Rows per upsert/get call (keeps gRPC messages well under their 64 MB limit).
CHUNK = 256
#: Milvus's limit on one JSON value.
MAX_JSON_BYTES = 65_536
_FIELDS = ("doc", "computed")
#: A scan left unused this long (seconds) is not reused by a later `postings` call of the thread.
SCAN_REUSE_S = 10.0
#: Bytes of one scan batch, roughly (fewer round trips than the default 1000 rows, messages well
#: under gRPC's 64 MB); a batch holds at most 16384 rows (Milvus's limit).
SCAN_BATCH_BYTES = 16 << 20


def scan_batch(row_bytes: int) -> int:
    """Rows per `query_iterator` batch for rows of about `row_bytes`."""
    return max(256, min(MAX_WINDOW, SCAN_BATCH_BYTES // max(1, row_bytes)))


def milvus_name(name: str) -> str:
    """A lookalike collection name as a Milvus one (reversible, no collisions)."""
    return "lk_" + name.replace("_", "__").replace("-", "_d")


def text_collection_name(name: str) -> str:
    """The Milvus collection of a collection's text vectors: `milvus_name(name) + "_text"`.

    `milvus_name` writes every `_` of a name as `__` or `_d`, so read left to right its `_`s come
    in pairs; a lone `_t` never occurs in one, and this name is never another collection's.

    Why a second collection rather than a second vector field: the text model and its width
    are known only when the first text vector is written (`text_fields` may be set long after
    the collection was created), Milvus cannot add a vector field to an existing collection,
    and records without a text vector (written before `text_fields` was set) would need a
    placeholder vector, as Milvus Lite (and servers before 2.6) have no nullable vector fields.
    A collection `(id, vector)` works the same on Milvus Lite and on a server.
    """
    return milvus_name(name) + "_text"


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
        self._local = threading.local()  # .scan: this thread's current _Scan

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

    def _iterate(self, expr: str, fields: list[str], batch: int = 1000, mname: str | None = None) -> Iterator[dict]:
        it = self._store.call(self._client.query_iterator, mname or self._mname, batch_size=batch, filter=expr,
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
        return [row["id"] for row in self._iterate(to_expression(where), ["id"], batch=scan_batch(128))]

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

    # -- scans: text, hybrid and colour scores -------------------------------------------
    def _take_scan(self, fields: set[str]) -> "_Scan":
        """A fresh pass over the live records, in write order (as the embedded store's slots, so
        equal scores rank alike), made this thread's current scan."""
        rows = list(self._iterate("", ["id", "updated", *sorted(fields)], batch=scan_batch(128 + 2048 * len(fields))))
        rows.sort(key=lambda r: (r["updated"], r["id"]))
        scan = _Scan([r["id"] for r in rows], rows, frozenset(fields), time.monotonic(), self._store.writes(self.name))
        self._local.scan = scan
        return scan

    def _drop_scan(self) -> "_Scan | None":
        scan, self._local.scan = getattr(self._local, "scan", None), None
        return scan

    def postings(self, path: str) -> tuple[np.ndarray, np.ndarray, list]:
        """Postings of one field path over a scan's slots (see `_Scan`).

        A scan serves each path once: the paths one query reads (colour and weight) share a
        scan, the next query's first path takes a fresh one.
        """
        top = path.split(".", 1)[0]
        fields = {"computed"} if top in COMPUTED else set(_FIELDS)
        scan = getattr(self._local, "scan", None)
        if (scan is None or path in scan.served or not fields <= scan.fields
                or time.monotonic() - scan.used > SCAN_REUSE_S or scan.writes != self._store.writes(self.name)):
            scan = self._take_scan(fields)
        scan.served.add(path)
        scan.used = time.monotonic()
        post = scan.index(top).paths.get(path)
        if post is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32), []
        return post.rows.view(), post.vids.view(), post.keys

    def hybrid_scores(self, vector: np.ndarray | None, text: np.ndarray | None, text_weight: float) -> np.ndarray:
        """Per scan slot: (1 - w) * visual + w * text similarity, as the embedded store computes it
        (NaN text score where a record has no text vector: never a text-only hit)."""
        scan = self._take_scan(set())
        visual = None
        if vector is not None:
            visual = self._similarities(scan, self._mname, np.asarray(vector, dtype=np.float32), self.settings.dim)
        if text is None:
            return visual
        query = np.asarray(text, dtype=np.float32)
        dim = self._store.text_dim(self.name)
        if dim is None or len(query) != dim:
            text_scores = np.full(len(scan.ids), np.nan, dtype=np.float32)
        else:
            text_scores = self._similarities(scan, text_collection_name(self.name), query, dim)
        if visual is None:
            return text_scores
        return (1 - text_weight) * visual + text_weight * np.nan_to_num(text_scores, nan=0.0)  # no text: looks only

    def _similarities(self, scan: "_Scan", mname: str, query: np.ndarray, dim: int) -> np.ndarray:
        """Inner product of `query` with the vector of each scan slot in a Milvus collection (NaN
        where it has none; rows of records not in the scan are ignored).

        One search for every row (ids and scores come back, no vectors: several times faster
        than reading the vectors) when the collection fits in Milvus's window, else a scan.
        """
        out = np.full(len(scan.ids), np.nan, dtype=np.float32)
        position = {rid: i for i, rid in enumerate(scan.ids)}
        result = self._store.call(self._client.search, mname, data=[query.tolist()], anns_field="vector",
                                  limit=SCORE_WINDOW, output_fields=["id"],
                                  search_params={"metric_type": "IP", "params": {}})[0]
        if len(result) < SCORE_WINDOW:  # every row came back
            pairs = [(position.get(h["id"]), h["distance"]) for h in result]
            slots = np.array([s for s, _ in pairs if s is not None], dtype=np.int64)
            out[slots] = np.array([d for s, d in pairs if s is not None], dtype=np.float32)
            return out
        slots, vecs = [], []
        for row in self._iterate("", ["id", "vector"], batch=scan_batch(128 + 4 * dim), mname=mname):
            slot = position.get(row["id"])
            if slot is not None:
                slots.append(slot)
                vecs.append(row["vector"])
        if slots:
            out[np.array(slots)] = np.asarray(vecs, dtype=np.float32) @ query
        return out

    def text_vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The text vectors of the live ids that have one, stacked in the order given (0 rows if none)."""
        found = self.text_vector_map(ids)
        rows = [found[i] for i in ids if i in found]
        return np.asarray(rows, dtype=np.float32) if rows else np.zeros((0, 0), dtype=np.float32)

    def text_vector_map(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """{id: text vector} for the live ids that have one."""
        if not ids or self._store.text_dim(self.name) is None:
            return {}
        live = self._rows(ids, ["id"])
        found: dict[str, np.ndarray] = {}
        unique = [i for i in dict.fromkeys(ids) if i in live]
        for start in range(0, len(unique), CHUNK):
            for row in self._store.call(self._client.get, text_collection_name(self.name),
                                        ids=unique[start:start + CHUNK], output_fields=["vector"]):
                found[row["id"]] = np.asarray(row["vector"], dtype=np.float32)
        return found

    # -- search --------------------------------------------------------------------------
    def _nearest(self, vector: np.ndarray, limit: int, expr: str, with_docs: bool) -> list["_Candidate"]:
        fields = list(_FIELDS) if with_docs else ["id"]
        result = self._store.call(self._client.search, self._mname, data=[np.asarray(vector, np.float32).tolist()],
                                  anns_field="vector", limit=limit, filter=expr, output_fields=fields,
                                  search_params={"metric_type": "IP", "params": {}})
        return [_Candidate(h["id"], float(h["distance"]), _stored(h["entity"]) if with_docs else None)
                for h in result[0]]

    def search(self, request: SearchRequest) -> list[Hit]:
        if request.slot_scores is not None:
            return self._search_scores(request)
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

    def _search_scores(self, request: SearchRequest) -> list[Hit]:
        """Rank by scores per slot of this thread's scan (text, hybrid, colour), with the filter
        (run in Milvus), exclusions, boosts and grouping, as the embedded store ranks them."""
        scan = self._drop_scan()
        if scan is None:
            raise LookalikeError("scores by slot need a scan of this collection first "
                                 "(postings or hybrid_scores, in the same thread)")
        given = np.asarray(request.slot_scores, dtype=np.float32)
        n = min(len(scan.ids), len(given))
        allowed = np.isfinite(given[:n])
        if request.where is not MATCH_ALL:
            matching = set(self.ids_where(request.where))
            allowed &= np.fromiter((rid in matching for rid in scan.ids[:n]), dtype=bool, count=n)
        if request.exclude:
            excluded = set(request.exclude)
            allowed &= np.fromiter((rid not in excluded for rid in scan.ids[:n]), dtype=bool, count=n)
        slots = np.flatnonzero(allowed)
        scores = given[slots]
        need = request.k + request.offset
        if not request.boosts and not request.group_by:
            return [Hit(scan.ids[slots[b]], float(scores[b])) for b in top_k(scores, need)[request.offset:]]
        order = top_k(scores, len(scores))
        headroom = sum(max(0.0, float(w)) for _, w in request.boosts)
        pool = min(len(order), max(64, 4 * need))
        while True:
            best = order[:pool]
            ids = [scan.ids[slots[b]] for b in best]
            cands = [_Candidate(rid, float(scores[b]), doc)
                     for rid, b, doc in zip(ids, best, self.get(ids)) if doc is not None]  # None: deleted since
            exhausted = pool >= len(order)
            floor = -np.inf if exhausted else float(scores[order[pool]]) + headroom
            hits, certain = self._rank(cands, request, floor)
            if certain >= need or exhausted:
                return hits[request.offset:need]
            pool = min(len(order), pool * 4)

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
        """Upsert. Text vectors go first: the main row, holding the content hash, is the commit
        point, so an interrupted write is redone by the next upsert of the same record."""
        statuses, changed = plan_write(records, self.hashes([r.id for r in records]))
        now = time.time()
        rows = [self._row(r, now + i * 1e-6) for i, r in enumerate(changed)]  # `updated` orders the scans
        texts = self._text_rows(changed)
        self._drop_scan()
        self._write_text(texts, [r.id for r in changed if r.text_vector is None])
        try:
            self._chunked(self._client.upsert, self._mname, rows)
        finally:
            self._store.wrote(self.name)
        return statuses

    def _chunked(self, method, mname: str, items: list, key: str | None = None) -> None:
        """`method(mname, part)` (or with `key=part`) over CHUNK-sized parts: gRPC messages stay small."""
        for start in range(0, len(items), CHUNK):
            part = items[start:start + CHUNK]
            if key is None:
                self._store.call(method, mname, part)
            else:
                self._store.call(method, mname, **{key: part})

    def _text_rows(self, records: Sequence[StoredRecord]) -> list[dict]:
        """Rows of the records' text vectors, checked against the stored text vectors' width."""
        rows = [{"id": r.id, "vector": np.asarray(r.text_vector, dtype=np.float32).reshape(-1).tolist()}
                for r in records if r.text_vector is not None]
        dims = sorted({len(r["vector"]) for r in rows})
        if len(dims) > 1:
            raise BadRequest(f"text vectors of different widths in one write: {dims}")
        stored = self._store.text_dim(self.name) if rows else None
        if stored is not None and dims != [stored]:
            raise BadRequest(f"a {dims[0]}-d text vector for collection {self.name!r}, whose text vectors "
                             f"are {stored}-d")
        return rows

    def _write_text(self, rows: list[dict], without: list[str]) -> None:
        """Store text vectors; drop those of records rewritten without one (as no text, like embedded)."""
        if rows:
            tname = self._store.text_collection(self.name, len(rows[0]["vector"]))
            self._chunked(self._client.upsert, tname, rows)
        if without and self._store.text_dim(self.name) is not None:
            self._chunked(self._client.delete, text_collection_name(self.name), without, key="ids")

    def _row(self, rec: StoredRecord, updated: float | None = None) -> dict:
        vector = np.asarray(rec.vector, dtype=np.float32).reshape(-1)
        if len(vector) != self.settings.dim:
            raise BadRequest(f"record {rec.id!r} has a {len(vector)}-d vector, "
                             f"the collection expects {self.settings.dim}")
        row = {"id": rec.id, "vector": vector.tolist(), "doc": rec.doc, "computed": rec.computed,
               COLUMN: filter_view({**rec.doc, **rec.computed}), "content_hash": rec.content_hash,
               "source_hash": rec.source_hash, "updated": time.time() if updated is None else updated}
        for name in ("doc", "computed", COLUMN):
            size = len(json.dumps(row[name], ensure_ascii=False).encode())
            if size > MAX_JSON_BYTES:
                raise BadRequest(f"record {rec.id!r}: its {name} is {size} bytes of JSON, "
                                 f"over Milvus's limit of {MAX_JSON_BYTES}")
        return row

    def delete(self, ids: Sequence[str]) -> int:
        """Delete records, then their text vectors (all ids asked: also clears rows left behind
        by an interrupted delete; a text row without its record is never read)."""
        present = list(self.hashes(list(ids)))
        self._drop_scan()
        try:
            self._chunked(self._client.delete, self._mname, present, key="ids")
        finally:
            self._store.wrote(self.name)
        unique = list(dict.fromkeys(ids))
        if unique and self._store.text_dim(self.name) is not None:
            self._chunked(self._client.delete, text_collection_name(self.name), unique, key="ids")
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


@dataclass
class _Scan:
    """One pass over a collection's live records; record i of `ids` is slot i.

    Milvus has no slots, and the store interface speaks of them between calls (`postings` or
    `hybrid_scores`, then `search` with `slot_scores`), so a scan is kept per thread from the
    call that made it to the search that uses it (which drops it, as do writes and deletes).
    Operations without a search (`duplicates`) leave theirs behind: a later `postings` call
    reuses it only for a path it has not served yet, within SCAN_REUSE_S of its last use, and
    if no write or delete went through this process since (other processes' writes may be
    missed for those seconds).
    """

    ids: list[str]
    rows: list[dict]
    fields: frozenset
    used: float  # time.monotonic() when made or last served postings
    writes: int  # the store's count of writes to the collection when made (MilvusStore.writes)
    served: set = field(default_factory=set)  # paths whose postings it gave
    indexes: dict = field(default_factory=dict)  # top-level key -> FieldIndex of that key alone

    def index(self, top: str) -> FieldIndex:
        """A field index of one top-level key of the records (what `postings` reads)."""
        index = self.indexes.get(top)
        if index is None:
            index = self.indexes[top] = FieldIndex()
            views = [_stored(r) for r in self.rows]
            index.add(list(range(len(views))), [{top: v[top]} if top in v else {} for v in views])
        return index


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
        self._text_dims: dict[str, int] = {}  # text collection name -> width of its vectors
        self._writes: dict[str, int] = {}  # collection name -> writes and deletes through this process
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

    def writes(self, name: str) -> int:
        """How many writes and deletes of a collection went through this process (scans made
        before the last one are not reused)."""
        return self._writes.get(name, 0)

    def wrote(self, name: str) -> None:
        self._writes[name] = self._writes.get(name, 0) + 1

    # -- text vectors --------------------------------------------------------------------
    def text_dim(self, name: str) -> int | None:
        """Width of the text vectors kept for a collection; None while it has none."""
        tname = text_collection_name(name)
        dim = self._text_dims.get(tname)
        if dim is None and self.call(self.client.has_collection, tname):
            info = self.call(self.client.describe_collection, tname)
            dim = next(int(f["params"]["dim"]) for f in info["fields"] if f["name"] == "vector")
            self._load(tname)
            self._text_dims[tname] = dim
        return dim

    def text_collection(self, name: str, dim: int) -> str:
        """The Milvus collection of a collection's text vectors, created (with `dim`) if missing."""
        tname = text_collection_name(name)
        if self.text_dim(name) is None:
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", self._types.VARCHAR, is_primary=True, max_length=1024)
            schema.add_field("vector", self._types.FLOAT_VECTOR, dim=dim)
            self._create(tname, schema, "vector")
            self._text_dims.pop(tname, None)
            if self.text_dim(name) != dim:  # created concurrently with another width
                raise Conflict(f"collection {name!r} already keeps {self.text_dim(name)}-d text vectors, not {dim}")
        return tname

    def _drop_text(self, name: str) -> None:
        tname = text_collection_name(name)
        if self.call(self.client.has_collection, tname):
            self.call(self.client.drop_collection, tname)
        self._loaded.discard(tname)
        self._text_dims.pop(tname, None)

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
        self._drop_text(settings.name)
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
        self._drop_text(name)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing twice or after the server went away is harmless
            pass


__all__ = ["MAX_WINDOW", "MilvusCollection", "MilvusStore", "milvus_name", "parse_location", "text_collection_name"]
