"""What every route module shares: path parameters and the database of the app."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Request

from ...collection import Collection, Database

CollectionName = Annotated[str, Path(description="The collection: 1-64 of a-z, 0-9, '_' and '-', starting with "
                                                 "a letter or digit.", examples=["products"])]
RecordId = Annotated[str, Path(description="A record's `_id`, URL-encoded (it may contain '/').", examples=["sku-1"])]


def db_of(request: Request) -> Database:
    """The Database the app serves."""
    return request.app.state.db


def collection_of(request: Request, name: str) -> Collection:
    """The named collection of the app's Database (NotFound / BadRequest for a bad name)."""
    return db_of(request).collection(name)


def dump(body: Any) -> dict:
    """A request body model as the keyword arguments the client gave."""
    return body.model_dump(exclude_unset=True)
