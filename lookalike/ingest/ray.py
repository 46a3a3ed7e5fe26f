"""Distributed ingestion on Ray Data: decode and embed in parallel actors, write in batches.

Design notes (how it works and why): docs/deployment.md, "Notes: `lookalike/ingest/ray.py`".
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from ..errors import BadRequest, LookalikeError
from . import triage
from .decode import decode_image
from .fetch import fetch_url, read_file
from ..models import get_encoder
from ..models.base import l2_normalize
from ..records import ValidRecord, content_hash, content_identity, parse_vector, validate_record
from ..store.base import StoredRecord

#: Records per actor call (one encoder batch).
DEFAULT_BATCH = 16
#: Settings the actors need from the driver's environment (e.g. `--device`).
_FORWARDED_ENV = ("LOOKALIKE_DEVICE", "LOOKALIKE_CACHE", "XDG_CACHE_HOME")


def _require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise LookalikeError("distributed ingest needs Ray Data: pip install 'lookalike[ray]'") from None
    return ray


@dataclass
class _Task:
    """What the driver sends an actor for one record (plain values: it crosses process boundaries)."""

    pos: int
    id: str
    doc: str  # JSON of the record's metadata as stored
    kind: str  # file / url / base64 / vector / none
    ref: str = ""  # the file path or URL
    data: bytes = b""  # base64-decoded bytes
    vector: list | None = None
    known_content: str = ""
    known_source: str = ""
    source_hash: str = ""  # computed by the driver for stored records, else by the actor


class Embedder:
    """A Ray actor: one encoder, turning batches of tasks into vectors and computed fields."""

    def __init__(self, model: str, metric: str, dim: int, max_pixels: int, thumbnails: bool, threads: int,
                 identity: str | None = None, device: str | None = None) -> None:
        self.model, self.metric, self.dim, self.device = model, metric, dim, device
        self.identity = identity or model  # see records.content_identity
        self.max_pixels, self.thumbnails, self.threads = max_pixels, thumbnails, threads
        self._encoder = None
        self._lock = threading.Lock()

    @property
    def encoder(self):
        """Loaded at the first image to embed: a re-run over unchanged records never pays for it."""
        with self._lock:
            if self._encoder is None and self.model != "none":
                encoder = get_encoder(self.model, self.device)
                _limit_threads(encoder, self.threads)
                self._encoder = encoder
        return self._encoder

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
        if self.threads > 1:  # Pillow releases the GIL while decoding: use the actor's cores
            with ThreadPoolExecutor(self.threads) as pool:
                out = list(pool.map(self._load, rows))
        else:
            out = [self._load(row) for row in rows]
        self._embed(out)
        # Every batch has the same column types (Arrow needs one schema): strings, bytes, a dim-wide matrix.
        vectors = np.zeros((len(out), self.dim), dtype=np.float32)
        for i, o in enumerate(out):
            if o["vector"] is not None:
                vectors[i] = o["vector"]
        result = {c: np.array([str(o[c] or "") for o in out], dtype=object)
                  for c in ("status", "error", "computed", "source_hash", "content_hash", "thumb")}
        result["pos"] = np.array([o["pos"] for o in out], dtype=np.int64)
        result["vector"] = vectors
        result["thumbnail"] = np.array([o["thumbnail"] or b"" for o in out], dtype=object)
        return result

    def _load(self, row: dict) -> dict:
        """Read, hash and decode one record, by the rules `Ingestor._load` follows (triage.py)."""
        out: dict[str, Any] = {"pos": int(row["pos"]), "status": "", "error": "", "vector": None,
                               "computed": "{}", "source_hash": "", "content_hash": "", "thumbnail": b"",
                               "thumb": "keep"}
        kind = row["kind"]
        try:
            known = (row["known_content"], row["known_source"]) if row["known_content"] else None
            value: Any = {"file": row["ref"], "url": row["ref"], "base64": bytes(row["data"])}.get(kind)
            if kind == "vector":
                value = out["vector"] = _normalise(parse_vector(list(row["vector"]), self.dim), self.metric)
            if kind == "file" and row["source_hash"]:  # hashed by the driver
                source_hash, data = row["source_hash"], None
            else:
                source_hash, data = triage.source_hash(row["id"], kind, value, known, None)
            out["source_hash"] = source_hash
            out["content_hash"] = content_hash(json.loads(row["doc"]), source_hash, self.identity)
            action = triage.verdict(kind, known, out["content_hash"], source_hash)
            if action != triage.DECODE:
                out["status"] = action  # reuse: the driver keeps the stored vector and computed fields
                return out
            if kind == "vector":
                return out
            if self.model == "none":
                raise BadRequest("this collection has no image model")
            if kind == "url":
                data = fetch_url(row["ref"])
            elif kind == "file" and data is None:
                data = read_file(Path(row["ref"]))
            thumbnail = self.thumbnails and kind in ("file", "base64", "url")
            decoded = decode_image(data, size=self.encoder.input_size, fit=self.encoder.fit,
                                   max_pixels=self.max_pixels, thumbnail=thumbnail)  # as Ingestor does
            out["computed"] = json.dumps(decoded.computed)
            if thumbnail:
                out["thumbnail"], out["thumb"] = decoded.thumbnail, "set"
            else:
                out["thumb"] = "clear"  # a new image source: any old thumbnail no longer shows it
            out["pixels"] = decoded.pixels
        except LookalikeError as exc:
            out["error"] = exc.message
        except (OSError, ValueError) as exc:
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out

    def _embed(self, out: list[dict]) -> None:
        todo = [o for o in out if o.get("pixels") is not None]
        if not todo:
            return
        try:
            emb = self.encoder.embed(np.stack([o.pop("pixels") for o in todo]))
        except Exception as exc:  # the model failing is every record's error, not a crash
            for o in todo:
                o["error"] = f"encoding failed: {exc}"
            return
        for o, vec, labels in zip(todo, emb.vectors, emb.labels or [[]] * len(todo)):
            o["vector"] = np.asarray(vec, dtype=np.float32)
            if labels:
                o["computed"] = json.dumps({**json.loads(o["computed"]), "_labels": labels})


def _normalise(vec: np.ndarray, metric: str) -> np.ndarray:
    return l2_normalize(vec) if metric == "cosine" else vec


def _limit_threads(encoder: Any, threads: int) -> None:
    """Give each actor its share of the cores: N actors x all-core thread pools would thrash."""
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    runner = getattr(encoder, "_onnx", None)
    if runner is not None:
        from ..models.onnx_backend import OnnxRunner
        encoder._onnx = OnnxRunner(encoder._module, encoder.input_size, encoder.name, threads=threads)


# -- the driver ---------------------------------------------------------------------------
def _tasks(col, records: Iterable[Any], base_dir: Path | None) -> tuple[list[_Task], dict[int, dict]]:
    """Validate records (errors answered at once) and make the actors' tasks for the rest."""
    settings = col.settings
    tasks: list[_Task] = []
    errors: dict[int, dict] = {}
    for pos, raw in enumerate(records):
        try:
            rec: ValidRecord = validate_record(raw, allow_file=True, base_dir=base_dir)
            kind = rec.source.kind
            if settings.model == "none" and kind not in ("vector", "none"):
                raise BadRequest(f"collection {settings.name!r} has model 'none': give a '_vector' instead of an image")
            task = _Task(pos, rec.id, json.dumps(rec.doc, ensure_ascii=False), kind)
            if kind == "file":
                task.ref = str(Path(rec.source.value).absolute())
            elif kind == "url":
                task.ref = rec.source.value
            elif kind == "base64":
                task.data = rec.source.value
            elif kind == "vector":
                task.vector = parse_vector(rec.source.value.tolist(), settings.dim).tolist()
            tasks.append(task)
        except LookalikeError as exc:
            rid = raw.get("_id") if isinstance(raw, dict) else None
            errors[pos] = {"_id": rid if isinstance(rid, str) else None, "status": "error", "error": exc.message}
    store = col._store
    for start in range(0, len(tasks), 1000):
        chunk = tasks[start:start + 1000]
        known = store.hashes([t.id for t in chunk])
        for t in chunk:
            if t.id in known:
                t.known_content, t.known_source = known[t.id]
    for t in tasks:
        if t.kind == "none" and not t.known_content:
            errors[t.pos] = {"_id": t.id, "status": "error", "error": triage.no_source(t.id).message}
    return [t for t in tasks if t.pos not in errors], errors


