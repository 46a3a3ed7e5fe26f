"""Request and response bodies of the HTTP API, as pydantic models for the OpenAPI document.

Request models check only the shape (types, ranges, unknown keys -> 422); the meaning
(query kinds, filters, vectors, records) is checked by `lookalike.collection`, which
answers 400 naming the problem, exactly as in the Python API.
"""
from __future__ import annotations

from typing import Any, Literal

import orjson

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from ..errors import BadRequest
from ..query.search import MAX_K, MAX_OFFSET
from ..records import check_json_text
from ..validation import MAX_DIM

QUERY_DOC = ("One anchor: {\"id\": \"x\"}, {\"ids\": [\"x\", \"y\"]}, {\"url\": \"https://...\"}, "
             "{\"base64\": \"...\"}, {\"vector\": [...]}, {\"text\": \"striped dress\"} or {\"color\": \"#c0392b\"}; "
             "beside an image or id anchor \"box\": [x0, y0, x1, y1] (fractions) searches that part; "
             "\"keywords\": \"AB-123 acme\" matches exact terms, alone or beside an anchor; "
             "search also takes {\"vectors\": [[...], ...]} (several queries in one call).")
FILTER_DOC = "MongoDB-like filter: {\"category\": \"shoes\", \"price\": {\"$lt\": 20}}; dotted paths for nested fields."


#: The validation error type of a lone surrogate in a body; the server answers it 400, not 422.
INVALID_UNICODE = "invalid_unicode"


def _valid_unicode(data: Any) -> Any:
    """Refuse a body holding a lone surrogate (`"\\ud800"` is valid JSON, not Unicode) before any
    route acts on it: no store or response can encode one, and a PUT must not half-create.

    orjson refuses to encode a string or key holding a surrogate, so a body it encodes has none
    (a few microseconds for a 256-d vector query, where walking it in Python takes ten times
    that); what it refuses for any reason is walked by `check_json_text`, which names the field."""
    try:
        orjson.dumps(data)
        return data
    except (TypeError, orjson.JSONEncodeError):
        pass
    try:
        check_json_text(data, "the request body")
    except BadRequest as exc:
        raise PydanticCustomError(INVALID_UNICODE, exc.message) from None
    return data


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _unicode(cls, data: Any) -> Any:
        return _valid_unicode(data)


# -- errors -------------------------------------------------------------------------------
class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. not_found, bad_request, unauthorized.")
    message: str = Field(description="What went wrong, for people.")
    details: list[dict[str, Any]] | None = Field(None, description="Validation errors (422 only).")


class ErrorResponse(BaseModel):
    """Every error answer: `{"error": {"code": ..., "message": ...}}`."""

    error: ErrorDetail


