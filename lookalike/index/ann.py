"""Approximate nearest neighbours: an HNSW graph from FAISS, keyed by the store's slots.

Why FAISS (measured with `bench/ann_libs.py`, 100k x 256-d, same M/ef everywhere, see
docs/index.md): recall and unfiltered latency were a tie between FAISS, usearch and hnswlib,
but only FAISS filters *inside* the graph walk in native code (`IDSelectorBitmap`), which is
what keeps filtered search both fast and complete; hnswlib's filter is a Python callback
run for every visited node (5x slower at 10 %), usearch's Python API has no filter at all
(we must oversample and widen). FAISS also brings int8/half-precision storage (scalar
quantiser) and memory-mapped loading, and numbers its vectors 0..n-1 in insertion order,
which is exactly the store's slot numbering, so no id map is needed.

Deletes and updates never touch the graph: an update writes a new slot and the old one
dies; every search passes the live-slot bitmap as the FAISS selector, so dead slots can
never come back. Compaction (which renumbers slots) rebuilds the graph.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .compress import PCA
from .settings import code_bytes


def _faiss():
    import faiss  # optional dependency (the `ann` extra); exact search works without it
    return faiss


class HnswIndex:
    """A FAISS HNSW graph over (optionally PCA-reduced, quantised) vectors of slots 0..ntotal-1."""

    def __init__(self, raw, dim: int, compression: dict, pca: PCA | None) -> None:
        self.raw = raw
        self.dim = dim
        self.compression = compression
        self.pca = pca

    @classmethod
    def create(cls, dim: int, index: dict, compression: dict, sample: np.ndarray) -> "HnswIndex":
        """An empty graph; `sample` (stored vectors) fits the PCA and the int8 ranges."""
        faiss = _faiss()
        pca = PCA.fit(sample, compression["pca_dim"]) if compression["pca_dim"] else None
        width = pca.dim if pca else dim
        m = index["connectivity"]
        if compression["dtype"] == "f32":
            raw = faiss.IndexHNSWFlat(width, m, faiss.METRIC_INNER_PRODUCT)
        else:
            qtype = {"f16": faiss.ScalarQuantizer.QT_fp16, "i8": faiss.ScalarQuantizer.QT_8bit}[compression["dtype"]]
            raw = faiss.IndexHNSWSQ(width, qtype, m, faiss.METRIC_INNER_PRODUCT)
            train = pca.records(sample) if pca else np.ascontiguousarray(sample, dtype=np.float32)
            raw.train(train)  # per-dimension value ranges for int8
        raw.hnsw.efConstruction = index["expansion_add"]
        return cls(raw, dim, compression, pca)

    @property
    def ntotal(self) -> int:
        return int(self.raw.ntotal)

    @property
    def compressed(self) -> bool:
        return self.pca is not None or self.compression["dtype"] != "f32"

    def add(self, vectors: np.ndarray) -> None:
        """Append rows for the next slots (callers add in slot order, nothing skipped)."""
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        self.raw.add(self.pca.records(rows) if self.pca else rows)

    def search(self, query: np.ndarray, k: int, ef: int, allowed: np.ndarray | None) -> np.ndarray:
        """Up to k slots, best first by the index's (approximate) score; `allowed` filters in-walk."""
        faiss = _faiss()
        q = self.pca.query(query) if self.pca else np.ascontiguousarray(query, dtype=np.float32)
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(ef, k)
        bits = None
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")  # kept alive: FAISS holds a raw pointer
            params.sel = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        _, ids = self.raw.search(q[None], k, params=params)
        del bits
        found = ids[0]
        return found[found >= 0]

    def memory_bytes(self) -> int:
        """Codes plus graph links, as held in memory."""
        per_link = 4
        links = int(self.raw.hnsw.neighbors.size()) * per_link if hasattr(self.raw.hnsw.neighbors, "size") else 0
        return self.ntotal * code_bytes(self.dim, self.compression) + links

    # -- files ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write atomically: a temporary file, fsync, rename."""
        faiss = _faiss()
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.raw, str(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, dim: int, index: dict, compression: dict, pca: PCA | None) -> "HnswIndex":
        """Memory-map a saved graph (pages load lazily; FAISS copies on the first add)."""
        faiss = _faiss()
        raw = faiss.read_index(str(path), faiss.IO_FLAG_MMAP)
        return cls(raw, dim, compression, pca)