def _triage(col, tasks: list[_Task]) -> dict[int, str]:
    """Stored records settled here by hashing their source (no decoding): `unchanged` or `reuse`.

    Reading a file to hash it costs far less than starting an actor and decoding it, so a
    re-run or a resumed run only sends new and changed images to the actors, and a
    metadata-only update (same image: `reuse` the stored vector) never reaches them. Files
    go through the digest cache (size + mtime) when the database has one.
    """
    cache = getattr(col, "file_digests", None)
    settings = col.settings
    identity = _identity(settings)

    def check(t: _Task) -> str:
        value: Any = {"file": Path(t.ref), "url": t.ref, "base64": t.data}.get(t.kind)
        if t.kind == "vector":
            value = _normalise(np.asarray(t.vector, dtype=np.float32), settings.metric)
        known = (t.known_content, t.known_source)
        try:
            t.source_hash = triage.source_hash(t.id, t.kind, value, known, cache)[0]
        except (LookalikeError, OSError):
            return ""  # the actor reports it
        action = triage.verdict(t.kind, known, content_hash(json.loads(t.doc), t.source_hash, identity), t.source_hash)
        return "" if action == triage.DECODE else action

    known = [t for t in tasks if t.known_content]
    with ThreadPoolExecutor(8) as pool:  # file reads wait on the disk, not the CPU
        verdicts = list(pool.map(check, known))
    return {t.pos: v for t, v in zip(known, verdicts) if v}


