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
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .errors import BadRequest
from .models.registry import model_version
from .validation import is_number

SOURCES = ("_file", "_url", "_base64", "_vector")
COMPUTED = ("_labels", "_colors", "_fingerprint", "_pixel_hash", "_image", "_keypoints")  # written by the engine only
#: Computed fields kept for the engine's own comparisons, never shown in a record or hit: the
#: near-duplicate hashes (models/fingerprint.py) and local features (models/keypoints.py).
INTERNAL = ("_fingerprint", "_keypoints")
MAX_ID_LENGTH = 256
MAX_DEPTH = 32
MAX_VECTOR_NORM = 1e18
#: Shortest usable vector: below it (after float32 rounding) the direction is noise, cosine is undefined.
MIN_VECTOR_NORM = 1e-12
#: Control characters (C0, DEL, C1): never in an id, where a trailing newline from a catalogue line
#: or a NUL would otherwise address another record through URL routing, logs and terminals.
CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f]")
#: Lone surrogates: valid as JSON escapes (`"\\ud800"`) but not Unicode, so no UTF-8 store can hold them.
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def validate_record(raw: Any, *, allow_file: bool = True, base_dir: Path | None = None,
                    allow_outside: bool = False, vector: np.ndarray | None = None) -> ValidRecord:
    """Check one incoming record; raise BadRequest naming the problem.

    With `base_dir` (a catalogue's folder) a `_file` must lie inside it unless `allow_outside`
    (see resolve_file); without it paths are taken as given (the Python API's local files).
    `vector`: the record's `_vector` as `plain_vector_rows` parsed it with its batch (what
    `parse_vector` would give), so it is not parsed again.
    """
    if isinstance(raw, InvalidRecord):
        raise BadRequest(raw.reason)
    if not isinstance(raw, dict):
        raise BadRequest(f"a record must be a JSON object, got {type(raw).__name__}")
    rid = raw.get("_id")
    if rid is None:
        raise BadRequest("record has no '_id'")
    check_id(rid, "'_id'")
    present = [k for k in SOURCES if raw.get(k) is not None]
    if len(present) > 1:
        raise BadRequest(f"record {rid!r} has several image sources ({', '.join(present)}); give exactly one")
    doc: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str):  # JSON keys always are; a Python caller's may not be
            raise BadRequest(f"field names must be strings, got {type(key).__name__}")
        check_text(key, "a field name")
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
            source = Source("file", resolve_file(value, base_dir, allow_outside=allow_outside))
            doc["_file"] = value
        elif key == "_url":
            if not isinstance(value, str) or not value.lower().startswith(("http://", "https://")):
                raise BadRequest("'_url' must be an http:// or https:// URL")
            check_text(value, "'_url'")
            source = Source("url", value)
            doc["_url"] = value
        elif key == "_base64":
            source = Source("base64", decode_base64(value))
        else:
            source = Source("vector", vector if vector is not None else parse_vector(value))
    return ValidRecord(rid, {"_id": rid, **doc}, source)


def check_text(value: str, what: str) -> str:
    """A string from a request: refuse lone surrogates (400 naming `what`) before a store fails on them."""
    if _SURROGATE.search(value):
        raise BadRequest(f"{what} contains a lone surrogate (\\ud800-\\udfff escape without its pair): "
                         "not valid Unicode")
    return value


def check_id(rid: Any, what: str = "a record id") -> str:
    """A record id: 1..MAX_ID_LENGTH characters, no control characters, valid Unicode.

    One rule for upsert, get, delete and search anchors: an id that could not be stored is
    refused wherever it is given, rather than silently matching nothing (or another record).
    """
    if not isinstance(rid, str) or not 1 <= len(rid) <= MAX_ID_LENGTH:
        raise BadRequest(f"{what} must be a string of 1 to {MAX_ID_LENGTH} characters")
    bad = CONTROL_CHARS.search(rid)
    if bad:
        raise BadRequest(f"{what} {rid!r} contains the control character {bad.group()!r} "
                         "(ids cannot hold newlines, tabs, NUL or other control characters)")
    return check_text(rid, f"{what} {rid!r}")


