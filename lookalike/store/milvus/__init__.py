"""The Milvus store (optional: `pip install 'lookalike[milvus]'`): the same collections, records
and search kept in a Milvus server or a Milvus Lite file. Layout and search: docs/milvus.md."""
from .collection import MilvusCollection
from .names import MAX_WINDOW, milvus_name, text_collection_name
from .store import MilvusStore, parse_location

__all__ = ["MAX_WINDOW", "MilvusCollection", "MilvusStore", "milvus_name", "parse_location", "text_collection_name"]
