"""Stores: the interface and the backends (embedded by default; external by URL)."""
from __future__ import annotations

from .base import CollectionSettings, CollectionStore, Hit, SearchRequest, Store, StoredRecord
from .embedded import EmbeddedStore


def open_store(location: str, *, read_only: bool = False) -> Store:
    """A store for a folder path, or for an external backend's URL (`milvus://host:port`).

    A folder is opened for writing (one process at a time: store/lock.py) unless `read_only`;
    external backends coordinate writers themselves and ignore it."""
    if location.startswith("milvus://") or location.endswith(".db"):
        from .milvus import MilvusStore  # optional dependency
        return MilvusStore(location)
    return EmbeddedStore(location, read_only=read_only)


__all__ = ["CollectionSettings", "CollectionStore", "EmbeddedStore", "Hit", "SearchRequest", "Store",
           "StoredRecord", "open_store"]
