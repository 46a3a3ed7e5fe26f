"""What an upsert does with each record: one rule for the single-process and the Ray pipelines.

A record's source hash names its image (or vector) without decoding it; with the content hash
(metadata, source and model: `records.content_hash`) it settles a record that is stored
already before any decoding:

- `unchanged`: the same content hash; nothing is written.
- `reuse`: the same image (or no image source given): the stored vector and computed fields
  are kept, the new metadata written.
- `decode`: a new image source, to decode and embed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BadRequest, LookalikeError
from ..models.text import get_text_encoder, record_text
from ..records import COMPUTED, digest
from ..store.base import CollectionStore
from .fetch import read_file
from .filecache import FileDigests

UNCHANGED, REUSE, DECODE = "unchanged", "reuse", "decode"


def no_source(rid: str) -> BadRequest:
    """The error of a new record that names no image source."""
    return BadRequest(f"record {rid!r} is new and has no image source (_file, _url, _base64 or _vector)")


def source_hash(rid: str, kind: str, value: Any, known: tuple[str, str] | None,
                file_digests: FileDigests | None) -> tuple[str, bytes | None]:
    """(source hash, the bytes read to compute it or None) of one record's source.

    `value`: the file path, URL, base64-decoded bytes or (normalised) vector; `known`: the
    stored (content hash, source hash), None for a new record. A file is hashed through the
    digest cache (size + mtime) when there is one, so an unchanged file is not read again.
    """
    if kind == "none":
        if known is None:
            raise no_source(rid)
        return known[1], None
    if kind == "vector":
        return digest(np.asarray(value, dtype=np.float32).tobytes()), None
    if kind == "url":
        return digest(value.encode()), None
    if kind == "file":
        found = file_digests.lookup(value) if file_digests is not None else None
        if found:
            return found, None
        data = read_file(Path(value))
        return (file_digests.record(value, data) if file_digests is not None else digest(data)), data
    return digest(value), value


def verdict(kind: str, known: tuple[str, str] | None, content: str, source: str) -> str:
    """UNCHANGED, REUSE or DECODE for a record with these hashes (see the module docstring)."""
    if known is not None and known[0] == content:
        return UNCHANGED
    if kind == "none" or (known is not None and known[1] == source):
        return REUSE
    return DECODE


def stored_parts(store: CollectionStore, rid: str) -> tuple[np.ndarray, dict]:
    """The stored vector and computed fields of a record kept by a metadata-only update."""
    vec = store.raw_vectors([rid]).get(rid)  # the model's vector: the store maps it again if tuned
    stored = store.get([rid])[0]
    if vec is None or stored is None:
        raise BadRequest(f"record {rid!r} was deleted while being updated")
    return vec, {k: stored[k] for k in COMPUTED if k in stored}


def text_vectors(text_fields: Sequence[str], records: Sequence[tuple[dict, dict]]) -> list[np.ndarray]:
    """Sentence vectors of each (metadata, computed fields)'s text fields and labels.

    A failing text model is these records' error, raised as a LookalikeError naming it."""
    try:
        return list(get_text_encoder().embed([record_text(doc, computed, text_fields) for doc, computed in records]))
    except LookalikeError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the model raised, as the records' error
        raise LookalikeError(f"text encoding failed: {exc}") from None
