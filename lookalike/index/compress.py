"""Vector compression for the ANN index: PCA fitted on the collection, stored beside the index.

The index keeps `components @ (x - mean)` for every stored vector and is queried with
`components @ q`: for a fixed query the dropped term `q . mean` is the same for every
record, so rankings by the reduced inner product approximate rankings by the full one.
Final scores are always recomputed from the full float32 vectors, so PCA (and int8/half
quantisation, done by FAISS's scalar quantiser) only affect which candidates are found.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Rows used to fit the PCA; more adds little for a covariance of a few hundred dimensions.
FIT_SAMPLE = 100_000


class PCA:
    """A linear projection to `components.shape[0]` dimensions, fitted on stored vectors."""

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        self.mean = mean.astype(np.float32)
        self.components = np.ascontiguousarray(components, dtype=np.float32)

    @property
    def dim(self) -> int:
        return self.components.shape[0]

    @classmethod
    def fit(cls, vectors: np.ndarray, dim: int, *, seed: int = 0) -> "PCA":
        """Principal axes of (a sample of) `vectors`; the `dim` with the largest variance."""
        if len(vectors) > FIT_SAMPLE:
            pick = np.sort(np.random.default_rng(seed).choice(len(vectors), FIT_SAMPLE, replace=False))
            vectors = vectors[pick]
        sample = np.asarray(vectors, dtype=np.float64)
        mean = sample.mean(axis=0)
        cov = np.cov(sample - mean, rowvar=False) if len(sample) > 1 else np.eye(sample.shape[1])
        values, vecs = np.linalg.eigh(np.atleast_2d(cov))
        order = np.argsort(values)[::-1][:dim]
        return cls(mean, vecs[:, order].T)

    def records(self, vectors: np.ndarray) -> np.ndarray:
        """Stored vectors as the index keeps them (centred, projected)."""
        return np.ascontiguousarray((np.asarray(vectors, dtype=np.float32) - self.mean) @ self.components.T)

    def query(self, vector: np.ndarray) -> np.ndarray:
        """A query as the index scores it (projected, not centred: see the module docstring)."""
        return np.ascontiguousarray(self.components @ np.asarray(vector, dtype=np.float32))

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        with open(tmp, "wb") as fh:
            np.savez(fh, mean=self.mean, components=self.components)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "PCA":
        with np.load(path) as data:
            return cls(data["mean"], data["components"])