def _identity(settings) -> str:
    return content_identity(settings.model, settings.text_fields or ())


def _reuse_batch(tasks: list[_Task], dim: int, identity: str) -> dict[str, np.ndarray]:
    """Records settled as `reuse` by the driver, in the shape of an actor's output batch."""
    n = len(tasks)
    column = lambda values: np.array(values, dtype=object)  # noqa: E731
    return {"pos": np.array([t.pos for t in tasks], dtype=np.int64), "status": column(["reuse"] * n),
            "error": column([""] * n), "vector": np.zeros((n, dim), dtype=np.float32), "computed": column(["{}"] * n),
            "source_hash": column([t.source_hash for t in tasks]),
            "content_hash": column([content_hash(json.loads(t.doc), t.source_hash, identity) for t in tasks]),
            "thumbnail": column([b""] * n), "thumb": column(["keep"] * n)}


def ray_ingest(col, records: Iterable[Any], *, base_dir: str | Path | None = None, address: str | None = None,
               workers: int | None = None, batch_size: int = DEFAULT_BATCH, write_batch: int = 64,
               on_batch: Callable[[list[dict]], None] | None = None, num_cpus: int | None = None,
               device: str | None = None) -> list[dict]:
    """Upsert `records` into the collection `col` through Ray actors; one result per record, in order.

    `address`: a Ray cluster (`HOST:PORT`, `ray://...`, `auto`); None or "local" start (or reuse) a
    local instance. `workers`: actors (default: one per CPU, or one per GPU when the cluster has GPUs).
    `device`: where the actors' models run (as in `Collection.upsert`).
    """
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise BadRequest("the number of Ray workers must be at least 1")
    ray = _require_ray()
    base = Path(base_dir) if base_dir else None
    records = list(records)
    results: list[dict | None] = [None] * len(records)
    tasks, errors = _tasks(col, records, base)
    for pos, err in errors.items():
        results[pos] = err
    if errors and on_batch is not None:
        on_batch(list(errors.values()))
    verdicts = _triage(col, tasks)
    settled: list[dict] = []
    for t in tasks:
        if verdicts.get(t.pos) == "unchanged":
            results[t.pos] = {"_id": t.id, "status": "unchanged"}
            settled.append(results[t.pos])
    reused = [t for t in tasks if verdicts.get(t.pos) == "reuse"]
    by_pos = {t.pos: t for t in tasks}
    if reused:
        for res in _write(col, _reuse_batch(reused, col.settings.dim, _identity(col.settings)), by_pos, write_batch):
            results[res.pop("pos")] = res
            settled.append(res)
    if settled and on_batch is not None:
        on_batch(settled)
    pending = [t for t in tasks if t.pos not in verdicts]
    if not pending:
        return results  # type: ignore[return-value]

    started = _init_ray(ray, address, num_cpus)
    try:
        for batch in _run_actors(ray, col, pending, workers, batch_size, device):
            written = _write(col, batch, by_pos, write_batch)
            for res in written:
                results[res.pop("pos")] = res
            if on_batch is not None:
                on_batch(written)
    finally:
        if started:
            ray.shutdown()
    return results  # type: ignore[return-value]


