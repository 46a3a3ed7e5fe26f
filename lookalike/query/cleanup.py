"""Duplicate clean-up: a report of the copy clusters with a suggested keeper, and resolving them.

Built on `query.clusters.duplicates` (which finds the clusters). Per cluster the suggested
keeper is the member with, in this order: the most pixels (width x height of the original file,
the `_image` field stored at ingest), the largest file (`_image.bytes`, less compressed), the most
complete metadata (user fields with a non-empty value), then the smallest id (stable). Members
ingested before `_image` existed, or from a `_vector`, rank after those with known values.

Resolving a cluster keeps one record and either deletes the others or tags them (sets metadata
fields such as `{"duplicate_of": keeper}` without re-embedding: the stored vector, computed
fields and thumbnail stay). Design notes: docs/duplicates.md, "Clean-up".
"""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Sequence

from ..errors import BadRequest, NotFound
from ..models.text import get_text_encoder, record_text
from ..records import COMPUTED, check_ids, check_value, content_hash, content_identity
from ..store.base import CollectionStore, StoredRecord
from ..validation import check_field_name

ACTIONS = ("delete", "tag")
MAX_TAG_IDS = 10_000
CSV_COLUMNS = ("cluster", "_id", "keep", "width", "height", "pixels", "bytes", "format", "fields", "source")


def _filled(value: Any) -> bool:
    return value not in (None, "", [], {})


def member_facts(rid: str, doc: dict | None) -> dict:
    """What the keeper is chosen by, for one record (None values where unknown)."""
    doc = doc or {}
    image = doc.get("_image") if isinstance(doc.get("_image"), dict) else {}
    width, height = image.get("width"), image.get("height")
    source = next((k for k in ("_file", "_url") if isinstance(doc.get(k), str)), None)
    return {"_id": rid, "width": width, "height": height,
            "pixels": width * height if isinstance(width, int) and isinstance(height, int) else None,
            "bytes": image.get("bytes"), "format": image.get("format"),
            "fields": sum(1 for k, v in doc.items() if not k.startswith("_") and _filled(v)),
            "source": doc.get(source) if source else None}


def _rank(facts: dict) -> tuple:
    """Sort key: best keeper first (unknown sizes after known ones)."""
    return (facts["pixels"] is None, -(facts["pixels"] or 0), facts["bytes"] is None, -(facts["bytes"] or 0),
            -facts["fields"], facts["_id"])


def report(store: CollectionStore, clusters: Sequence[Sequence[str]]) -> list[dict]:
    """`[{"cluster": n, "keeper": id, "reason": ..., "members": [facts..., "keep": bool]}]`, keeper first."""
    out = []
    for n, ids in enumerate(clusters, 1):
        ids = [c if isinstance(c, str) else c["_id"] for c in ids]
        members = sorted((member_facts(rid, doc) for rid, doc in zip(ids, store.get(ids))), key=_rank)
        if not members:
            continue
        best = members[0]
        for m in members:
            m["keep"] = m is best
        out.append({"cluster": n, "keeper": best["_id"], "reason": _reason(best, members[1:]), "members": members})
    return out


def _reason(best: dict, others: list[dict]) -> str:
    if not others:
        return "only member"
    second = others[0]
    if best["pixels"] is not None and (second["pixels"] is None or best["pixels"] > second["pixels"]):
        return f"highest resolution ({best['width']}x{best['height']})"
    if best["bytes"] is not None and (second["bytes"] is None or best["bytes"] > second["bytes"]):
        return f"same resolution, largest file ({best['bytes']} bytes)"
    if best["fields"] > second["fields"]:
        return f"same size, most complete metadata ({best['fields']} fields)"
    return "all alike: first id"


def to_jsonl(clusters: list[dict]) -> str:
    return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in clusters)


