"""The FastAPI application: the contract's routes over `lookalike.collection`.

The server is a thin layer: every route validates the body's shape, then calls the same
`Database` / `Collection` method as the Python API in a worker thread (encoding and store
writes never run on the event loop), and maps `LookalikeError` to its status and the
contract's `{"error": {"code", "message"}}` body.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path as FilePath
from typing import Annotated, Any, Iterator

import anyio.from_thread
from fastapi import APIRouter, FastAPI, File, Form, Path, Request, Security, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.security import HTTPBearer
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from ..collection import Collection, Database
from ..errors import BadRequest, LookalikeError, NotFound
from ..models.registry import confine_model
from ..records import CONTROL_CHARS, check_json_text
from . import schemas as S
from .guard import AuthFailures, Guard, Keys, is_ndjson, send_error
from .ndjson import iter_records, loads

log = logging.getLogger("lookalike.server")

CollectionName = Annotated[str, Path(description="The collection: 1-64 of a-z, 0-9, '_' and '-', starting with "
                                                 "a letter or digit.", examples=["products"])]
RecordId = Annotated[str, Path(description="A record's `_id`, URL-encoded (it may contain '/').", examples=["sku-1"])]

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
         406: "not_acceptable", 409: "conflict", 413: "too_large", 415: "unsupported_media_type",
         422: "validation_error", 429: "too_many_requests", 500: "internal", 501: "not_implemented",
         503: "unavailable"}
ERROR_DOCS = {400: "Bad input (the message names the problem)", 401: "Missing or wrong API key",
              403: "The search key cannot call this route", 404: "No such collection or record",
              409: "Conflicts with the collection's settings", 413: "Request body over the server's limit",
              415: "Not an image / unsupported content type", 422: "Body of the wrong shape",
              500: "Server error", 501: "Feature not built yet"}
COMMON_ERRORS = (401, 404, 413, 422, 500)
TAGS = [{"name": "collections", "description": "Create, inspect and drop collections."},
        {"name": "records", "description": "Insert, update, read and delete records."},
        {"name": "search", "description": "Similarity search, recommendations, re-ranking and matching."},
        {"name": "system", "description": "Health."}]


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, all in the contract's error shape."""
    return {s: {"model": S.ErrorResponse, "description": ERROR_DOCS[s]} for s in sorted({*COMMON_ERRORS, *statuses})}


class SafeJSONResponse(JSONResponse):
    """JSON as UTF-8, or ASCII with escapes when a string holds a lone surrogate: an error result
    echoes the `_id` a client sent, `"\\ud800"` included, and that must never become a 500."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")


def ok(content: Any, status: int = 200) -> JSONResponse:
    """A JSON answer without FastAPI's generic re-encoding (results are plain JSON already)."""
    return SafeJSONResponse(content, status_code=status)


def error_response(status: int, code: str, message: str, details: list | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return SafeJSONResponse({"error": body}, status_code=status, headers=headers)


# -- exception handlers -------------------------------------------------------------------
async def on_lookalike_error(request: Request, exc: LookalikeError) -> JSONResponse:
    response = error_response(exc.status, exc.code, exc.message)
    retry_after = getattr(exc, "retry_after", None)  # fetch.Busy: when a URL fetch slot should be free
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    return response


async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = list(exc.errors())
    bad_json = [p for p in problems if p.get("type") == "json_invalid"]
    if bad_json:
        reason = (bad_json[0].get("ctx") or {}).get("error", "")
        return error_response(400, "bad_request", f"request body is not valid JSON{': ' + reason if reason else ''}")
    bad_text = [p for p in problems if p.get("type") == S.INVALID_UNICODE]
    if bad_text:  # valid JSON, but a lone surrogate no store can hold: bad input, as in the Python API
        return error_response(400, "bad_request", str(bad_text[0].get("msg", "invalid Unicode")))
    details = [{"loc": [str(x) for x in p.get("loc", ())], "msg": str(p.get("msg", "")), "type": str(p.get("type", ""))}
               for p in problems]
    summary = "; ".join(f"{'.'.join(d['loc'][1:] if d['loc'][:1] == ['body'] else d['loc']) or 'body'}: {d['msg']}"
                        for d in details[:5])
    return error_response(422, "validation_error", summary or "invalid request", details)


async def on_http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    elif exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):  # FastAPI's own body parsing
        message = "request body is not valid JSON: JSON is nested too deeply"
    return error_response(exc.status_code, CODES.get(exc.status_code, "error"), message)


async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(500, "internal", f"internal error: {type(exc).__name__}")


