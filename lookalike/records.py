"""Validation of incoming records and reading of their image source.

A record is `{"_id": ..., one of _file/_url/_base64/_vector, ...metadata}`. Everything
is checked here, before any work is done, so one bad record gets a precise reason and the
others go on.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import BadRequest
from .validation import is_number

SOURCES = ("_file", "_url", "_base64", "_vector")
COMPUTED = ("_labels", "_colors", "_fingerprint", "_pixel_hash")  # written by the engine only
MAX_ID_LENGTH = 256
MAX_DEPTH = 32
MAX_VECTOR_NORM = 1e18


@dataclass
class Source:
    """Where a record's image comes from: kind is one of file/url/base64/vector/none."""

    kind: str
    value: Any = None


@dataclass
class ValidRecord:
    id: str
    doc: dict  # metadata plus `_id` and a `_file`/`_url` reference (never image bytes)
    source: Source


@dataclass
class InvalidRecord:
    """Stands in for an input line that could not even be parsed (e.g. bad JSON)."""

    reason: str


def validate_record(raw: Any, *, allow_file: bool = True, base_dir: Path | None = None) -> ValidRecord:
    """Check one incoming record; raise BadRequest naming the problem."""
    if isinstance(raw, InvalidRecord):
        raise BadRequest(raw.reason)
    if not isinstance(raw, dict):
        raise BadRequest(f"a record must be a JSON object, got {type(raw).__name__}")
    rid = raw.get("_id")
    if rid is None:
        raise BadRequest("record has no '_id'")
    if not isinstance(rid, str) or not 1 <= len(rid) <= MAX_ID_LENGTH:
        raise BadRequest(f"'_id' must be a string of 1 to {MAX_ID_LENGTH} characters")
    present = [k for k in SOURCES if raw.get(k) is not None]
    if len(present) > 1:
        raise BadRequest(f"record {rid!r} has several image sources ({', '.join(present)}); give exactly one")
    doc: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith("_"):
            if key in COMPUTED:
                raise BadRequest(f"'{key}' is computed by the engine and cannot be written")
            if key not in ("_id",) + SOURCES:
                raise BadRequest(f"unknown reserved field '{key}' (fields starting with '_' are reserved)")
            continue
        check_value(key, value, 1)
        doc[key] = value
    source = Source("none")
    if present:
        key = present[0]
        value = raw[key]
        if key == "_file":
            if not allow_file:
                raise BadRequest("'_file' is only accepted by the CLI and the Python API, not over HTTP")
            if not isinstance(value, str) or not value:
                raise BadRequest("'_file' must be a path string")
            path = Path(value) if base_dir is None or Path(value).is_absolute() else base_dir / value
            source = Source("file", path)
            doc["_file"] = value
        elif key == "_url":
            if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
                raise BadRequest("'_url' must be an http:// or https:// URL")
            source = Source("url", value)
            doc["_url"] = value
        elif key == "_base64":
            source = Source("base64", decode_base64(value))
        else:
            source = Source("vector", parse_vector(value))
    return ValidRecord(rid, {"_id": rid, **doc}, source)


def check_value(path: str, value: Any, depth: int) -> None:
    """Metadata values: strings, finite numbers, booleans, null, lists and objects of those."""
    if depth > MAX_DEPTH:
        raise BadRequest(f"metadata '{path}' is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"metadata '{path}' is NaN or infinite")
    if isinstance(value, int) and abs(value) > 1e308:  # no float can hold it (JSON allows any integer)
        raise BadRequest(f"metadata '{path}' is a number too large to index")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str) or not k or "." in k:
                raise BadRequest(f"metadata '{path}' has an invalid key {k!r} (non-empty strings without '.')")
            check_value(f"{path}.{k}", v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            check_value(path, v, depth + 1)
    elif not (value is None or isinstance(value, (str, int, float, bool))):
        raise BadRequest(f"metadata '{path}' has an unsupported type {type(value).__name__}")


def decode_base64(value: Any) -> bytes:
    if not isinstance(value, str) or not value:
        raise BadRequest("'_base64' must be a non-empty base64 string")
    if value.startswith("data:") and "," in value:  # data URLs from browsers
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("'_base64' is not valid base64") from None


def parse_vector(value: Any, dim: int | None = None) -> np.ndarray:
    """A list of finite numbers (of `dim` entries when given) as float32."""
    if not isinstance(value, list) or not value:
        raise BadRequest("'_vector' must be a non-empty list of numbers")
    if not all(is_number(x) for x in value):
        raise BadRequest("'_vector' must contain only numbers")
    try:
        vec = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an integer beyond any float
        raise BadRequest("'_vector' contains a number too large for a float") from None
    if not np.all(np.isfinite(vec)):
        raise BadRequest("'_vector' contains NaN or infinite values")
    if dim is not None and len(vec) != dim:
        raise BadRequest(f"'_vector' has {len(vec)} dimensions, the collection expects {dim}")
    if not np.any(vec):
        raise BadRequest("'_vector' is all zeros")
    if not np.linalg.norm(vec) <= MAX_VECTOR_NORM:  # float32 scores of such vectors overflow to inf/NaN
        raise BadRequest(f"'_vector' is too long (its length must be at most {MAX_VECTOR_NORM:g})")
    return vec.astype(np.float32)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_identity(model: str, text_fields: Sequence[str] = ()) -> str:
    """What besides a record's own content decides what is stored for it: the model (name and
    version) and the collection's `text_fields`. Part of the content hash, so that changing
    either and re-ingesting re-embeds instead of reporting `unchanged`."""
    from .models.registry import model_version
    identity = model
    version = model_version(model)
    if version:
        identity += "@" + version
    if text_fields:
        identity += "\0text:" + json.dumps(list(text_fields))
    return identity


def content_hash(doc: dict, source_hash: str, identity: str) -> str:
    """Identity of a record's content (`identity` from content_identity): unchanged records are
    skipped on re-ingest."""
    canonical = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return digest(f"{identity}\0{source_hash}\0{canonical}".encode())
