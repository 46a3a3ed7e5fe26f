"""Edit in place: change a stored record's metadata without its image being read or embedded again.

`update(store, id, fields)` merges `fields` into the stored metadata (`null` removes a field; a
nested object is replaced whole) and writes the record back with its stored vector, computed
fields (`_labels`, `_colors`, fingerprint), image source (`_file`/`_url`) and thumbnail. An
upsert without an image source also keeps the vector, but replaces the whole metadata (and so
drops `_file`/`_url`): this is the partial update. Reserved fields are refused, so an update
can never change what the vector was made from.
"""
from __future__ import annotations

from typing import Any

from ..errors import BadRequest, NotFound
from ..records import (COMPUTED, INTERNAL, SOURCES, check_id, check_text, check_value, content_hash,
                       content_identity)
from ..store.base import CollectionStore, StoredRecord
from . import triage

#: Most fields one update may name (a record's metadata is small; this bounds the request's work).
MAX_FIELDS = 1000


def check_fields(fields: Any) -> dict:
    """The changes of an update: an object of metadata fields (null to remove); BadRequest naming
    the first reserved or invalid one."""
    if not isinstance(fields, dict):
        raise BadRequest("the fields of an update must be an object such as {\"price\": 12, \"old\": null}")
    if len(fields) > MAX_FIELDS:
        raise BadRequest(f"an update may change at most {MAX_FIELDS} fields")
    for key, value in fields.items():
        if not isinstance(key, str) or not key:
            raise BadRequest("field names must be non-empty strings")
        check_text(key, "a field name")
        if key == "_id":
            raise BadRequest("'_id' cannot be changed by an update: upsert a record under the new id and "
                             "delete the old one")
        if key in SOURCES:
            raise BadRequest(f"'{key}' is an image source: an update changes metadata only; upsert the record "
                             "with its new image to re-embed it")
        if key in COMPUTED:
            raise BadRequest(f"'{key}' is computed by the engine and cannot be written")
        if key.startswith("_"):
            raise BadRequest(f"unknown reserved field '{key}' (fields starting with '_' are reserved)")
        if value is not None:
            check_value(key, value, 1)
    return fields


def update(store: CollectionStore, rid: str, fields: Any) -> dict:
    """Apply `fields` to record `rid` and return the record as `get` shows it; NotFound if absent.

    Everything is checked before anything is written: a bad update changes nothing."""
    check_id(rid)
    changes = check_fields(fields)
    stored = store.get([rid])[0]
    known = store.hashes([rid]).get(rid)
    if stored is None or known is None:
        raise NotFound(f"record {rid!r} not found in collection {store.settings.name!r}")
    computed = {k: stored.pop(k) for k in COMPUTED if k in stored}
    doc = dict(stored)
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    doc["_id"] = rid
    if doc != stored:
        settings = store.settings
        source_hash = known[1]
        vector, _ = triage.stored_parts(store, rid)
        text_vector = None
        if settings.text_fields:  # the sentence vector of the text fields: made again only when they changed
            old = store.text_vector_map([rid]).get(rid)
            if old is not None and not any(_touches(key, settings.text_fields) for key in changes):
                text_vector = old
            else:
                text_vector = triage.text_vectors(settings.text_fields, [(doc, computed)])[0]
        record = StoredRecord(rid, doc, computed, vector, source_hash,
                              content_hash(doc, source_hash, content_identity(settings.model, settings.text_fields or ())),
                              thumbnail=None, text_vector=text_vector)
        store.write([record])
    out = {**doc, **{k: v for k, v in computed.items() if k not in INTERNAL}}
    return out


def _touches(key: str, text_fields: list[str]) -> bool:
    """Whether changing top-level field `key` changes a text field (a dotted path under it)."""
    return any(path == key or path.startswith(key + ".") for path in text_fields)
