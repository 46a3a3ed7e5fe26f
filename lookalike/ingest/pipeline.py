"""The upsert pipeline: validate, read, decode, embed and write records in batches.

Stages overlap so every core stays busy: while the model embeds batch i on the main
thread, a background thread prepares batch i+1 (reads files, fetches URLs, decodes and
resizes in a pool of threads, where Pillow releases the GIL, or with decode="processes" in
worker processes: see decode.py; on CUDA the resize happens on the GPU, models/gpu_preprocess.py).
Records whose content hash is unchanged are skipped before any decoding. One bad record is reported with
its reason and never stops the others.
"""
from __future__ import annotations

import os
from concurrent.futures import BrokenExecutor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import httpx
import numpy as np

from ..errors import BadRequest, LookalikeError
from .fetch import URL_CONNECTIONS, fetch_url, http_client, read_file
from . import triage
from .filecache import FileDigests
from ..models.base import ImageEncoder, l2_normalize
from . import decode as decoding
from .decode import DECODE_MODES, DEFAULT_DECODE, RESIZE_MODES, Decoded, check_mode, decode_image
from ..models.images import DEFAULT_MAX_PIXELS
from ..records import ValidRecord, content_hash, content_identity, plain_vector_rows, validate_record
from ..store.base import CollectionStore, StoredRecord

DEFAULT_BATCH = 32
#: Records per batch where no image is embedded (model 'none'): large batches cost one SQLite
#: transaction, two fsyncs and one index add each, and nothing waits on a model.
VECTOR_BATCH = 4096


@dataclass(slots=True)
class _Item:
    """One record travelling through the pipeline (slots: made and read once a record in a bulk load)."""

    position: int
    raw_id: Any = None
    # the outcome: a write status, or the reason this record failed
    status: str | None = None
    error: str | None = None
    rec: ValidRecord | None = None
    source_hash: str = ""
    content_hash: str = ""
    decoding: Future | None = None  # decode="processes": the worker's Decoded
    pixels: np.ndarray | None = None
    wants_thumbnail: bool = False
    thumbnail: bytes | None = None  # None: keep the stored one; b"": remove it
    computed: dict = field(default_factory=dict)
    vector: np.ndarray | None = None

    def result(self) -> dict:
        rid = self.rec.id if self.rec else (self.raw_id if isinstance(self.raw_id, str) else None)
        if self.error is not None:
            return {"_id": rid, "status": "error", "error": self.error}
        return {"_id": rid, "status": self.status}


