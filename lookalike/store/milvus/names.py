"""Names and limits of the Milvus layout: collection names, window and message sizes."""
from __future__ import annotations

SETTINGS_COLLECTION = "lookalike_settings"
#: Milvus answers at most this many hits per search (limit + offset).
MAX_WINDOW = 16_384
#: Scores of all rows come from one search up to this many rows (else from reading the vectors).
SCORE_WINDOW = MAX_WINDOW
#: Rows per upsert/get call (keeps gRPC messages well under their 64 MB limit).
CHUNK = 256
#: Milvus's limit on one JSON value.
MAX_JSON_BYTES = 65_536
#: The JSON fields a record is stored in (its metadata, and the fields the engine computed).
FIELDS = ("doc", "computed")
#: A scan left unused this long (seconds) is not reused by a later `postings` call of the thread.
SCAN_REUSE_S = 10.0
#: Bytes of one scan batch, roughly (fewer round trips than the default 1000 rows, messages well
#: under gRPC's 64 MB); a batch holds at most 16384 rows (Milvus's limit).
SCAN_BATCH_BYTES = 16 << 20


def scan_batch(row_bytes: int) -> int:
    """Rows per `query_iterator` batch for rows of about `row_bytes`."""
    return max(256, min(MAX_WINDOW, SCAN_BATCH_BYTES // max(1, row_bytes)))


def milvus_name(name: str) -> str:
    """A lookalike collection name as a Milvus one (reversible, no collisions)."""
    return "lk_" + name.replace("_", "__").replace("-", "_d")


def text_collection_name(name: str) -> str:
    """The Milvus collection of a collection's text vectors: `milvus_name(name) + "_text"`.

    `milvus_name` writes every `_` of a name as `__` or `_d`, so read left to right its `_`s come
    in pairs; a lone `_t` never occurs in one, and this name is never another collection's.

    Why a second collection rather than a second vector field: the text model and its width
    are known only when the first text vector is written (`text_fields` may be set long after
    the collection was created), Milvus cannot add a vector field to an existing collection,
    and records without a text vector (written before `text_fields` was set) would need a
    placeholder vector, as Milvus Lite (and servers before 2.6) have no nullable vector fields.
    A collection `(id, vector)` works the same on Milvus Lite and on a server.
    """
    return milvus_name(name) + "_text"


def stored_view(row: dict) -> dict:
    """A Milvus row as the record reads: its metadata with the computed fields."""
    return {**(row.get("doc") or {}), **(row.get("computed") or {})}


def raw_collection_name(name: str) -> str:
    """The Milvus collection of a tuned collection's model (raw) vectors: `milvus_name(name) + "_raw"`.

    Like `text_collection_name`: a lone `_r` never occurs in a `milvus_name`, so it is never
    another collection's. A tuned collection searches its main `vector` field, which holds the
    tuned vectors; the raw ones, which a new tune or a reset start from, live here (a second
    collection for the reasons `text_collection_name` gives). Untuned collections have none.
    """
    return milvus_name(name) + "_raw"


def map_collection_name(name: str) -> str:
    """The Milvus collection holding a tuned collection's learned map (`milvus/tuning.py`):
    `milvus_name(name) + "_map"` (a lone `_m`, never in a `milvus_name`)."""
    return milvus_name(name) + "_map"
