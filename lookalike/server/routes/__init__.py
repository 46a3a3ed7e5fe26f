"""The /v1 routes, one module per resource; the key checks are the Guard middleware's."""
from __future__ import annotations

from fastapi import APIRouter, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer

from .. import schemas as S
from ..errors import errors, ok
from ..fastjson import FastJSONRoute
from .browse import browse_routes
from .cleanup import cleanup_routes
from .collections import collections_routes
from .records import records_routes
from .search import search_routes


def system_routes() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["system"])

    @router.get("/health", response_model=S.Health, responses=errors(), summary="Liveness, no key needed")
    async def health() -> JSONResponse:  # on the event loop: never queued behind busy worker threads
        return ok({"status": "ok"})
    return router


def api_routes() -> APIRouter:
    """Every keyed route. The browse routes come before the records routes: GET
    .../records/{id:path} would otherwise take .../records/{id}/thumbnail."""
    bearer = HTTPBearer(auto_error=False, description="The admin key, or the search key for read routes.")
    router = APIRouter(prefix="/v1", dependencies=[Security(bearer)], route_class=FastJSONRoute)
    collections_routes(router)
    browse_routes(router)
    records_routes(router)
    search_routes(router)
    cleanup_routes(router)
    return router