class Ingestor:
    """Runs records through the pipeline into one collection store."""

    def __init__(self, store: CollectionStore, encoder: ImageEncoder | None, *, allow_file: bool = True,
                 base_dir: Path | None = None, batch_size: int | None = None, workers: int | None = None,
                 max_pixels: int = DEFAULT_MAX_PIXELS, file_digests: FileDigests | None = None,
                 decode: str | None = None, resize: str | None = None) -> None:
        """`decode`: "threads" or "processes" (where images are decoded; env LOOKALIKE_DECODE, see
        decode.DEFAULT_DECODE); `resize`: "host" (Pillow), "device" (on the encoder's device, see
        models/gpu_preprocess.py) or "auto" (device when the encoder prefers it: CUDA); env LOOKALIKE_RESIZE."""
        self.store = store
        self.settings = store.settings
        self.encoder = encoder
        self.allow_file = allow_file
        self.base_dir = base_dir
        self.batch_size = batch_size or (VECTOR_BATCH if encoder is None else DEFAULT_BATCH)
        self.workers = workers or max(2, len(os.sched_getaffinity(0)))
        self.max_pixels = max_pixels
        self.file_digests = file_digests or FileDigests.in_memory()
        self.decode = check_mode(decode or os.environ.get("LOOKALIKE_DECODE") or DEFAULT_DECODE, DECODE_MODES, "decode")
        resize = check_mode(resize or os.environ.get("LOOKALIKE_RESIZE") or "auto", RESIZE_MODES, "resize")
        self.device_resize = encoder is not None and (
            resize == "device" or (resize == "auto" and getattr(encoder, "resizes_on_device", False)))
        if self.device_resize and not hasattr(encoder, "embed_images"):
            raise BadRequest(f"model {encoder.name!r} cannot resize on its device: use resize 'host'")
        self.identity = content_identity(self.settings.model, self.settings.text_fields or ())

    def run(self, records: Iterable[Any], on_batch: Callable[[list[dict]], None] | None = None) -> Iterator[dict]:
        """Yield one result per input record, in order."""
        batches = _batched(records, self.batch_size)
        with ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as pool, \
                ThreadPoolExecutor(URL_CONNECTIONS, thread_name_prefix="fetch") as fetch_pool, \
                ThreadPoolExecutor(1, thread_name_prefix="prepare") as prep, http_client() as http:
            position = 0
            pending: Future | None = None
            for batch in batches:
                future = prep.submit(self._prepare, position, batch, pool, fetch_pool, http)
                position += len(batch)
                if pending is not None:
                    yield from self._finish(pending.result(), on_batch)
                pending = future
            if pending is not None:
                yield from self._finish(pending.result(), on_batch)

    # -- stage 1: validate, read, hash, decode (background) ------------------------------
    def _prepare(self, start: int, batch: list[Any], pool: ThreadPoolExecutor, fetch_pool: ThreadPoolExecutor,
                 http: httpx.Client) -> list[_Item]:
        items = [_Item(start + i, raw_id=raw.get("_id") if isinstance(raw, dict) else None) for i, raw in enumerate(batch)]
        vectors = self._batch_vectors(batch)
        for i, (item, raw) in enumerate(zip(items, batch)):
            _guard(item, lambda: self._validate(item, raw, vectors.get(i)))
        live = [it for it in items if it.error is None]
        known = self.store.hashes([it.rec.id for it in live])
        # URL records wait on the network, not the CPU: they get their own, wider pool.
        load = lambda it: _guard(it, lambda: self._load(it, known, http))  # noqa: E731
        fetching = [fetch_pool.submit(load, it) for it in live if it.rec.source.kind == "url"]
        # files and base64 images are read and decoded in the pool; a vector (or metadata-only)
        # record is hashed in microseconds, less than handing it to a thread costs
        list(pool.map(load, [it for it in live if it.rec.source.kind in ("file", "base64")]))
        for it in live:
            if it.rec.source.kind in ("vector", "none"):
                load(it)
        for future in fetching:
            future.result()
        for it in live:
            if it.decoding is not None:
                _guard(it, lambda it=it: self._apply(it, self._collect(it)))
        return items

    def _batch_vectors(self, batch: list[Any]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Position in `batch` -> (parsed `_vector`, as stored) for the records giving one as a
        list, parsed and normalised in one NumPy pass when every such list is plain and of the
        collection's width (a bulk load of precomputed vectors: ~10 us a record less than one
        at a time, with the same float32 bits); else empty, and each record is parsed alone."""
        at = [i for i, raw in enumerate(batch) if type(raw) is dict and type(raw.get("_vector")) is list]
        if len(at) < 2:
            return {}
        rows = plain_vector_rows([batch[i]["_vector"] for i in at], self.settings.dim)
        if rows is None:
            return {}
        # the float32 sum l2_normalize takes of one row, row by row (identical bits: the source hash)
        stored = rows / np.sqrt(np.add.reduce(rows * rows, axis=1))[:, None] if self.settings.metric == "cosine" \
            else rows
        return {i: (rows[n], stored[n]) for n, i in enumerate(at)}

    def _validate(self, item: _Item, raw: Any, parsed: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        item.rec = validate_record(raw, allow_file=self.allow_file, base_dir=self.base_dir,
                                   vector=parsed[0] if parsed is not None else None)
        kind = item.rec.source.kind
        if self.settings.model == "none" and kind not in ("vector", "none"):
            raise BadRequest(f"collection {self.settings.name!r} has model 'none': give a '_vector' instead of an image")
        if kind == "vector":  # validate_record parsed and checked it already; only the width is new here
            vec = item.rec.source.value
            if len(vec) != self.settings.dim:
                raise BadRequest(f"'_vector' has {len(vec)} dimensions, the collection expects {self.settings.dim}")
            if parsed is not None:
                item.vector = parsed[1]
            else:
                item.vector = l2_normalize(vec) if self.settings.metric == "cosine" else vec

    def _load(self, item: _Item, known: dict[str, tuple[str, str]], http: httpx.Client) -> None:
        source = item.rec.source
        old = known.get(item.rec.id)
        value = item.vector if source.kind == "vector" else source.value
        item.source_hash, data = triage.source_hash(item.rec.id, source.kind, value, old, self.file_digests)
        item.content_hash = content_hash(item.rec.doc, item.source_hash, self.identity)
        action = triage.verdict(source.kind, old, item.content_hash, item.source_hash)
        if action == triage.UNCHANGED:
            item.status = "unchanged"
            return
        if action == triage.REUSE:  # metadata-only change: keep the stored vector and computed fields
            item.vector, item.computed = triage.stored_parts(self.store, item.rec.id)
            return
        item.thumbnail = b""  # a new image source: the old thumbnail no longer shows it
        item.wants_thumbnail = source.kind in ("file", "base64", "url") and getattr(self.settings, "thumbnails", True)
        if source.kind == "url":
            data = fetch_url(source.value, http)
        elif source.kind == "file" and data is None:
            data = read_file(source.value)
        if data is not None:
            self._decode(item, data)

    def _decode(self, item: _Item, data: bytes) -> None:
        if self.encoder is None:
            raise BadRequest("this collection has no image model")
        job = dict(data=data, size=self.encoder.input_size, fit=self.encoder.fit, max_pixels=self.max_pixels,
                   thumbnail=item.wants_thumbnail, host_resize=not self.device_resize)
        if self.decode == "processes":
            item.decoding = decoding.submit(self.workers, **job)  # collected at the end of _prepare
        else:
            self._apply(item, decode_image(**job))

    def _collect(self, item: _Item) -> Decoded:
        future, item.decoding = item.decoding, None
        try:
            return future.result()
        except BrokenExecutor as exc:  # a worker died (killed, out of memory): start a new pool next time
            decoding.discard_pool(self.workers)
            raise LookalikeError(f"decode worker process stopped: {exc} (out of memory? killed? with decode "
                                 "'processes' a script needs an `if __name__ == \"__main__\":` guard)") from None

    @staticmethod
    def _apply(item: _Item, decoded: Decoded) -> None:
        item.computed.update(decoded.computed)  # colours, near-duplicate fingerprint (models/fingerprint.py)
        if item.wants_thumbnail:
            item.thumbnail = decoded.thumbnail
        item.pixels = decoded.pixels

    # -- stage 2: embed and write (main thread) ------------------------------------------
    def _finish(self, items: list[_Item], on_batch: Callable[[list[dict]], None] | None) -> list[dict]:
        to_embed = [it for it in items if it.error is None and it.status is None and it.pixels is not None]
        if to_embed:
            try:
                if self.device_resize:  # decoded sizes vary: the encoder resizes them on its device
                    emb = self.encoder.embed_images([it.pixels for it in to_embed])
                else:
                    emb = self.encoder.embed(np.stack([it.pixels for it in to_embed]))
                for it, vec, labels in zip(to_embed, emb.vectors, emb.labels or [[]] * len(to_embed)):
                    it.vector = vec
                    if labels:
                        it.computed["_labels"] = labels
                    it.pixels = None
            except Exception as exc:  # the model failing is every record's error, not a crash
                for it in to_embed:
                    it.error = f"encoding failed: {exc}"
        texts = self._embed_texts([it for it in items if it.error is None and it.status is None])
        writable = [it for it in items if it.error is None and it.status is None]
        if writable:
            try:
                statuses = self.store.write([
                    StoredRecord(it.rec.id, it.rec.doc, it.computed, it.vector, it.source_hash, it.content_hash,
                                 thumbnail=it.thumbnail, text_vector=texts.get(id(it)))
                    for it in writable])
                for it, status in zip(writable, statuses):
                    it.status = status
            except LookalikeError as exc:
                for it in writable:
                    it.error = exc.message
        results = [it.result() for it in items]
        if on_batch is not None:
            on_batch(results)
        return results


    def _embed_texts(self, items: list[_Item]) -> dict[int, np.ndarray]:
        """Sentence vectors of text_fields + labels, for collections with `text_fields` (see models/text.py)."""
        if not items or not getattr(self.settings, "text_fields", None):
            return {}
        try:
            vectors = triage.text_vectors(self.settings.text_fields, [(it.rec.doc, it.computed) for it in items])
        except LookalikeError as exc:
            for it in items:
                it.error = exc.message
            return {}
        return {id(it): vec for it, vec in zip(items, vectors)}


def _guard(item: _Item, step: Callable[[], None]) -> None:
    """Run a step; any failure becomes this record's error."""
    if item.error is not None:
        return
    try:
        step()
    except LookalikeError as exc:
        item.error = exc.message
    except (OSError, ValueError) as exc:
        item.error = f"{type(exc).__name__}: {exc}"


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
