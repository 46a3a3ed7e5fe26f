"""`lookalike backup` / `restore`: one collection to one file and back, while serving.

The file is gzip-compressed JSON lines: a header (format, settings, time), one line per
record (metadata, computed fields, hashes, the vector as base64 float32, the thumbnail),
and a footer with the record count and a SHA-256 of the record lines. Backups are written
to a temporary file and renamed, so a crash never leaves a half file under the final name.
Restores verify the whole file first and write nothing from a damaged one.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import BadRequest, Conflict, NotFound
from .base import CollectionSettings, StoredRecord, check_collection_name

FORMAT = "lookalike-backup/1"


def backup(db, name: str, path: str | Path) -> dict:
    """Write collection `name` to `path`; returns {"collection", "records", "bytes"}."""
    store = db.store.collection(name)
    path = Path(path)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    digest, count = hashlib.sha256(), 0
    try:
        with gzip.open(tmp, "wt", encoding="utf-8") as fh:
            header = {"format": FORMAT, "settings": store.settings.to_dict(), "created": time.time()}
            fh.write(json.dumps(header) + "\n")
            for batch in store.export():
                for rec in batch:
                    line = json.dumps(_encode(rec), ensure_ascii=False) + "\n"
                    digest.update(line.encode("utf-8"))
                    fh.write(line)
                    count += 1
            fh.write(json.dumps({"end": True, "records": count, "sha256": digest.hexdigest()}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return {"collection": name, "records": count, "bytes": path.stat().st_size}


def restore(db, path: str | Path, name: str | None = None, replace: bool = False) -> dict:
    """Recreate a collection from a backup file; refuses to overwrite unless `replace`."""
    path = Path(path)
    header = _verify(path)
    settings = CollectionSettings.from_dict(header["settings"])
    settings.name = check_collection_name(name or settings.name)
    try:
        db.store.collection(settings.name)
        if not replace:
            raise Conflict(f"collection {settings.name!r} already exists; restore with --replace or --as NAME")
        for _ in _records(path, settings.dim):  # every record readable before the old collection goes
            pass
        db.store.drop_collection(settings.name)
    except NotFound:
        pass
    store = db.store.create_collection(settings)
    count = 0
    try:
        batch: list[StoredRecord] = []
        for rec in _records(path, settings.dim):
            batch.append(rec)
            if len(batch) >= 500:
                count += len(store.write(batch))
                batch = []
        if batch:
            count += len(store.write(batch))
    except BaseException:
        db.store.drop_collection(settings.name)  # never leave a half-restored collection behind
        raise
    return {"collection": settings.name, "records": count}


def _encode(rec: StoredRecord) -> dict:
    out = {"id": rec.id, "doc": rec.doc, "computed": rec.computed, "content_hash": rec.content_hash,
           "source_hash": rec.source_hash,
           "vector": base64.b64encode(np.asarray(rec.vector, dtype="<f4").tobytes()).decode("ascii")}
    if getattr(rec, "thumbnail", None):
        out["thumbnail"] = base64.b64encode(rec.thumbnail).decode("ascii")
    if rec.text_vector is not None:  # collections with text_fields: text search works after a restore
        out["text_vector"] = base64.b64encode(np.asarray(rec.text_vector, dtype="<f4").tobytes()).decode("ascii")
    return out


def _lines(path: Path) -> Iterator[str]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as fh:
            yield from fh
    except FileNotFoundError:
        raise BadRequest(f"backup file not found: {path}") from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise BadRequest(f"{path} is not a readable lookalike backup: {exc}") from None


def _verify(path: Path) -> dict:
    """Check format, count and checksum of the whole file before anything is written."""
    lines = _lines(path)
    try:
        header = json.loads(next(lines))
    except (StopIteration, json.JSONDecodeError):
        raise BadRequest(f"{path} is not a lookalike backup (no header)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BadRequest(f"{path} is not a {FORMAT} file")
    digest, count, footer = hashlib.sha256(), 0, None
    for line in lines:
        if line.startswith('{"end"'):
            footer = json.loads(line)
            break
        digest.update(line.encode("utf-8"))
        count += 1
    if footer is None:
        raise BadRequest(f"{path} is truncated: it has no end marker")
    if footer.get("records") != count or footer.get("sha256") != digest.hexdigest():
        raise BadRequest(f"{path} is damaged: {count} records and checksum do not match its footer")
    return header


def _records(path: Path, dim: int) -> Iterator[StoredRecord]:
    lines = _lines(path)
    next(lines)
    text_dim: int | None = None
    for n, line in enumerate(lines, start=1):
        if line.startswith('{"end"'):
            return
        try:
            rec = _decode(json.loads(line), dim)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # binascii.Error is a ValueError
            raise BadRequest(f"record {n} of the backup is unreadable: {exc}") from None
        if rec.text_vector is not None:
            if text_dim is not None and len(rec.text_vector) != text_dim:
                raise BadRequest(f"record {rec.id!r} in the backup has a {len(rec.text_vector)}-d text vector, "
                                 f"expected {text_dim} like the records before it")
            text_dim = len(rec.text_vector)
        yield rec


def _decode(raw: dict, dim: int) -> StoredRecord:
    vector = _floats(raw["vector"])
    if len(vector) != dim:
        raise BadRequest(f"record {raw['id']!r} in the backup has a {len(vector)}-d vector, expected {dim}")
    thumb = base64.b64decode(raw["thumbnail"], validate=True) if raw.get("thumbnail") else None
    text = _floats(raw["text_vector"]) if raw.get("text_vector") else None
    if not isinstance(raw["id"], str) or not isinstance(raw["doc"], dict) or not isinstance(raw["computed"], dict):
        raise ValueError("id, doc or computed has the wrong type")
    return StoredRecord(raw["id"], raw["doc"], raw["computed"], vector, str(raw["source_hash"]),
                        str(raw["content_hash"]), thumbnail=thumb, text_vector=text)


def _floats(b64: str) -> np.ndarray:
    data = base64.b64decode(b64, validate=True)
    if len(data) % 4:
        raise ValueError(f"a vector of {len(data)} bytes is not float32")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)
