"""The default store: one data folder, SQLite (WAL) for records, memory-mapped vector files.

Layout, durability and locking: docs/storage.md ("Notes: `lookalike/store/embedded/`").
"""
from .collection import EmbeddedCollection, indexed_view
from .store import EmbeddedStore

__all__ = ["EmbeddedCollection", "EmbeddedStore", "indexed_view"]
