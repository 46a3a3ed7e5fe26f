"""Routes behind the web page: a page of records, facets, thumbnails (read routes, under /v1)."""
from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from ...errors import BadRequest
from ...records import check_id, check_json_text
from .common import collection_of


def _json_param(name: str, raw: str | None) -> Any:
    """A query-string parameter holding JSON (filters, field lists); 400 naming it if malformed."""
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"'{name}' is not valid JSON: {exc}") from None
    check_json_text(value, f"the query parameter '{name}'")
    return value


def browse_routes(router: APIRouter) -> None:
    """The read routes behind the web page's grid, filters and thumbnails (the search key is enough)."""
    tag = ["browse"]

    @router.get("/collections/{name}/records", tags=tag, summary="A page of records in write order (browsing)")
    def list_records(request: Request, name: str, offset: int = Query(0, description="How many matching records to skip."),
                     limit: int = Query(50, description="Records per page, 1..1000."),
                     filter: str | None = Query(None, description="A filter as JSON, as in search."),
                     fields: str | None = Query(None, description="JSON list of fields to return; default all.")
                     ) -> JSONResponse:
        page = collection_of(request, name).records(offset=offset, limit=limit, filter=_json_param("filter", filter),
                                           fields=_json_param("fields", fields))
        return JSONResponse(page)

    @router.get("/collections/{name}/facets", tags=tag, summary="Metadata values with counts and numeric ranges")
    def facets(request: Request, name: str, filter: str | None = Query(None, description="Count only records matching this JSON filter."),
               top: int = Query(20, description="Most frequent values listed per field, 1..1000.")) -> JSONResponse:
        return JSONResponse(collection_of(request, name).facets(filter=_json_param("filter", filter), top=top))

    @router.get("/collections/{name}/records/{record_id:path}/thumbnail", tags=tag, summary="The small JPEG kept for a record",
                responses={200: {"content": {"image/jpeg": {}}}})
    def thumbnail(request: Request, name: str, record_id: str,
                  optional: bool = Query(False, description="Answer 204 instead of 404 when none is kept "
                                                            "(the page asks so, to keep the console clean).")
                  ) -> Response:
        col = collection_of(request, name)
        raw = request.scope.get("raw_path")
        if isinstance(raw, bytes) and not raw.endswith(b"/thumbnail"):
            # A record id may hold '/': sent as `x%2Fthumbnail` (as the client and the page encode
            # ids), '/thumbnail' is part of the id, and this is GET of that record.
            return JSONResponse(col.get(record_id + "/thumbnail"))
        check_id(record_id)
        if optional and col.kept_thumbnail(record_id) is None:
            col.get(record_id)  # 404 for an unknown record all the same
            return Response(status_code=204)
        data = col.thumbnail(record_id)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=300",
                                                                "X-Content-Type-Options": "nosniff"})
