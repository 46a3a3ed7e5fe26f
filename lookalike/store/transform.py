"""A learned linear map of model vectors into the collection's tuned space (see query/tune.py).

`tuned = normalise(scale * (x - mean) @ proj)`, zero-padded to the model's width so the ANN
index, compression and every dimension check stay as they are. The map is stored in the
collection's settings (`tuning`, base64 float32) and so travels with backups; the raw model
vectors stay on disk beside it, so a reset or a new tune always starts from them.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from ..errors import LookalikeError

#: Bumped when the stored form or the formula changes; older forms are refused by name.
VERSION = 1


def _b64(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _unb64(s: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float32)


@dataclass
class Transform:
    """mean (dim,), proj (dim x k) with k <= dim; output width `dim` (zeros past k)."""

    mean: np.ndarray
    proj: np.ndarray

    @property
    def dim(self) -> int:
        return int(self.proj.shape[0])

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Rows (or one vector) mapped and L2-normalised, float32, same width as the input."""
        x = np.asarray(vectors, dtype=np.float32)
        one = x.ndim == 1
        x = np.atleast_2d(x)
        out = np.zeros((len(x), self.dim), dtype=np.float32)
        k = self.proj.shape[1]
        for lo in range(0, len(x), 65536):  # bounded temporaries on big collections
            part = (x[lo:lo + 65536] - self.mean) @ self.proj
            norms = np.linalg.norm(part, axis=1, keepdims=True)
            out[lo:lo + 65536, :k] = part / np.maximum(norms, 1e-12)
        return out[0] if one else out

    def to_dict(self) -> dict:
        return {"version": VERSION, "dim": self.dim, "k": int(self.proj.shape[1]),
                "mean": _b64(self.mean), "proj": _b64(self.proj)}

    @classmethod
    def from_dict(cls, data: dict) -> "Transform":
        if data.get("version") != VERSION:
            raise LookalikeError(f"tuning version {data.get('version')!r} is not readable by this lookalike "
                                 f"(it reads version {VERSION}); run `lookalike tune --reset` and tune again")
        dim, k = int(data["dim"]), int(data["k"])
        return cls(_unb64(data["mean"]).reshape(dim), _unb64(data["proj"]).reshape(dim, k))


def transform_of(tuning: dict | None) -> Transform | None:
    """The Transform a collection's `tuning` setting holds, or None when it is untuned."""
    if not tuning or not tuning.get("transform"):
        return None
    return Transform.from_dict(tuning["transform"])
