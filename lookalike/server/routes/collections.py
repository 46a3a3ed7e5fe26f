"""Routes of collections: list, create or update, inspect, drop, compact, tune."""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...models.registry import confine_model
from .. import schemas as S
from ..errors import errors, ok
from .common import CollectionName, collection_of, db_of, dump


def collections_routes(router: APIRouter) -> None:
    tag = ["collections"]

    @router.get("/collections", tags=tag, response_model=S.CollectionList, responses=errors(),
                summary="List collections")
    def list_collections(request: Request) -> JSONResponse:
        return ok({"collections": db_of(request).collections()})

    @router.put("/collections/{name}", tags=tag, status_code=201, response_model=S.CollectionInfo,
                responses={200: {"model": S.CollectionInfo, "description": "Already existed (settings updated)"},
                           **errors(400, 403, 409)},
                summary="Create a collection (201) or return the existing one (200)")
    def put_collection(request: Request, name: CollectionName,
                       body: S.CollectionSettingsBody | None = None) -> JSONResponse:
        settings = {k: v for k, v in (dump(body) if body else {}).items() if v is not None}
        if "model" in settings:
            settings["model"] = confine_model(settings["model"], request.app.state.models_dir)
        col, created = db_of(request).ensure_collection(name, **settings)
        return ok(col.info(), 201 if created else 200)

    @router.get("/collections/{name}", tags=tag, response_model=S.CollectionInfo, responses=errors(400),
                summary="Settings and stats of a collection")
    def get_collection(request: Request, name: CollectionName) -> JSONResponse:
        return ok(collection_of(request, name).info())

    @router.delete("/collections/{name}", tags=tag, response_model=S.Dropped, responses=errors(400, 403),
                   summary="Drop a collection and all its records")
    def drop_collection(request: Request, name: CollectionName) -> JSONResponse:
        db = db_of(request)
        db.collection(name)  # NotFound / bad name before anything is touched
        db.drop(name)
        return ok({"name": name, "deleted": True})

    @router.post("/collections/{name}/compact", tags=tag, response_model=S.Compacted, responses=errors(400, 403, 501),
                 summary="Reclaim the rows of deleted and replaced records (admin key)")
    def compact(request: Request, name: CollectionName) -> JSONResponse:
        return ok(collection_of(request, name).compact())

    @router.post("/collections/{name}/tune", tags=tag, response_model=S.Tuned, responses=errors(400, 403, 501),
                 summary="Learn from a field's values which records are alike (admin key)")
    def tune(request: Request, name: CollectionName, body: S.TuneBody) -> JSONResponse:
        return ok(collection_of(request, name).tune(field=body.field, groups=body.groups, reset=body.reset))
