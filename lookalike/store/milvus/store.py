"""The Milvus store: collections kept in a Milvus server or a Milvus Lite file (docs/milvus.md)."""
from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import unquote, urlparse

from ...errors import BadRequest, Conflict, LookalikeError, NotFound
from ..base import CollectionSettings, Store, check_collection_name
from .collection import MILVUS_CAPABILITIES, MilvusCollection
from .filters import COLUMN
from .names import (FIELDS, MAX_WINDOW, SETTINGS_COLLECTION, map_collection_name, milvus_name, raw_collection_name,
                    text_collection_name)
from .tuning import load_map, map_pending, prune_maps, store_map
from .version import check_server_version


def _import_pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise LookalikeError("the Milvus store needs pymilvus: pip install 'lookalike[milvus]'") from None
    return pymilvus


def parse_location(location: str) -> dict:
    """MilvusClient arguments for `milvus://[user:password@]host[:port][/db]` or a Milvus Lite `*.db` path."""
    if not location.startswith("milvus://"):
        return {"uri": os.path.abspath(location)}
    url = urlparse(location)
    if not url.hostname:
        raise BadRequest(f"invalid Milvus URL {location!r}: use milvus://host:19530")
    try:
        port = url.port or 19530
    except ValueError:
        raise BadRequest(f"invalid port in Milvus URL {location!r}") from None
    args: dict[str, Any] = {"uri": f"http://{url.hostname}:{port}"}
    token = os.environ.get("LOOKALIKE_MILVUS_TOKEN")
    if url.username:
        token = f"{unquote(url.username)}:{unquote(url.password or '')}"
    if token:
        args["token"] = token
    if url.path.strip("/"):
        args["db_name"] = url.path.strip("/")
    return args


