"""Query vectors given as NumPy arrays (Python API): checked as the lists they stand for.

`{"vector": v}` and `{"vectors": m}` take, besides lists of numbers, a float32 or float64
NumPy array (1-D for `vector`, 2-D for `vectors`), so a caller holding embeddings in NumPy
skips `tolist()` and the per-number type checks of a list (~10 us of a 256-d query). The
values searched are the ones the same numbers as a list give, bit for bit (float64 rounded
to float32 once, as a list is). An array that fails a check, or whose length lies within
rounding of a limit, is checked as its list (`tolist()`), so its error is the list's own.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import BadRequest
from ..models import l2_normalize
from ..records import MAX_VECTOR_NORM, MIN_VECTOR_NORM, parse_vector, parse_vectors

#: Bounds on a float32 sum of squares well inside parse_vector's limits on the length.
UNIT_LOW, UNIT_HIGH = (MIN_VECTOR_NORM * 1.01) ** 2, (MAX_VECTOR_NORM * 0.99) ** 2


def check_array(value: np.ndarray, ndim: int, what: str) -> None:
    """A float32/float64 array of `ndim` dimensions, or BadRequest naming what is wrong."""
    if value.dtype.kind != "f" or value.dtype.itemsize not in (4, 8):
        raise BadRequest(f"'{what}' as a NumPy array must be float32 or float64, not {value.dtype}")
    if value.ndim != ndim:
        shape = "one vector (1-D)" if ndim == 1 else "a 2-D array of one vector per row"
        raise BadRequest(f"'{what}' as a NumPy array must be {shape}, not of shape {value.shape}")


def query_vector(value: Any, dim: int, unit: bool = False) -> np.ndarray:
    """`parse_vector(value, dim)`, also for a 1-D float32/float64 array (a new float32 array);
    `unit`: scaled to unit length as `l2_normalize` scales it (the cosine metric's queries)."""
    if type(value) is not np.ndarray:
        vector = parse_vector(value, dim)
        return l2_normalize(vector) if unit else vector
    check_array(value, 1, "vector")
    with np.errstate(over="ignore"):  # a float64 past float32's range: inf, refused below
        out = value.astype(np.float32)  # always a copy: the caller's array is theirs to change
    if len(out) == dim:
        if unit:  # l2_normalize's float32 sum, which also decides here: clear of both limits (its
            # rounding is far under 1 %) is inside parse_vector's; NaN, inf and the rest go below
            squares = np.add.reduce(out * out)
            if UNIT_LOW < squares < UNIT_HIGH:
                return out / np.sqrt(squares)
        else:
            wide = out.astype(np.float64)
            norm = math.sqrt(wide.dot(wide))  # parse_vector's own sum: the same decision, bit for bit
            if MIN_VECTOR_NORM <= norm <= MAX_VECTOR_NORM:
                return out
    # the list's checks, its error (NaN, length, zeros, too long), or its value near a limit
    vector = parse_vector(value.tolist(), dim)
    return l2_normalize(vector) if unit else vector


def query_rows(values: Any, dim: int) -> np.ndarray:
    """`parse_vectors(values, dim)`, also for a 2-D float32/float64 array or a list holding 1-D ones."""
    if type(values) is np.ndarray:
        check_array(values, 2, "vectors")
        with np.errstate(over="ignore"):
            out = values.astype(np.float32)
        wide = out.astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", wide, wide))
        # clear of both limits (a row within rounding of one is decided by parse_vector's own sum)
        if out.shape[1] == dim and len(out) and (norms > MIN_VECTOR_NORM * 1.001).all() \
                and (norms < MAX_VECTOR_NORM * 0.999).all():
            return out
        return parse_vectors(values.tolist(), dim)  # the list's error, its row named
    if isinstance(values, list) and any(type(v) is np.ndarray for v in values):
        rows = []
        for i, value in enumerate(values):
            try:
                rows.append(query_vector(value, dim))
            except BadRequest as exc:
                message = str(exc)
                for name in ("'_vector'", "'vector'"):
                    message = message.removeprefix(name)
                raise BadRequest(f"'vectors'[{i}]{message}") from None
        return np.stack(rows)
    return parse_vectors(values, dim)
