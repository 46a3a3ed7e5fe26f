"""Routes of records: upsert (JSON or streamed NDJSON), get, update in place, delete."""
from __future__ import annotations

from typing import Any, Iterator

import anyio.from_thread
from fastapi import APIRouter, Body, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from ...collection import Collection
from ...errors import BadRequest, LookalikeError, NotFound
from ...records import check_json_text
from .. import schemas as S
from ..errors import errors, error_response, ok
from ..guard import is_ndjson
from ..ndjson import iter_records, loads
from .common import CollectionName, RecordId, collection_of


def records_routes(router: APIRouter) -> None:
    tag = ["records"]
    upsert_body = {"requestBody": {"required": True, "content": {
        "application/json": {"schema": S.UpsertBody.model_json_schema()},
        "application/x-ndjson": {"schema": {"type": "string", "description": "One JSON record per line, streamed."}},
    }}}

    @router.post("/collections/{name}/records", tags=tag, response_model=S.UpsertResponse,
                 responses=errors(400, 403, 415), openapi_extra=upsert_body,
                 summary="Insert or update records: one result per record, in order")
    async def upsert(request: Request, name: CollectionName) -> JSONResponse:
        col = await run_in_threadpool(collection_of, request, name)
        batch = request.app.state.ingest_batch_size
        if is_ndjson(request.scope):
            try:
                results = await _upsert_ndjson(request, col, batch)
            except ClientDisconnect:  # the batches written so far stay written
                return error_response(400, "bad_request", "the client disconnected during the upload")
        else:
            ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if ctype != "application/json" and not ctype.endswith("+json"):
                raise _unsupported(ctype)
            records = await run_in_threadpool(_parse_upsert, await request.body())  # big bodies: off the loop
            results = await run_in_threadpool(col.upsert, records, batch_size=batch)
        return ok({"results": results})

    @router.get("/collections/{name}/records/{record_id:path}", tags=tag, response_model=S.Record,
                responses=errors(400), summary="A stored record with its computed _labels and _colors")
    def get_record(request: Request, name: CollectionName, record_id: RecordId) -> JSONResponse:
        return ok(collection_of(request, name).get(record_id))

    @router.patch("/collections/{name}/records/{record_id:path}", tags=tag, response_model=S.Record,
                  responses=errors(400, 403), summary="Change a record's metadata in place (null removes a field)")
    def update_record(request: Request, name: CollectionName, record_id: RecordId,
                      fields: dict[str, Any] = Body(description="Fields to set; null removes one. Reserved "
                                                    "fields (_id, _file, _url, _base64, _vector) are refused.",
                                                    examples=[{"price": 12, "on_sale": None}])) -> JSONResponse:
        check_json_text(fields, "the request body")
        return ok(collection_of(request, name).update(record_id, fields))

    @router.delete("/collections/{name}/records/{record_id:path}", tags=tag, response_model=S.Deleted,
                   responses=errors(400, 403), summary="Delete one record (404 if it does not exist)")
    def delete_record(request: Request, name: CollectionName, record_id: RecordId) -> JSONResponse:
        col = collection_of(request, name)
        if col.delete([record_id]) == 0:
            raise NotFound(f"record {record_id!r} not found in collection {name!r}")
        return ok({"deleted": 1})

    @router.post("/collections/{name}/records/delete", tags=tag, response_model=S.Deleted,
                 responses=errors(400, 403), summary="Delete records by ids or by filter")
    def delete_records(request: Request, name: CollectionName, body: S.DeleteBody) -> JSONResponse:
        return ok({"deleted": collection_of(request, name).delete(body.ids, filter=body.filter)})


def _unsupported(ctype: str) -> LookalikeError:
    exc = LookalikeError(f"records must be sent as application/json or application/x-ndjson, not {ctype!r}",
                         code="unsupported_media_type")
    exc.status = 415
    return exc


def _parse_upsert(raw: bytes) -> list[Any]:
    """`{"records": [...]}` -> the list; 400 for bad JSON, 422 for another shape."""
    try:
        data = loads(raw) if raw.strip() else None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    try:
        return S.UpsertBody.model_validate(data).records
    except ValidationError as exc:
        problems = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(problems) from None


async def _upsert_ndjson(request: Request, col: Collection, batch: int) -> list[dict]:
    """Stream the body's lines into `upsert_iter` from a worker thread, batch by batch."""
    stream = request.stream().__aiter__()
    limit = request.app.state.max_body_bytes

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    def chunks() -> Iterator[bytes]:
        while (chunk := anyio.from_thread.run(next_chunk)) is not None:
            yield chunk

    def work() -> list[dict]:
        return list(col.upsert_iter(iter_records(chunks(), limit), batch_size=batch))
    return await run_in_threadpool(work)