# -- collections --------------------------------------------------------------------------
class CollectionSettingsBody(_Body):
    """Known settings are typed here; others pass through to the engine, which names unknown ones (400)."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str | None = Field(None, description="Image model (default efficientnet-lite0-style), or 'none' for "
                                                "precomputed vectors only (then 'dim' is required).",
                              examples=["efficientnet-lite0-style", "efficientnet-lite0", "none"])
    dim: int | None = Field(None, ge=1, le=MAX_DIM, description="Vector dimension (model 'none').")
    metric: str | None = Field(None, description="'cosine' (default) or 'dot'.", examples=["cosine"])
    group_field: str | None = Field(None, description="Field whose value groups records (at most one hit per value).")
    text_fields: list[str] | None = Field(None, description="Metadata fields used by text queries.")
    boosts: list[dict[str, Any]] | None = Field(
        None, description="Standing boost rules: [{\"filter\": ..., \"weight\": 0.2}].")
    index: Any = Field(None, description="Index settings, e.g. \"exact\" or {\"type\": \"hnsw\", ...}.")
    compression: Any = Field(None, description="Vector compression settings.")
    thumbnails: bool | None = Field(None, description="Keep a small JPEG per record for the web page (default true).")


class CollectionInfo(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: str
    count: int
    dim: int | None
    model: str
    metric: str
    index: Any = Field(description="The index kind, or its settings.")
    bytes: int


class CollectionSummary(BaseModel):
    name: str
    count: int
    model: str


class CollectionList(BaseModel):
    collections: list[CollectionSummary]


class Dropped(BaseModel):
    name: str
    deleted: bool


class Compacted(BaseModel):
    collection: str
    count: int = Field(description="Records in the collection.")
    bytes_before: int = Field(description="Bytes of its vectors and index before compaction.")
    bytes: int = Field(description="Bytes of its vectors and index after compaction.")


class TuneBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str | None = Field(None, description="Metadata field whose equal values mean 'alike' (dotted path).")
    groups: bool = Field(False, description="Use the collection's group_field as the field.")
    reset: bool = Field(False, description="Go back to the model's own vectors.")


class Tuned(BaseModel):
    model_config = ConfigDict(extra="allow")
    collection: str
    applied: bool = Field(description="Whether searches now use the learned space.")
    before: dict | None = Field(None, description="p@5 and map@10 on held-out values, untuned.")
    after: dict | None = Field(None, description="p@5 and map@10 on held-out values, tuned.")


# -- records ------------------------------------------------------------------------------
class UpsertBody(BaseModel):
    """Records are checked one by one (a bad one gets its own error result), not as a body."""

    model_config = ConfigDict(extra="forbid", strict=True)
    records: list[Any] = Field(description="Records: {\"_id\": ..., one of _url/_base64/_vector, ...metadata}. "
                                           "Each is checked alone: a bad one gets status 'error'.")


class RecordResult(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    id: Any = Field(alias="_id")
    status: str = Field(description="inserted, updated, unchanged or error")
    error: str | None = None


class UpsertResponse(BaseModel):
    results: list[RecordResult]


class Record(BaseModel):
    """A stored record: `_id`, the user's metadata and the engine's `_labels` / `_colors`."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str = Field(alias="_id")


class DeleteBody(_Body):
    ids: list[Any] | None = Field(None, description="Ids to delete.")
    filter: dict[str, Any] | None = Field(None, description=FILTER_DOC)


class Deleted(BaseModel):
    deleted: int


# -- search -------------------------------------------------------------------------------
class SearchOptions(_Body):
    negative: list[dict[str, Any]] | None = Field(
        None, description="Anchors to move away from, e.g. [{\"id\": \"z\"}].")
    k: int = Field(10, ge=1, le=MAX_K, description="How many hits.")
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description="Paging: hits to skip.")
    filter: dict[str, Any] | None = Field(None, description=FILTER_DOC)
    group_by: str | bool | None = Field(None, description="At most one hit per value of this field "
                                                         "(default: the collection's group_field; false: no grouping).")
    boost: list[dict[str, Any]] | None = Field(None, description="[{\"filter\": {...}, \"weight\": 0.2}]")
    fields: list[str] | None = Field(None, description="Metadata fields to return (default all).")
    negative_weight: float = Field(0.5, ge=0, le=10, description="Weight of the negative anchors.")
    same_label: bool = Field(False, description="Only results sharing the query's top automatic label.")
    text: str | None = Field(None, description="Text mixed into an image query's ranking (needs text_fields).")
    hybrid: float | None = Field(None, ge=0, le=1, description="Weight of text similarity against looks, "
                                                             "0..1 (default 0.5 when both apply).")
    min_score: Any = Field(None, description="Hits scoring below this number are dropped.")
    explain: Any = Field(False, description="Each hit carries `_explain`: the parts of its score, shared labels "
                                            "and colours, and for a copy of the query how and where it matched.")
    collapse: Any = Field(None, description="One hit per near-duplicate cluster, with `_collapsed: N`: true, or "
                                            "{\"ids\": true, \"threshold\": 0.6} to list the hidden ids too.")
    fusion: Literal["rrf", "weighted"] = Field("rrf", description="How a query's 'keywords' blend with its "
                                               "anchor: reciprocal-rank fusion or a weighted sum.")
    keyword_weight: float = Field(0.5, ge=0, le=1, description="Share of the keywords in the blend, 0..1.")
    regions: bool | int = Field(False, description="Also search up to N object regions proposed in the query's "
                                                   "picture (true: 4; at most 8): answers 'regions'.")


class SearchBody(SearchOptions):
    query: dict[str, Any] = Field(description=QUERY_DOC, examples=[{"id": "x"}])