class MilvusStore(Store):
    """Collections in a Milvus server (`milvus://host:port`) or a Milvus Lite file (`./file.db`)."""

    capabilities = MILVUS_CAPABILITIES
    backend = "Milvus"

    def __init__(self, location: str) -> None:
        pymilvus = _import_pymilvus()
        self.location = location
        self._exc = pymilvus.MilvusException
        self._types = pymilvus.DataType
        args = parse_location(location)
        try:
            self.client = pymilvus.MilvusClient(**args, timeout=30)
        except self._exc as exc:
            raise LookalikeError(f"cannot connect to Milvus at {location}: {exc.message}") from None
        except Exception as exc:  # grpc/connection errors come in several types
            raise LookalikeError(f"cannot connect to Milvus at {location}: {exc}") from None
        #: The server's version string (`v2.3.5-lite`, `milvus_lite-3.2.2`).
        self.server_version = str(self.call(self.client.get_server_version))
        try:
            check_server_version(self.server_version, location)
        except LookalikeError:
            self.close()
            raise
        self._loaded: set[str] = set()
        self._text_dims: dict[str, int] = {}  # text collection name -> width of its vectors
        self._writes: dict[str, int] = {}  # collection name -> writes and deletes through this process
        self._ensure_settings_collection()

    def call(self, fn, *args: Any, **kwargs: Any) -> Any:
        """Run a client call; Milvus errors become LookalikeErrors with Milvus's message."""
        try:
            return fn(*args, **kwargs)
        except self._exc as exc:
            raise LookalikeError(f"Milvus error: {exc.message}") from None

    # -- settings ------------------------------------------------------------------------
    def _ensure_settings_collection(self) -> None:
        if self.call(self.client.has_collection, SETTINGS_COLLECTION):
            self._load(SETTINGS_COLLECTION)
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", self._types.VARCHAR, is_primary=True, max_length=128)
        schema.add_field("settings", self._types.VARCHAR, max_length=65_535)
        schema.add_field("vector", self._types.FLOAT_VECTOR, dim=2)  # Milvus needs one vector field
        self._create(SETTINGS_COLLECTION, schema, "vector")

    def _create(self, mname: str, schema: Any, vector_field: str) -> None:
        index = self.client.prepare_index_params()
        index.add_index(vector_field, index_type="FLAT", metric_type="IP")
        try:
            self.client.create_collection(mname, schema=schema, index_params=index, consistency_level="Strong")
        except self._exc:
            if not self.call(self.client.has_collection, mname):  # not a concurrent create: a real error
                raise
        self._load(mname)

    def _load(self, mname: str) -> None:
        """Milvus serves only loaded collections; a reopened file or restarted server starts released."""
        if mname in self._loaded:
            return
        state = self.call(self.client.get_load_state, mname)
        if "Loaded" not in str(state.get("state")):
            self.call(self.client.load_collection, mname)
        self._loaded.add(mname)

    def _settings_row(self, name: str) -> CollectionSettings | None:
        rows = self.call(self.client.get, SETTINGS_COLLECTION, ids=[name], output_fields=["settings"])
        return self._settings_of(rows[0]["settings"]) if rows else None

    def _settings_of(self, text: str) -> CollectionSettings:
        """Settings as the row keeps them: a tuned collection's learned map stays in its own
        collection (named by digest, milvus/tuning.py) until the collection first needs it
        (`MilvusCollection.settings`), so listing collections reads no map."""
        return CollectionSettings.from_dict(json.loads(text))

    def full_settings(self, settings: CollectionSettings) -> CollectionSettings:
        """`settings` with the learned map read back into `tuning` (the same object when untuned)."""
        if not map_pending(settings.tuning):
            return settings
        return CollectionSettings.from_dict({**settings.to_dict(),
                                             "tuning": load_map(self, settings.name, settings.tuning)})

    def _save_settings(self, settings: CollectionSettings) -> None:
        data = settings.to_dict()
        data["tuning"] = store_map(self, settings.name, data.get("tuning") or {})
        text = json.dumps(data)
        if len(text.encode()) > 65_535:
            raise BadRequest(f"the settings of collection {settings.name!r} are {len(text.encode())} bytes of JSON, "
                             "over the 65535 Milvus keeps in one row")
        self.call(self.client.upsert, SETTINGS_COLLECTION, [{"name": settings.name, "settings": text,
                                                            "vector": [1.0, 0.0]}])
        prune_maps(self, settings.name, data["tuning"])

    def writes(self, name: str) -> int:
        """How many writes and deletes of a collection went through this process (scans made
        before the last one are not reused)."""
        return self._writes.get(name, 0)

    def wrote(self, name: str) -> None:
        self._writes[name] = self._writes.get(name, 0) + 1

    # -- text vectors --------------------------------------------------------------------
    def text_dim(self, name: str) -> int | None:
        """Width of the text vectors kept for a collection; None while it has none."""
        tname = text_collection_name(name)
        dim = self._text_dims.get(tname)
        if dim is None and self.call(self.client.has_collection, tname):
            info = self.call(self.client.describe_collection, tname)
            dim = next(int(f["params"]["dim"]) for f in info["fields"] if f["name"] == "vector")
            self._load(tname)
            self._text_dims[tname] = dim
        return dim

    def text_collection(self, name: str, dim: int) -> str:
        """The Milvus collection of a collection's text vectors, created (with `dim`) if missing."""
        tname = text_collection_name(name)
        if self.text_dim(name) is None:
            self._create_side(tname, dim)
            self._text_dims.pop(tname, None)
            if self.text_dim(name) != dim:  # created concurrently with another width
                raise Conflict(f"collection {name!r} already keeps {self.text_dim(name)}-d text vectors, not {dim}")
        return tname

    def raw_collection(self, name: str, dim: int) -> str:
        """The Milvus collection of a tuned collection's raw model vectors, created if missing."""
        return self.side_collection(raw_collection_name(name), dim)

    def side_collection(self, mname: str, dim: int) -> str:
        """An `(id, vector)` Milvus collection beside a main one, loaded, created if missing."""
        if mname not in self._loaded:
            if self.call(self.client.has_collection, mname):
                self._load(mname)
            else:
                self._create_side(mname, dim)
        return mname

    def _create_side(self, mname: str, dim: int) -> None:
        """An `(id, vector)` collection beside a main one (text vectors, raw vectors)."""
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", self._types.VARCHAR, is_primary=True, max_length=1024)
        schema.add_field("vector", self._types.FLOAT_VECTOR, dim=dim)
        self._create(mname, schema, "vector")

    def drop_side(self, mname: str) -> None:
        if self.call(self.client.has_collection, mname):
            self.call(self.client.drop_collection, mname)
        self._loaded.discard(mname)

    def drop_raw(self, name: str) -> None:
        """Forget a collection's raw vectors (after a reset: the main field holds them again)."""
        self.drop_side(raw_collection_name(name))

    def _drop_text(self, name: str) -> None:
        tname = text_collection_name(name)
        self.drop_side(tname)
        self._text_dims.pop(tname, None)

    # -- collections ---------------------------------------------------------------------
    def list_collections(self) -> list[CollectionSettings]:
        """Every collection's settings, a tuned one's map not read (`tuning.transform` names its digest)."""
        rows = self.call(self.client.query, SETTINGS_COLLECTION, filter='name != ""', output_fields=["settings"],
                         limit=MAX_WINDOW)
        found = [self._settings_of(r["settings"]) for r in rows]
        return sorted(found, key=lambda s: s.name)

    def create_collection(self, settings: CollectionSettings) -> MilvusCollection:
        check_collection_name(settings.name)
        self.settle_dim(settings)
        if self._settings_row(settings.name) is not None:
            raise Conflict(f"collection {settings.name!r} already exists")
        mname = milvus_name(settings.name)
        if self.call(self.client.has_collection, mname):  # left over from an interrupted create or drop
            self.call(self.client.drop_collection, mname)
            self._loaded.discard(mname)
        self._drop_text(settings.name)
        self.drop_raw(settings.name)
        self.drop_side(map_collection_name(settings.name))
        t = self._types
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", t.VARCHAR, is_primary=True, max_length=1024)
        schema.add_field("vector", t.FLOAT_VECTOR, dim=settings.dim)
        for name in (*FIELDS, COLUMN):
            schema.add_field(name, t.JSON)
        schema.add_field("content_hash", t.VARCHAR, max_length=64)
        schema.add_field("source_hash", t.VARCHAR, max_length=64)
        schema.add_field("updated", t.DOUBLE)
        self._create(mname, schema, "vector")
        self._save_settings(settings)
        return MilvusCollection(self, settings)

    def collection(self, name: str) -> MilvusCollection:
        settings = self._settings_row(name) if isinstance(name, str) else None
        if settings is None:
            raise NotFound(f"collection {name!r} not found")
        self._load(milvus_name(name))
        return MilvusCollection(self, settings)

    def drop_collection(self, name: str) -> None:
        self.collection(name)
        self.call(self.client.delete, SETTINGS_COLLECTION, ids=[name])
        self.call(self.client.drop_collection, milvus_name(name))
        self._loaded.discard(milvus_name(name))
        self._drop_text(name)
        self.drop_raw(name)
        self.drop_side(map_collection_name(name))

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing twice or after the server went away is harmless
            pass