def to_csv(clusters: list[dict]) -> str:
    """One row per member: cluster number, id, keep (true/false), sizes, metadata count, source."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for cluster in clusters:
        for m in cluster["members"]:
            writer.writerow({**{k: ("" if v is None else v) for k, v in m.items()},
                             "cluster": cluster["cluster"], "keep": "true" if m["keep"] else "false"})
    return buf.getvalue()


# -- resolving ---------------------------------------------------------------------------------
def check_tag_fields(fields: Any) -> dict:
    """`{"field": value, ...}`: user fields (no `_` names), metadata values; null removes a field."""
    if not isinstance(fields, dict) or not fields:
        raise BadRequest("'fields' must be a non-empty object such as {\"duplicate_of\": \"sku-1\"}")
    for key, value in fields.items():
        check_field_name("a tag field", key)
        if key.startswith("_") or "." in key:
            raise BadRequest(f"tag field {key!r} must be a plain metadata field (no '_' prefix, no dots)")
        check_value(key, value, 1)
    return fields


def tag(store: CollectionStore, ids: Sequence[str], fields: Any) -> dict:
    """Set (or, with null, remove) metadata fields of existing records, keeping their vectors,
    computed fields and thumbnails. `{"tagged": n, "missing": [...]}`; all-or-nothing per call."""
    if not isinstance(ids, list) or not ids:
        raise BadRequest("'ids' must be a non-empty list of record ids")
    if len(ids) > MAX_TAG_IDS:
        raise BadRequest(f"at most {MAX_TAG_IDS} ids per call")
    ids = list(dict.fromkeys(check_ids(ids, "'ids'")))
    fields = check_tag_fields(fields)
    settings = store.settings
    identity = content_identity(settings.model, settings.text_fields or ())
    docs, vectors, hashes = store.get(ids), store.raw_vectors(ids), store.hashes(ids)
    texts = store.text_vector_map(ids) if settings.text_fields else {}
    records, missing = [], []
    for rid, stored in zip(ids, docs):
        if stored is None or rid not in vectors or rid not in hashes:
            missing.append(rid)
            continue
        computed = {k: stored.pop(k) for k in COMPUTED if k in stored}
        doc = {**stored, **{k: v for k, v in fields.items() if v is not None}}
        for key in (k for k, v in fields.items() if v is None):
            doc.pop(key, None)
        source_hash = hashes[rid][1]
        text = texts.get(rid)
        if settings.text_fields and any(f.split(".")[0] in fields for f in settings.text_fields):
            text = get_text_encoder().embed([record_text(doc, computed, settings.text_fields)])[0]
        records.append(StoredRecord(rid, doc, computed, vectors[rid], source_hash,
                                    content_hash(doc, source_hash, identity), text_vector=text))
    if records:
        store.write(records)
    return {"tagged": len(records), "missing": missing}


def resolve(store: CollectionStore, keep: Any, others: Any, action: Any = "delete", fields: Any = None) -> dict:
    """Keep `keep` and delete (or tag) `others`. The keeper must exist, else nothing is done: a
    typo never deletes every copy. Tagging sets `fields`, by default `{"duplicate_of": keep}`."""
    if action not in ACTIONS:
        raise BadRequest(f"'action' must be one of: {', '.join(ACTIONS)}")
    keep = check_ids([keep], "'keep'")[0] if isinstance(keep, str) else None
    if keep is None:
        raise BadRequest("'keep' must be the id of the record to keep")
    if not isinstance(others, list) or not others:
        raise BadRequest("'others' must be a non-empty list of the ids to delete or tag")
    others = [i for i in dict.fromkeys(check_ids(others, "'others'")) if i != keep]
    if not others:
        raise BadRequest("'others' holds only the record to keep")
    if store.get([keep])[0] is None:
        raise NotFound(f"record {keep!r} (to keep) not found in collection {store.settings.name!r}: nothing changed")
    if action == "tag":
        done = tag(store, others, {"duplicate_of": keep} if fields is None else fields)
        return {"kept": keep, "tagged": done["tagged"], "missing": done["missing"]}
    if fields is not None:
        raise BadRequest("'fields' go with action 'tag'")
    present = [i for i, doc in zip(others, store.get(others)) if doc is not None]
    deleted = store.delete(present) if present else 0
    return {"kept": keep, "deleted": deleted, "missing": [i for i in others if i not in present]}
