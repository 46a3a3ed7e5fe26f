"""The server's answers: the contract's error body for every failure, and JSON responses."""
from __future__ import annotations

import json
import logging
from typing import Any

import orjson

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LookalikeError
from . import schemas as S

log = logging.getLogger("lookalike.server")

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
def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for error statuses, all in the contract's error shape."""
    return {s: {"model": S.ErrorResponse, "description": ERROR_DOCS[s]} for s in sorted({*COMMON_ERRORS, *statuses})}


class SafeJSONResponse(JSONResponse):
    """JSON as UTF-8, or ASCII with escapes when a string holds a lone surrogate: an error result
    echoes the `_id` a client sent, `"\\ud800"` included, and that must never become a 500.

    Encoded by orjson (a search response in a tenth of `json.dumps`'s time), except where
    orjson would write something else than the standard encoder: it writes NaN and infinity
    as `null` where `json.dumps(allow_nan=False)` refuses them, and it refuses lone
    surrogates, integers past 64 bits and non-string keys. So a body holding `null` (rare in
    results), or one orjson refuses, is encoded as before: the same JSON value, or the same error.
    """

    def render(self, content: Any) -> bytes:
        try:
            body = orjson.dumps(content)
        except (TypeError, orjson.JSONEncodeError):
            body = None
        if body is not None and b"null" not in body:
            return body
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
