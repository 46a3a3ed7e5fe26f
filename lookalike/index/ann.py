"""Approximate nearest neighbours from FAISS, keyed by the store's slots: HNSW or IVF.

Design notes (how it works and why): docs/index.md, "Notes: `lookalike/index/ann.py`".
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from . import faiss_lib
from .compress import PCA
from .planning import HNSW_MIN_SHARE, HNSW_SCALE_POWER, HNSW_SCALE_ROWS, IVF_CODE_COST, IVF_MIN_MATCHES
from .settings import code_bytes

#: Training points per IVF list: k-means cost grows with it (10 iterations over 30 x nlist
#: points take ~1 min for 4000 lists of 256-d on 2 cores); 30 places centroids well enough.
IVF_TRAIN_PER_LIST = 30
#: Links per centroid in the IVF coarse quantizer graph, and its beam (at least 2 x nprobe).
IVF_QUANTIZER_M = 32
IVF_QUANTIZER_EF = 128
#: The quantizer's beam when assigning added vectors to lists (one nearest list each: a
#: narrow beam suffices and keeps adding millions of vectors quick).
IVF_ADD_EF = 48


def _faiss():
    """The faiss module (index/faiss_lib.py: its interrupt check removed once)."""
    return faiss_lib.faiss()


def _qtype(faiss, dtype: str):
    return {"f16": faiss.ScalarQuantizer.QT_fp16, "i8": faiss.ScalarQuantizer.QT_8bit}[dtype]


def ivf_lists(rows: int, wanted: int | None) -> int:
    """Lists for an IVF over `rows` vectors: `wanted` (default 4 sqrt(rows)), at most what trains well."""
    target = wanted if wanted else int(round(4 * math.sqrt(max(rows, 1))))
    return max(1, min(target, rows // IVF_TRAIN_PER_LIST))


class FaissIndex:
    """A FAISS index over (optionally PCA-reduced, quantised) vectors of slots 0..ntotal-1."""

    kind = "?"

    def __init__(self, raw, dim: int, compression: dict, pca: PCA | None) -> None:
        self.raw = raw
        self.dim = dim
        self.compression = compression
        self.pca = pca
        self._ntotal = int(raw.ntotal)
        self._d = int(raw.d)
        self._swig_ptr = _faiss().swig_ptr

    @property
    def ntotal(self) -> int:
        """Rows indexed; kept here because reading FAISS's own counter through SWIG costs 0.5 us,
        and a search asks several times (rows are only ever added through `add`)."""
        return self._ntotal

    @property
    def compressed(self) -> bool:
        return self.pca is not None or self.compression["dtype"] != "f32"

    @property
    def max_width(self) -> int:
        """The widest search (efSearch or nprobe) worth trying before exact search."""
        raise NotImplementedError

    def params(self, k: int, width: int, selector):
        """FAISS search parameters for this width and selector (None: every row)."""
        raise NotImplementedError

    def add(self, vectors: np.ndarray) -> None:
        """Append rows for the next slots (callers add in slot order, nothing skipped)."""
        rows = np.ascontiguousarray(vectors, dtype=np.float32)
        self.raw.add(self.pca.records(rows) if self.pca else rows)
        self._ntotal = int(self.raw.ntotal)

    def search(self, query: np.ndarray, k: int, width: int, selector=None, params=None) -> np.ndarray:
        """Up to k slots, best first by the index's (approximate) score.

        `selector` is a FAISS `IDSelector` over slots (the caller keeps its bitmap alive);
        `params`, if given, are `self.params(k, width, selector)` made earlier (they are only
        read by FAISS, so one object may serve many searches at once).
        """
        found = self.search_many(query[None], k, width, selector, params)[0]
        return found[found >= 0]

    def search_many(self, queries: np.ndarray, k: int, width: int, selector=None, params=None) -> np.ndarray:
        """Slots of the k best (by the index's score) per query row, -1 where fewer were found:
        one FAISS call for the batch (its threads share the queries). FAISS's own `search`
        wrapper is bypassed (its checks and SWIG reads cost microseconds per call); the
        width of the rows is checked here, as FAISS reads them through a raw pointer."""
        # row by row, as a single query is projected (a matrix product may round otherwise)
        q = np.stack([self.pca.query(v) for v in queries]) if self.pca else queries
        q = np.ascontiguousarray(q, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self._d:
            raise ValueError(f"queries of shape {q.shape} for an index of {self._d}-d rows")
        if params is None:
            params = self.params(k, width, selector)
        distances = np.empty((len(q), k), dtype=np.float32)
        labels = np.empty((len(q), k), dtype=np.int64)
        ptr = self._swig_ptr
        self.raw.search_c(len(q), ptr(q), k, ptr(distances), ptr(labels), params)
        return labels

    def memory_bytes(self) -> int:
        raise NotImplementedError

    def stale(self, rows: int) -> bool:
        """Whether the structure no longer suits `rows` vectors and should be rebuilt."""
        return False

    def info(self) -> dict:
        return {}

    # -- files ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        """Write atomically: a temporary file, fsync, rename."""
        faiss = _faiss()
        tmp = path.with_name(path.name + ".tmp")
        faiss.write_index(self.raw, str(tmp))
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)


class HnswIndex(FaissIndex):
    """A FAISS HNSW graph; ids are slots."""

    kind = "hnsw"
    #: Widest beam tried before falling back to exact search.
    EF_MAX = 4096

    @classmethod
    def create(cls, dim: int, index: dict, compression: dict, sample: np.ndarray, rows: int = 0) -> "HnswIndex":
        """An empty graph; `sample` (stored vectors) fits the PCA and the int8 ranges."""
        faiss = _faiss()
        pca = PCA.fit(sample, compression["pca_dim"]) if compression["pca_dim"] else None
        width = pca.dim if pca else dim
        m = index["connectivity"]
        if compression["dtype"] == "f32":
            raw = faiss.IndexHNSWFlat(width, m, faiss.METRIC_INNER_PRODUCT)
        else:
            raw = faiss.IndexHNSWSQ(width, _qtype(faiss, compression["dtype"]), m, faiss.METRIC_INNER_PRODUCT)
            train = pca.records(sample) if pca else np.ascontiguousarray(sample, dtype=np.float32)
            raw.train(train)  # per-dimension value ranges for int8
        raw.hnsw.efConstruction = index["expansion_add"]
        return cls(raw, dim, compression, pca)

    @property
    def max_width(self) -> int:
        return self.EF_MAX

    @classmethod
    def sample_rows(cls, rows: int, index: dict) -> int:
        """Rows to train on: 100k for the PCA and int8 ranges."""
        return 100_000

    def base_width(self, index: dict) -> int:
        """`expansion_search`, grown for graphs past HNSW_SCALE_ROWS nodes (bigger graphs need a
        wider beam for the same recall)."""
        wide = index["expansion_search"]
        if self.ntotal > HNSW_SCALE_ROWS:
            wide = int(wide * (self.ntotal / HNSW_SCALE_ROWS) ** HNSW_SCALE_POWER)
        return wide

    def fit_width(self, wide: int, in_count: int, pool: int) -> int:
        """A beam at least as wide as the candidates asked for."""
        return max(wide, pool)

    def worth(self, matching: int, wide: int) -> bool:
        """A filter keeping under HNSW_MIN_SHARE of the graph leaves too few matches in the beam."""
        return not matching < self.ntotal * HNSW_MIN_SHARE

    def params(self, k: int, width: int, selector):
        params = _faiss().SearchParametersHNSW()
        params.efSearch = max(width, k)
        if selector is not None:
            params.sel = selector
        return params

    def memory_bytes(self) -> int:
        """Codes plus graph links, as held in memory."""
        neighbors = self.raw.hnsw.neighbors
        links = int(neighbors.size()) * 4 if hasattr(neighbors, "size") else 0
        return self.ntotal * code_bytes(self.dim, self.compression) + links

    @classmethod
    def load(cls, path: Path, dim: int, compression: dict, pca: PCA | None, index: dict) -> "HnswIndex":
        """Memory-map a saved graph (pages load lazily; FAISS copies on the first add)."""
        faiss = _faiss()
        return cls(faiss.read_index(str(path), faiss.IO_FLAG_MMAP), dim, compression, pca)


class IvfIndex(FaissIndex):
    """A FAISS inverted-file index with scalar-quantised codes; ids are slots."""

    kind = "ivf"

    def __init__(self, raw, dim: int, compression: dict, pca: PCA | None, wanted_lists: int | None) -> None:
        super().__init__(raw, dim, compression, pca)
        self.wanted_lists = wanted_lists
        faiss = _faiss()
        self._ivf = faiss.extract_index_ivf(raw)
        quantizer = faiss.downcast_index(self._ivf.quantizer)
        if hasattr(quantizer, "hnsw"):
            quantizer.hnsw.efSearch = IVF_ADD_EF  # for adds; searches pass their own beam

    @classmethod
    def create(cls, dim: int, index: dict, compression: dict, sample: np.ndarray, rows: int = 0) -> "IvfIndex":
        """An IVF trained on `sample` (k-means centroids, int8 ranges, PCA), sized for `rows`."""
        faiss = _faiss()
        pca = PCA.fit(sample, compression["pca_dim"]) if compression["pca_dim"] else None
        width = pca.dim if pca else dim
        nlist = ivf_lists(max(rows, len(sample)), index["nlist"])
        quantizer = faiss.IndexHNSWFlat(width, IVF_QUANTIZER_M, faiss.METRIC_INNER_PRODUCT)
        if compression["dtype"] == "f32":
            raw = faiss.IndexIVFFlat(quantizer, width, nlist, faiss.METRIC_INNER_PRODUCT)
        else:
            raw = faiss.IndexIVFScalarQuantizer(quantizer, width, nlist, _qtype(faiss, compression["dtype"]),
                                                faiss.METRIC_INNER_PRODUCT)
        train = pca.records(sample) if pca else np.ascontiguousarray(sample, dtype=np.float32)
        raw.cp.seed = 1234
        raw.cp.min_points_per_centroid = IVF_TRAIN_PER_LIST // 2  # our sample is deliberate: no warning
        clustering = faiss.IndexFlatIP(width)
        raw.clustering_index = clustering
        raw.train(train)  # k-means centroids (then put in the quantizer graph), int8 ranges
        raw.clustering_index = None  # only needed while training; not saved
        return cls(raw, dim, compression, pca, index["nlist"])

    @property
    def nlist(self) -> int:
        return int(self._ivf.nlist)

    @property
    def max_width(self) -> int:
        return self.nlist

    def params(self, k: int, width: int, selector):
        faiss = _faiss()
        params = faiss.SearchParametersIVF()
        params.nprobe = max(1, min(width, self.nlist))
        quantizer = faiss.SearchParametersHNSW()
        quantizer.efSearch = max(IVF_QUANTIZER_EF, 2 * params.nprobe)
        params.quantizer_params = quantizer
        if selector is not None:
            params.sel = selector
        params._keep = quantizer  # the SWIG struct holds a raw pointer to it
        return params

    def memory_bytes(self) -> int:
        """Codes and ids in the lists, plus the centroids and their small graph."""
        quantizer = self._ivf.quantizer
        centroids = self.nlist * self._ivf.d * 4 + self.nlist * IVF_QUANTIZER_M * 2 * 4
        return self.ntotal * (self._ivf.code_size + 8) + (centroids if quantizer is not None else 0)

    @classmethod
    def sample_rows(cls, rows: int, index: dict) -> int:
        """Rows to train on: 100k for the PCA and int8 ranges; k-means wants IVF_TRAIN_PER_LIST a list."""
        return max(100_000, IVF_TRAIN_PER_LIST * ivf_lists(rows, index["nlist"]))

    def base_width(self, index: dict) -> int:
        return index["nprobe"]

    def fit_width(self, wide: int, in_count: int, pool: int) -> int:
        """Lists enough that IVF_MIN_MATCHES matching codes are scanned (lists hold ntotal/nlist codes)."""
        return max(wide, -(-IVF_MIN_MATCHES * self.nlist // in_count)) if in_count > 0 else wide

    def worth(self, matching: int, wide: int) -> bool:
        """Not for a filter whose lists would hold over 1/IVF_CODE_COST codes per match."""
        if 0 < matching < self.ntotal:
            return wide * self.ntotal / self.nlist * IVF_CODE_COST <= matching
        return True

    def stale(self, rows: int) -> bool:
        """Rebuild once the collection deserves twice as many lists (it grew 4x, or was small)."""
        return ivf_lists(rows, self.wanted_lists) >= 2 * self.nlist

    def info(self) -> dict:
        return {"lists": self.nlist}

    @classmethod
    def load(cls, path: Path, dim: int, compression: dict, pca: PCA | None, index: dict) -> "IvfIndex":
        """Read a saved IVF into memory (lists grow on add, so it is not memory-mapped)."""
        return cls(_faiss().read_index(str(path)), dim, compression, pca, index["nlist"])


KINDS = {"hnsw": HnswIndex, "ivf": IvfIndex}