@contextlib.contextmanager
def _stderr_to(sink: Any) -> Iterator[None]:
    """Point file descriptor 2 at `sink` (Ray's C++ side writes there directly), then back."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(sink.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _init_ray(ray, address: str | None, num_cpus: int | None) -> bool:
    """Connect to (or start) Ray; True when this call started it (and must shut it down).

    Ray's own notices (token authentication, actor restart caveats, progress bars) are not
    for the user of `lookalike ingest`: Python loggers of Ray stay at ERROR, the driver's C++
    core worker logs only fatal errors (`RAY_BACKEND_LOG_LEVEL`, read while Ray starts; the
    line saying so is kept out of the terminal), and workers' output stays in Ray's log files.
    What Ray printed while starting is shown only when it failed to start.
    """
    if ray.is_initialized():
        return False
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                              "log_to_driver": False}
    if address and address != "local":
        kwargs["address"] = address
    elif num_cpus:
        kwargs["num_cpus"] = num_cpus
    saved = os.environ.get("RAY_BACKEND_LOG_LEVEL")
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    with tempfile.TemporaryFile("w+") as said:
        try:
            with _stderr_to(said):
                ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            said.seek(0)
            tail = "".join(said.readlines()[-5:]).strip()
            raise LookalikeError(f"cannot start or reach Ray{' at ' + address if address else ''}: {exc}"
                                 + (f"\n{tail}" if tail else "")) from None
        finally:
            if saved is None:
                os.environ.pop("RAY_BACKEND_LOG_LEVEL", None)
    return True


def _run_actors(ray, col, tasks: list[_Task], workers: int | None, batch_size: int, device: str | None):
    """Ray Data pipeline over the tasks; yields the actors' output batches in input order."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # write in input order: the same results as one process
    ctx.enable_progress_bars = False  # the CLI shows its own progress
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # its notices (progress bars off, ...) are not ours
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = max(1, int(resources.get("CPU", 1)))
    if workers is None:
        workers = gpus if gpus else cpus
    blocks = max(1, -(-len(tasks) // batch_size))
    workers = max(1, min(workers, blocks))  # an actor without a block to work on would only cost a start
    threads = max(1, cpus // workers)
    settings = col.settings
    items = [t.__dict__ for t in tasks]
    env = {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ}
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(
        Embedder, batch_size=batch_size, batch_format="numpy",
        fn_constructor_kwargs={"model": settings.model, "metric": settings.metric, "dim": settings.dim,
                               "max_pixels": getattr(col, "max_pixels", 64_000_000),
                               "thumbnails": bool(getattr(settings, "thumbnails", True)), "threads": threads,
                               "identity": _identity(settings), "device": device},
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=1 if gpus else min(threads, cpus), num_gpus=1 if gpus else 0,  # Ray Data restarts dead actors
        **({"runtime_env": {"env_vars": env}} if env else {}))
    yield from ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2)


def _write(col, batch: dict[str, np.ndarray], by_pos: dict[int, _Task], write_batch: int) -> list[dict]:
    """Write one batch of actor output; returns results carrying their input position."""
    store = col._store
    out: list[dict] = []
    writable: list[tuple[dict, StoredRecord]] = []
    for i in range(len(batch["pos"])):
        pos = int(batch["pos"][i])
        task = by_pos[pos]
        res: dict[str, Any] = {"pos": pos, "_id": task.id}
        status, error = batch["status"][i], batch["error"][i]
        out.append(res)
        if error:
            res.update(status="error", error=str(error))
            continue
        if status == "unchanged":
            res["status"] = "unchanged"
            continue
        computed = json.loads(batch["computed"][i])
        vector = batch["vector"][i]
        thumbnail = {"set": bytes(batch["thumbnail"][i]), "clear": b""}.get(batch["thumb"][i])
        if status == "reuse":
            try:
                vector, computed = triage.stored_parts(store, task.id)
            except LookalikeError as exc:
                res.update(status="error", error=exc.message)
                continue
            thumbnail = None
        rec = StoredRecord(task.id, json.loads(task.doc), computed, np.asarray(vector, dtype=np.float32),
                           str(batch["source_hash"][i]), str(batch["content_hash"][i]))
        if thumbnail is not None and "thumbnail" in StoredRecord.__dataclass_fields__:
            rec.thumbnail = bytes(thumbnail)
        writable.append((res, rec))
    writable = _with_text_vectors(col.settings, writable)
    for start in range(0, len(writable), write_batch):
        chunk = writable[start:start + write_batch]
        try:
            statuses = store.write([rec for _, rec in chunk])
            for (res, _), status in zip(chunk, statuses):
                res["status"] = status
        except LookalikeError as exc:
            for res, _ in chunk:
                res.update(status="error", error=exc.message)
    return out


def _with_text_vectors(settings, writable: list[tuple[dict, StoredRecord]]) -> list[tuple[dict, StoredRecord]]:
    """Sentence vectors for collections with `text_fields`, made on the driver as the single-process
    ingest makes them; if the text model fails, these records fail with its error (none half-written)."""
    if not writable or not settings.text_fields:
        return writable
    try:
        vectors = triage.text_vectors(settings.text_fields, [(rec.doc, rec.computed) for _, rec in writable])
    except LookalikeError as exc:
        for res, _ in writable:
            res.update(status="error", error=exc.message)
        return []
    for (_, rec), vec in zip(writable, vectors):
        rec.text_vector = vec
    return writable


__all__ = ["DEFAULT_BATCH", "Embedder", "ray_ingest"]