def check_ids(ids: Any, what: str = "'ids'") -> list[str]:
    """A list of record ids, each checked by check_id."""
    if not isinstance(ids, (list, tuple)) or not all(isinstance(i, str) for i in ids):
        raise BadRequest(f"{what} must be a list of strings")
    for rid in ids:
        check_id(rid)
    return list(ids)


def check_delete(ids: Any, filter: Any) -> list[str] | None:
    """The ids a delete names (a string is one id), each checked; None for a delete by filter."""
    if isinstance(ids, str):
        ids = [ids]
    if (ids is None) == (filter is None):
        raise BadRequest("delete takes either 'ids' or 'filter'")
    return None if ids is None else check_ids(ids)


def check_json_text(value: Any, where: str, path: str = "", depth: int = 0) -> None:
    """Every string and key of a parsed JSON value is valid Unicode (check_text); the error names
    the field's dotted `path` inside `where` (e.g. "the request body")."""
    if depth > 200:  # deeper than any body the server accepts; the parser bounds it anyway
        return
    what = f"'{path}' in {where}" if path else where
    if isinstance(value, str):
        check_text(value, what)
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                check_text(k, f"a key of {what}")
            check_json_text(v, where, f"{path}.{k}" if path else str(k), depth + 1)
    elif isinstance(value, list):
        for v in value:
            check_json_text(v, where, path, depth + 1)


def resolve_file(value: Any, base_dir: Path | None, *, allow_outside: bool = False) -> Path:
    """The path a record's `_file` names: relative to `base_dir` when given, and then inside it.

    A catalogue from elsewhere must not make the CLI read `../../.ssh/id_rsa` or `/etc/...`: with
    a `base_dir`, absolute paths and paths climbing out of it are refused unless `allow_outside`.
    The check is on the path's text (symlinks inside the folder are the folder owner's choice).
    """
    if not isinstance(value, str) or not value:
        raise BadRequest("'_file' must be a path string")
    check_text(value, "'_file'")
    if "\0" in value:
        raise BadRequest("'_file' contains a NUL character")
    path = Path(value)
    if base_dir is None:
        return path
    if path.is_absolute():
        if not allow_outside:
            raise BadRequest(f"'_file' {value!r} is an absolute path: a catalogue's files must lie inside its "
                             f"folder (pass --allow-outside to read files elsewhere)")
        return path
    normal = os.path.normpath(value)
    if not allow_outside and (normal == os.pardir or normal.startswith(os.pardir + os.sep)):
        raise BadRequest(f"'_file' {value!r} points outside the catalogue's folder (pass --allow-outside "
                         "to read files elsewhere)")
    return base_dir / value


def files_anywhere(records: Iterable[Any], base_dir: Path) -> Iterator[Any]:
    """Records whose relative `_file` is joined to `base_dir`, for ingesting with no folder
    bound (`lookalike ingest --allow-outside`): paths are then read as given."""
    for raw in records:
        if isinstance(raw, dict) and isinstance(raw.get("_file"), str) and raw["_file"] \
                and not Path(raw["_file"]).is_absolute():
            raw = {**raw, "_file": str(base_dir / raw["_file"])}
        yield raw


