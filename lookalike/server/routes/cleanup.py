"""Routes of the duplicate clean-up: the report with suggested keepers, tagging, resolving a cluster."""
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from .. import schemas as S
from ..errors import errors, ok
from .common import CollectionName, collection_of


def cleanup_routes(router: APIRouter) -> None:
    tag = ["duplicates"]

    @router.get("/collections/{name}/duplicates/report", tags=tag, response_model=S.DuplicatesReport,
                responses=errors(400, 501), summary="Copy clusters with a suggested keeper each")
    def report(request: Request, name: CollectionName,
               threshold: float | None = Query(None, description="Similarity above which two records are copies.")
               ) -> JSONResponse:
        return ok(collection_of(request, name).duplicates_report(threshold))

    @router.post("/collections/{name}/records/tag", tags=tag, response_model=S.Tagged,
                 responses=errors(400, 403), summary="Set metadata fields on records without re-embedding")
    def tag_records(request: Request, name: CollectionName, body: S.TagBody) -> JSONResponse:
        return ok(collection_of(request, name).tag(body.ids, body.fields))

    @router.post("/collections/{name}/duplicates/resolve", tags=tag, response_model=S.Resolved,
                 responses=errors(400, 403), summary="Keep one record of a cluster, delete or tag the others")
    def resolve(request: Request, name: CollectionName, body: S.ResolveBody) -> JSONResponse:
        return ok(collection_of(request, name).resolve(body.keep, body.others, body.action, body.fields))
