"""A tuned Milvus collection (query/tune.py): tuned vectors in the searched field, raw ones beside.

The learned map itself (up to 512 columns of the model's width: megabytes) does not fit the
settings row (a VARCHAR of at most 64 KB), so its mean and columns are stored as vectors of a
third collection (`names.map_collection_name`), under a digest of their contents that the
settings row names; `store_map` / `load_map` move it in and out of the settings.

The main collection's `vector` field holds what searches use: the raw model vector, or once
tuned, its image under the collection's transform (zero-padded to the same width, so the schema
never changes). The raw vectors of a tuned collection live in a side collection
(`names.raw_collection_name`), written before the main row (the main row stays the commit
point of a write, as for text vectors), so a new tune or a reset always starts from them.
"""
from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from ...errors import LookalikeError
from ..base import CollectionSettings
from ..transform import Transform, transform_of
from .filters import COLUMN
from .names import CHUNK, FIELDS, map_collection_name, raw_collection_name

_ROW_FIELDS = ["id", "vector", *FIELDS, COLUMN, "content_hash", "source_hash", "updated"]


class MilvusTuning:
    """Mixin of MilvusCollection: the `transform`, raw-vector reads and `set_tuning`."""

    @property
    def transform(self) -> Transform | None:
        tuning = self.settings.tuning
        cached = getattr(self, "_transform_cache", None)
        if cached is None or cached[0] is not tuning:
            cached = (tuning, transform_of(tuning))
            self._transform_cache = cached
        return cached[1]

    def raw_vectors(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        if self.transform is None:
            return self.vectors(ids)
        live = self._rows(ids, ["id"])
        return self._raw_rows([i for i in dict.fromkeys(ids) if i in live])

    def raw_all_vectors(self) -> tuple[list[str], np.ndarray]:
        if self.transform is None:
            return self.all_vectors()
        ids = [row["id"] for row in self._iterate("", ["id"])]
        found = self._raw_rows(ids)
        ids = [i for i in ids if i in found]  # a record written before its raw row existed: none yet
        matrix = np.stack([found[i] for i in ids]) if ids else np.empty((0, self.settings.dim), np.float32)
        return ids, matrix

    def _raw_rows(self, ids: list[str]) -> dict[str, np.ndarray]:
        rname = self._store.raw_collection(self.name, self.settings.dim)
        out: dict[str, np.ndarray] = {}
        for start in range(0, len(ids), CHUNK):
            for row in self._store.call(self._client.get, rname, ids=ids[start:start + CHUNK],
                                        output_fields=["vector"]):
                out[row["id"]] = np.asarray(row["vector"], dtype=np.float32)
        return out

    def _write_raw(self, rows: list[dict]) -> None:
        """Keep the raw vectors of rows about to be written tuned (before the main rows)."""
        if rows and self.transform is not None:
            self._chunked(self._client.upsert, self._store.raw_collection(self.name, self.settings.dim), rows)

    def _delete_raw(self, ids: list[str]) -> None:
        if ids and self.transform is not None:
            self._chunked(self._client.delete, raw_collection_name(self.name), ids, key="ids")

    def set_tuning(self, tuning: dict) -> CollectionSettings:
        """Save `tuning` and rewrite every stored vector into its space ({}: back to the raw ones).

        Order: the raw vectors are copied aside (first tune), then the settings say tuned (raw
        reads now come from the side collection), then the main rows are rewritten. A tune
        interrupted in between leaves some rows in the old space; running tune (or reset) again
        rewrites them all from the raw vectors. Concurrent writes during a tune are not supported.
        """
        transform = transform_of(tuning)  # refuses an unreadable transform before anything changes
        if transform is not None and transform.dim != self.settings.dim:
            raise LookalikeError(f"a tuning for {transform.dim}-d vectors does not fit collection {self.name!r} "
                                 f"({self.settings.dim}-d)")
        ids, raw = self.raw_all_vectors()
        if self.transform is None and transform is not None and ids:
            rname = self._store.raw_collection(self.name, self.settings.dim)
            rows = [{"id": i, "vector": v.tolist()} for i, v in zip(ids, raw)]
            self._chunked(self._client.upsert, rname, rows)
        merged = self.update_settings(tuning=tuning)
        self._drop_scan()
        try:
            for start in range(0, len(ids), CHUNK):
                chunk = ids[start:start + CHUNK]
                mapped = raw[start:start + CHUNK] if transform is None else transform.apply(raw[start:start + CHUNK])
                rows = self._store.call(self._client.get, self._mname, ids=chunk, output_fields=_ROW_FIELDS)
                by_id = {row["id"]: row for row in rows}
                fresh = []
                for rid, vec in zip(chunk, mapped):
                    if rid in by_id:
                        fresh.append({**{k: by_id[rid][k] for k in _ROW_FIELDS}, "vector": vec.tolist()})
                if fresh:
                    self._store.call(self._client.upsert, self._mname, fresh)
        finally:
            self._store.wrote(self.name)
        if transform is None:
            self._store.drop_raw(self.name)
        return merged


def store_map(store: Any, name: str, tuning: dict) -> dict:
    """`tuning` as the settings row keeps it: the transform's numbers written to the map
    collection (once per distinct map) and replaced by its digest, width and column count."""
    data = (tuning or {}).get("transform")
    if not data or "rows" in data:
        return tuning or {}
    transform = Transform.from_dict(data)
    digest = hashlib.sha256((data["mean"] + data["proj"]).encode("ascii")).hexdigest()[:16]
    mname = store.side_collection(map_collection_name(name), transform.dim)
    if not store.call(store.client.get, mname, ids=[f"{digest}/mean"], output_fields=["id"]):
        rows = [{"id": f"{digest}/{j}", "vector": column.tolist()} for j, column in enumerate(transform.proj.T)]
        rows.append({"id": f"{digest}/mean", "vector": transform.mean.tolist()})  # last: marks a complete map
        for start in range(0, len(rows), CHUNK):
            store.call(store.client.upsert, mname, rows[start:start + CHUNK])
    light = {k: v for k, v in data.items() if k not in ("mean", "proj")}
    return {**tuning, "transform": {**light, "rows": digest}}


def map_pending(tuning: dict | None) -> bool:
    """Whether `tuning` names its map by digest (as the settings row keeps it) instead of holding it."""
    return bool(tuning) and "rows" in ((tuning or {}).get("transform") or {})


def load_map(store: Any, name: str, tuning: dict) -> dict:
    """The settings row's `tuning` with the transform's numbers read back from the map collection."""
    data = (tuning or {}).get("transform")
    if not data or "rows" not in data:
        return tuning or {}
    digest, dim, k = data["rows"], int(data["dim"]), int(data["k"])
    mname = store.side_collection(map_collection_name(name), dim)
    ids = [f"{digest}/mean", *(f"{digest}/{j}" for j in range(k))]
    found: dict[str, list] = {}
    for start in range(0, len(ids), CHUNK):
        for row in store.call(store.client.get, mname, ids=ids[start:start + CHUNK], output_fields=["vector"]):
            found[row["id"]] = row["vector"]
    if len(found) != len(ids):
        raise LookalikeError(f"the tuning of collection {name!r} is incomplete in Milvus ({len(found)} of "
                             f"{len(ids)} rows of map {digest}); run `lookalike tune --reset` and tune again")
    mean = np.asarray(found[ids[0]], dtype=np.float32)
    proj = np.stack([np.asarray(found[i], dtype=np.float32) for i in ids[1:]], axis=1) if k else \
        np.zeros((dim, 0), np.float32)
    full = Transform(mean, proj).to_dict()
    return {**tuning, "transform": {**{k2: v for k2, v in data.items() if k2 != "rows"}, **full}}


def prune_maps(store: Any, name: str, tuning: dict) -> None:
    """Drop the map rows the settings row no longer names (after it was saved)."""
    mname = map_collection_name(name)
    if not store.call(store.client.has_collection, mname):
        return
    digest = ((tuning or {}).get("transform") or {}).get("rows")
    if digest is None:
        store.drop_side(mname)
    else:
        store.side_collection(mname, int(tuning["transform"]["dim"]))
        store.call(store.client.delete, mname, filter=f'not (id like "{digest}/%")')