def check_value(path: str, value: Any, depth: int) -> None:
    """Metadata values: strings, finite numbers, booleans, null, lists and objects of those."""
    if depth > MAX_DEPTH:
        raise BadRequest(f"metadata '{path}' is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"metadata '{path}' is NaN or infinite")
    if isinstance(value, int) and abs(value) > 1e308:  # no float can hold it (JSON allows any integer)
        raise BadRequest(f"metadata '{path}' is a number too large to index")
    if isinstance(value, str):
        check_text(value, f"metadata '{path}'")
    elif isinstance(value, dict):
        for k, v in value.items():
            if isinstance(k, str):
                check_text(k, f"metadata '{path}': a key")
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


_PLAIN_NUMBERS = {int, float}


def parse_vector(value: Any, dim: int | None = None) -> np.ndarray:
    """A list of finite numbers (of `dim` entries when given) as float32."""
    if not isinstance(value, list) or not value:
        raise BadRequest("'_vector' must be a non-empty list of numbers")
    # set(map(type, ...)) checks a 1000-d list in ~10 us (a per-item isinstance test took ~100 us,
    # a tenth of a search); other types (bools, numpy scalars) take the exact per-item test
    if not set(map(type, value)) <= _PLAIN_NUMBERS and not all(is_number(x) for x in value):
        raise BadRequest("'_vector' must contain only numbers")
    try:
        vec = np.asarray(value, dtype=np.float64)
    except OverflowError:  # an integer beyond any float
        raise BadRequest("'_vector' contains a number too large for a float") from None
    out = vec.astype(np.float32)
    wide = out.astype(np.float64)  # as stored: 1e-320 is 0 in float32
    norm = math.sqrt(wide.dot(wide))  # np.linalg.norm's own formula, without its call overhead
    if MIN_VECTOR_NORM <= norm <= MAX_VECTOR_NORM and (dim is None or len(vec) == dim):
        return out  # a finite length: every entry is finite (the test below cost as much as the cast)
    if not np.isfinite(vec).all():
        raise BadRequest("'_vector' contains NaN or infinite values")
    if dim is not None and len(vec) != dim:
        raise BadRequest(f"'_vector' has {len(vec)} dimensions, the collection expects {dim}")
    if not norm >= MIN_VECTOR_NORM:
        raise BadRequest(f"'_vector' is all zeros (its length must be at least {MIN_VECTOR_NORM:g} in float32)")
    if not norm <= MAX_VECTOR_NORM:  # float32 scores of such vectors overflow to inf/NaN
        raise BadRequest(f"'_vector' is too long (its length must be at most {MAX_VECTOR_NORM:g})")
    return out


def plain_vector_rows(values: list, dim: int | None = None) -> np.ndarray | None:
    """`[parse_vector(v, dim) for v in values]` as one float32 matrix, by one type scan and one
    NumPy pass for them all (~8 us a 256-d row against ~15 alone), or None where any row would
    need `parse_vector`'s own checks (an error, a length within rounding of a limit) or the
    rows differ in length."""
    kinds: set[type] = set()
    for value in values:
        if type(value) is not list or not value:
            return None
        kinds.update(map(type, value))
    if not values or not kinds <= _PLAIN_NUMBERS:
        return None
    try:
        rows = np.asarray(values, dtype=np.float64)
    except (ValueError, OverflowError):  # rows of unequal length, an integer beyond any float
        return None
    if rows.ndim != 2 or (dim is not None and rows.shape[1] != dim) or not np.isfinite(rows).all():
        return None
    out = rows.astype(np.float32)
    wide = out.astype(np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
    # clear of both limits (a row within rounding of one is decided by parse_vector's own sum)
    if (norms > MIN_VECTOR_NORM * 1.001).all() and (norms < MAX_VECTOR_NORM * 0.999).all():
        return out
    return None


def parse_vectors(values: list, dim: int, what: str = "vectors") -> np.ndarray:
    """Rows of float32, one per list of `values`, each checked as `parse_vector` checks one, with
    one type scan and one NumPy pass for them all (a `vectors` query of 200 rows: 1 ms less than
    200 separate checks). A bad row is named by its position: "'vectors'[3] contains NaN ..."."""
    out = plain_vector_rows(values, dim)
    if out is not None:
        return out
    out_rows = []
    for i, value in enumerate(values):
        try:
            out_rows.append(parse_vector(value, dim))
        except BadRequest as exc:
            raise BadRequest(f"'{what}'[{i}]" + str(exc).removeprefix("'_vector'")) from None
    return np.stack(out_rows)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_identity(model: str, text_fields: Sequence[str] = ()) -> str:
    """What besides a record's own content decides what is stored for it: the model (name and
    version) and the collection's `text_fields`. Part of the content hash, so that changing
    either and re-ingesting re-embeds instead of reporting `unchanged`."""
    identity = model
    version = model_version(model)
    if version:
        identity += "@" + version
    if text_fields:
        identity += "\0text:" + json.dumps(list(text_fields))
    return identity


#: `json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))` made once:
#: `json.dumps` builds a new encoder for each call given options (~1.5 us of a bulk load's record).
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def content_hash(doc: dict, source_hash: str, identity: str) -> str:
    """Identity of a record's content (`identity` from content_identity): unchanged records are
    skipped on re-ingest."""
    canonical = _CANONICAL.encode(doc)
    return digest(f"{identity}\0{source_hash}\0{canonical}".encode())