# -- the app ------------------------------------------------------------------------------
def create_app(db: Database, *, admin_key: str | None = None, search_key: str | None = None,
               cors_origins: list[str] | tuple[str, ...] = (), max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               ingest_batch_size: int = 32, auth_failures: AuthFailures | None | bool = True,
               models_dir: str | FilePath | None = None) -> FastAPI:
    """The HTTP API over `db` (open it with `allow_file=False`: `_file` is refused over HTTP).

    `auth_failures`: the wrong-key limiter (True: 10 per minute per address and per key; False: off).
    `models_dir`: the only folder `model: "torchscript:PATH"` may name over HTTP (None: user
    models are refused), so an admin request cannot probe the server's files.
    """
    from ..version import __version__
    app = _fastapi(title="lookalike", version=__version__, openapi_tags=TAGS,
                   description="Self-hosted visual similarity search: HTTP API v1. Send "
                               "`Authorization: Bearer KEY` when the server has keys.")
    app.state.db = db
    app.state.max_body_bytes = max_body_bytes
    app.state.ingest_batch_size = ingest_batch_size
    app.state.models_dir = models_dir
    app.add_exception_handler(LookalikeError, on_lookalike_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
    app.include_router(system_routes())
    app.include_router(api_routes())
    _mount_web(app, db)
    _document_errors(app)
    limiter = AuthFailures() if auth_failures is True else auth_failures or None
    app.add_middleware(RefuseControlPaths)
    app.add_middleware(Guard, keys=Keys(admin_key or None, search_key or None), max_body_bytes=max_body_bytes,
                       auth_failures=limiter)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"], max_age=600)
    return app


class RefuseControlPaths:
    """400 for a URL path holding a control character (after percent-decoding).

    Starlette's route patterns end in `$`, which also matches before a final newline: without
    this, `GET /records/dd%0A` would answer record `dd` and `PUT /collections/nl%0A` would name a
    collection `nl`. No id or collection name can hold one (records.check_id), so none is lost.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            bad = CONTROL_CHARS.search(scope.get("path", ""))
            if bad:
                await send_error(send, 400, "bad_request", f"the URL path contains the control character "
                                 f"{bad.group()!r}: record ids and collection names cannot hold control characters")
                return
        await self.app(scope, receive, send)


def _fastapi(**kwargs: Any) -> FastAPI:
    """FastAPI whose /docs and /redoc pages use bundled assets, not a CDN (self-hosted, offline)."""
    try:
        from fastapi_offline import FastAPIOffline
    except ImportError:
        return FastAPI(**kwargs)
    return FastAPIOffline(**kwargs)


def _mount_web(app: FastAPI, db: Database) -> None:
    """The web page at `/` when `lookalike.web` provides `mount(app, db)`; else `/` shows the API docs."""
    try:
        from .. import web
        mount = getattr(web, "mount", None)
    except ImportError:
        mount = None
    if mount is not None:
        try:
            mount(app, db)
            return
        except Exception:  # a broken page must not take the API down
            log.exception("could not mount the web page; / redirects to /docs")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")


def _document_errors(app: FastAPI) -> None:
    """Every `/v1` operation (the web page's too) lists the errors the server can answer,
    all in the contract's shape (FastAPI's own 422 schema is replaced: ours is answered)."""
    generate = app.openapi
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = generate()
        for path, operations in doc.get("paths", {}).items():
            if not path.startswith("/v1/"):
                continue
            for op in operations.values():
                responses = op.setdefault("responses", {})
                for status in sorted({400, *COMMON_ERRORS}):
                    current = responses.get(str(status))
                    schema = str(((current or {}).get("content", {}).get("application/json", {})
                                  .get("schema", {})).get("$ref", ""))
                    if current is None or schema.endswith("/HTTPValidationError"):
                        responses[str(status)] = {"description": ERROR_DOCS[status], "content": ref}
        doc.get("components", {}).get("schemas", {}).pop("HTTPValidationError", None)
        doc.get("components", {}).get("schemas", {}).pop("ValidationError", None)
        return doc
    app.openapi = openapi  # type: ignore[method-assign]


def system_routes() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["system"])

    @router.get("/health", response_model=S.Health, responses=errors(), summary="Liveness, no key needed")
    async def health() -> JSONResponse:  # on the event loop: never queued behind busy worker threads
        return ok({"status": "ok"})
    return router


def _db(request: Request) -> Database:
    return request.app.state.db


def _col(request: Request, name: str) -> Collection:
    return _db(request).collection(name)


def _dump(body: Any) -> dict:
    return body.model_dump(exclude_unset=True)


def api_routes() -> APIRouter:
    bearer = HTTPBearer(auto_error=False, description="The admin key, or the search key for read routes.")
    router = APIRouter(prefix="/v1", dependencies=[Security(bearer)])
    collections_routes(router)
    records_routes(router)
    search_routes(router)
    return router


def collections_routes(router: APIRouter) -> None:
    tag = ["collections"]

    @router.get("/collections", tags=tag, response_model=S.CollectionList, responses=errors(),
                summary="List collections")
    def list_collections(request: Request) -> JSONResponse:
        return ok({"collections": _db(request).collections()})

    @router.put("/collections/{name}", tags=tag, status_code=201, response_model=S.CollectionInfo,
                responses={200: {"model": S.CollectionInfo, "description": "Already existed (settings updated)"},
                           **errors(400, 403, 409)},
                summary="Create a collection (201) or return the existing one (200)")
    def put_collection(request: Request, name: CollectionName,
                       body: S.CollectionSettingsBody | None = None) -> JSONResponse:
        settings = {k: v for k, v in (_dump(body) if body else {}).items() if v is not None}
        if "model" in settings:
            settings["model"] = confine_model(settings["model"], request.app.state.models_dir)
        col, created = _db(request).ensure_collection(name, **settings)
        return ok(col.info(), 201 if created else 200)

    @router.get("/collections/{name}", tags=tag, response_model=S.CollectionInfo, responses=errors(400),
                summary="Settings and stats of a collection")
    def get_collection(request: Request, name: CollectionName) -> JSONResponse:
        return ok(_col(request, name).info())

    @router.delete("/collections/{name}", tags=tag, response_model=S.Dropped, responses=errors(400, 403),
                   summary="Drop a collection and all its records")
    def drop_collection(request: Request, name: CollectionName) -> JSONResponse:
        db = _db(request)
        db.collection(name)  # NotFound / bad name before anything is touched
        db.drop(name)
        return ok({"name": name, "deleted": True})


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
        col = await run_in_threadpool(_col, request, name)
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
        return ok(_col(request, name).get(record_id))

    @router.delete("/collections/{name}/records/{record_id:path}", tags=tag, response_model=S.Deleted,
                   responses=errors(400, 403), summary="Delete one record (404 if it does not exist)")
    def delete_record(request: Request, name: CollectionName, record_id: RecordId) -> JSONResponse:
        col = _col(request, name)
        if col.delete([record_id]) == 0:
            raise NotFound(f"record {record_id!r} not found in collection {name!r}")
        return ok({"deleted": 1})

    @router.post("/collections/{name}/records/delete", tags=tag, response_model=S.Deleted,
                 responses=errors(400, 403), summary="Delete records by ids or by filter")
    def delete_records(request: Request, name: CollectionName, body: S.DeleteBody) -> JSONResponse:
        return ok({"deleted": _col(request, name).delete(body.ids, filter=body.filter)})


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


def search_routes(router: APIRouter) -> None:
    tag = ["search"]

    @router.post("/collections/{name}/search", tags=tag, response_model=S.SearchResponse,
                 responses=errors(400, 415, 501), summary="Records most similar to a query, best first")
    def search(request: Request, name: CollectionName, body: S.SearchBody) -> JSONResponse:
        params = _dump(body)
        return ok(_col(request, name).search(params.pop("query"), **params))

    @router.post("/collections/{name}/search/image", tags=tag, response_model=S.SearchResponse,
                 responses=errors(400, 415, 501), summary="Search by an uploaded image (multipart)")
    def search_image(request: Request, name: CollectionName,
                     image: UploadFile = File(description="The image file."),
                     params: str | None = Form(None, description="The other search parameters as JSON "
                                               "(k, filter, group_by, ...; no 'query').")
                     ) -> JSONResponse:
        options = _parse_params(params)
        data = image.file.read()
        return ok(_col(request, name).search({"image": data}, **options))

    @router.post("/collections/{name}/recommend", tags=tag, response_model=S.SearchResponse,
                 responses=errors(400, 501), summary="Items like one record, excluding its group")
    def recommend(request: Request, name: CollectionName, body: S.RecommendBody) -> JSONResponse:
        params = _dump(body)
        return ok(_col(request, name).recommend(params.pop("id"), **params))

    @router.post("/collections/{name}/rerank", tags=tag, response_model=S.RerankResponse,
                 responses=errors(400, 415, 501), summary="Sort given ids by similarity to a query")
    def rerank(request: Request, name: CollectionName, body: S.RerankBody) -> JSONResponse:
        return ok(_col(request, name).rerank(body.ids, body.query, fields=body.fields))

    @router.post("/collections/{name}/match", tags=tag, response_model=S.MatchResponse,
                 responses=errors(400, 415, 501), summary="Near-duplicates of an image")
    def match(request: Request, name: CollectionName, body: S.MatchBody) -> JSONResponse:
        params = _dump(body)
        return ok(_col(request, name).match(params.pop("query"), **params))

    @router.post("/collections/{name}/duplicates", tags=tag, response_model=S.Clusters,
                 responses=errors(400, 403, 501), summary="Clusters of records that are copies of each other")
    def duplicates(request: Request, name: CollectionName, body: S.DuplicatesBody | None = None) -> JSONResponse:
        return ok(_col(request, name).duplicates(threshold=body.threshold if body else None))


def _parse_params(params: str | None) -> dict:
    """The multipart `params` part: JSON search options, checked like the JSON route's body."""
    if params is None or not params.strip():
        return {}
    try:
        data = loads(params)
    except ValueError as exc:
        raise BadRequest(f"'params' is not valid JSON: {exc}") from None
    check_json_text(data, "'params'")
    if isinstance(data, dict) and "query" in data:
        raise BadRequest("'params' must not hold a 'query': the uploaded image is the query")
    try:
        return _dump(S.SearchOptions.model_validate(data))
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", "params", *e["loc"])}
                                      for e in exc.errors(include_url=False)]) from None
