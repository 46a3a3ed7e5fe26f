"""Ingest: the upsert pipeline (`pipeline.Ingestor`), image decoding and thumbnails (`decode`),
reading files and URLs (`fetch`, `filecache`) and the Ray pipeline for clusters (`ray`)."""
from .pipeline import Ingestor

__all__ = ["Ingestor"]
