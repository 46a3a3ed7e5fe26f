"""Routes of searches: search (JSON or an uploaded image), recommend, rerank, match, duplicates."""
from typing import Any, Callable

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from ...errors import BadRequest
from ...query.modifiers import MODIFIERS
from ...records import check_json_text
from .. import schemas as S
from ..errors import errors, ok
from ..ndjson import loads
from .common import CollectionName, collection_of, dump


def search_routes(router: APIRouter) -> None:
    tag = ["search"]

    _query_route(router, "search", S.SearchBody, S.SearchRegionsResponse, "Records most similar to a query, best first")

    @router.post("/collections/{name}/search/image", tags=tag, response_model=S.SearchRegionsResponse,
                 responses=errors(400, 415, 501), summary="Search by an uploaded image (multipart)")
    def search_image(request: Request, name: CollectionName,
                     image: UploadFile = File(description="The image file."),
                     params: str | None = Form(None, description="The other search parameters as JSON "
                                               "(k, filter, group_by, ...; no 'query').")
                     ) -> JSONResponse:
        options = _parse_params(params)
        query = {"image": image.file.read(), **options.pop("modifiers")}
        return ok(collection_of(request, name).search(query, **options))

    @router.post("/collections/{name}/recommend", tags=tag, response_model=S.SearchResponse,
                 responses=errors(400, 501), summary="Items like one record, excluding its group")
    def recommend(request: Request, name: CollectionName, body: S.RecommendBody) -> JSONResponse:
        return _call(collection_of(request, name).recommend, body, "id")

    @router.post("/collections/{name}/rerank", tags=tag, response_model=S.RerankResponse,
                 responses=errors(400, 415, 501), summary="Sort given ids by similarity to a query")
    def rerank(request: Request, name: CollectionName, body: S.RerankBody) -> JSONResponse:
        return ok(collection_of(request, name).rerank(body.ids, body.query, fields=body.fields,
                                                      min_score=body.min_score))

    _query_route(router, "match", S.MatchBody, S.MatchResponse, "Near-duplicates of an image")

    @router.post("/collections/{name}/duplicates", tags=tag, response_model=S.Clusters,
                 responses=errors(400, 403, 501), summary="Clusters of records that are copies of each other")
    def duplicates(request: Request, name: CollectionName, body: S.DuplicatesBody | None = None) -> JSONResponse:
        return ok(collection_of(request, name).duplicates(threshold=body.threshold if body else None))


def _query_route(router: APIRouter, method: str, body_model: type, response_model: type, summary: str) -> None:
    """POST /collections/{name}/METHOD with a body holding a `query`: the Collection method of that name.
    (This module has no postponed annotations: the body's model is read from the signature.)"""

    @router.post(f"/collections/{{name}}/{method}", tags=["search"], response_model=response_model,
                 responses=errors(400, 415, 501), summary=summary, name=method)
    def endpoint(request: Request, name: CollectionName, body: body_model) -> JSONResponse:  # type: ignore[valid-type]
        return _call(getattr(collection_of(request, name), method), body, "query")


def _call(method: Callable[..., dict], body: Any, first: str) -> JSONResponse:
    """`method(body[first], **the rest of the body)`: the Collection method a route stands for."""
    params = dump(body)
    return ok(method(params.pop(first), **params))


def _parse_params(params: str | None) -> dict:
    """The multipart `params` part: JSON search options, checked like the JSON route's body."""
    if params is None or not params.strip():
        return {"modifiers": {}}
    try:
        data = loads(params)
    except ValueError as exc:
        raise BadRequest(f"'params' is not valid JSON: {exc}") from None
    check_json_text(data, "'params'")
    if isinstance(data, dict) and "query" in data:
        raise BadRequest("'params' must not hold a 'query': the uploaded image is the query")
    modifiers = {key: data.pop(key) for key in MODIFIERS if isinstance(data, dict) and key in data}
    try:
        return {**dump(S.SearchOptions.model_validate(data)), "modifiers": modifiers}
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", "params", *e["loc"])}
                                      for e in exc.errors(include_url=False)]) from None
