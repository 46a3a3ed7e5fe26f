"""One lookalike collection in Milvus: reads, writes and facets (search and scans: search.py)."""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Iterator, Sequence

import numpy as np

from ...errors import BadRequest
from ..base import Capabilities, CollectionSettings, CollectionStore, StoredRecord, plan_write
from ..facets import facets_of
from ..field_index import FieldIndex
from ..filters import MATCH_ALL, Node
from .filters import COLUMN, filter_view, to_expression
from .names import CHUNK, FIELDS, MAX_JSON_BYTES, milvus_name, scan_batch, stored_view, text_collection_name
from .search import MilvusSearch
from .tuning import MilvusTuning, map_pending


#: Milvus keeps no thumbnails, compacts its own segments, tunes (tuning.py), and takes vectors up
#: to 32768 wide.
MILVUS_CAPABILITIES = Capabilities(max_dim=32768, tuning=True)


class MilvusCollection(MilvusTuning, MilvusSearch, CollectionStore):
    """One lookalike collection in a Milvus collection; every call goes to Milvus (no local state)."""

    capabilities = MILVUS_CAPABILITIES

    def __init__(self, store: Any, settings: CollectionSettings) -> None:
        """`store`: the MilvusStore that opened it (its client, call wrapper and write counts)."""
        self._store = store
        self._client = store.client
        self._settings = settings  # a tuned collection's map is read on first use (`settings`)
        self.name = settings.name
        self._mname = milvus_name(settings.name)
        self._local = threading.local()  # .scan: this thread's current _Scan

    @property
    def settings(self) -> CollectionSettings:
        """The collection's settings, the learned map of a tuned one read from Milvus on the first
        call (opening or listing collections reads none: a map is megabytes)."""
        if map_pending(self._settings.tuning):
            self._settings = self._store.full_settings(self._settings)
        return self._settings

    @settings.setter
    def settings(self, value: CollectionSettings) -> None:
        self._settings = value

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
        rows = self._rows(ids, list(FIELDS))
        return [stored_view(rows[i]) if i in rows else None for i in ids]

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
        docs = [stored_view(row) for row in self._iterate(to_expression(where), list(FIELDS))]
        fields = FieldIndex()
        fields.add(list(range(len(docs))), docs)
        return facets_of(fields, np.ones(len(docs), dtype=bool), top)

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
        transform = self.transform
        if transform is not None and rows:  # raw vectors aside first, the main rows get their tuned image
            self._write_raw([{"id": row["id"], "vector": row["vector"]} for row in rows])
            for row, mapped in zip(rows, transform.apply(np.asarray([row["vector"] for row in rows]))):
                row["vector"] = mapped.tolist()
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
        self._delete_raw(unique)
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