class MatchHit(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str = Field(alias="_id")
    score: float = Field(alias="_score")
    match: dict[str, Any] = Field(alias="_match", description=(
        "kind: exact or near; for near copies box ([x0, y0, x1, y1] fractions of the stored image "
        "covered), angle (degrees), scale, mirrored and inliers"))


class MatchResponse(BaseModel):
    hits: list[MatchHit]
    took_ms: float | None = None


class Hit(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str = Field(alias="_id")
    score: float = Field(alias="_score", description="Higher is more similar.")
    explain: dict[str, Any] | None = Field(None, alias="_explain", description="With `explain`: why this hit.")
    collapsed: int | None = Field(None, alias="_collapsed", description="With `collapse`: copies hidden behind it.")
    collapsed_ids: list[str] | None = Field(None, alias="_collapsed_ids",
                                            description="With `collapse: {\"ids\": true}`: their ids, best first.")


class SearchResponse(BaseModel):
    hits: list[Hit] | list[list[Hit]] = Field(description="Best first; for a `vectors` query a list of hit "
                                                          "lists, one per vector, in order.")
    took_ms: float


class RegionHits(BaseModel):
    box: list[float] = Field(description="[x0, y0, x1, y1], fractions of the picture.")
    hits: list[Hit]


class SearchRegionsResponse(SearchResponse):
    regions: list[RegionHits] | None = Field(None, description="With 'regions': hits per proposed region.")


class RecommendBody(_Body):
    id: str = Field(description="The anchor record.")
    k: int = Field(10, ge=1, le=MAX_K)
    offset: int = Field(0, ge=0, le=MAX_OFFSET)
    filter: dict[str, Any] | None = Field(None, description=FILTER_DOC)
    fields: list[str] | None = None
    group_by: str | bool | None = Field(None, description="At most one hit per value of this field "
                                                         "(default: the collection's group_field; false: no grouping).")
    min_score: Any = Field(None, description="Hits scoring below this number are dropped.")
    explain: Any = Field(False, description="Each hit carries `_explain` (as in search).")
    collapse: Any = Field(None, description="One hit per near-duplicate cluster (as in search).")


class RerankBody(_Body):
    ids: list[str] = Field(description="Ids to sort by similarity to the query.")
    query: dict[str, Any] = Field(description=QUERY_DOC)
    fields: list[str] | None = None
    min_score: Any = Field(None, description="Ids scoring below this number are left out.")


class RerankResponse(SearchResponse):
    missing: list[str]


class MatchBody(_Body):
    query: dict[str, Any] = Field(description="The image: {\"id\"}, {\"url\"}, {\"base64\"} or {\"vector\"}.")
    threshold: float | None = Field(None, description="Similarity above which an item is a near-duplicate.")
    k: int = Field(10, ge=1, le=MAX_K, description="At most this many matches.")
    fields: list[str] | None = Field(None, description="Metadata fields to return (default all).")


class DuplicatesBody(_Body):
    threshold: float | None = Field(None, description="Similarity above which two records are copies.")


class Clusters(BaseModel):
    clusters: list[list[str]]


class ReportMember(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)
    id: str = Field(alias="_id")
    keep: bool = Field(description="The suggested keeper of its cluster.")
    width: int | None = None
    height: int | None = None
    bytes: int | None = None
    fields: int = Field(description="How many metadata fields have a value.")


class ReportCluster(BaseModel):
    cluster: int
    keeper: str
    reason: str
    members: list[ReportMember]


class DuplicatesReport(BaseModel):
    clusters: list[ReportCluster]
    took_ms: float | None = None


class TagBody(_Body):
    ids: list[str] = Field(description="Records to tag.")
    fields: dict[str, Any] = Field(description="Metadata fields to set; null removes a field.",
                                   examples=[{"duplicate_of": "sku-1"}])


class Tagged(BaseModel):
    tagged: int
    missing: list[str]


class ResolveBody(_Body):
    keep: str = Field(description="The record to keep (must exist, else nothing changes).")
    others: list[str] = Field(description="The cluster's other records.")
    action: Literal["delete", "tag"] = Field("delete", description="Delete the others, or tag them.")
    fields: dict[str, Any] | None = Field(None, description="With 'tag': the fields to set "
                                          "(default {\"duplicate_of\": keep}).")


class Resolved(BaseModel):
    kept: str
    deleted: int | None = None
    tagged: int | None = None
    missing: list[str]


class Health(BaseModel):
    status: str
