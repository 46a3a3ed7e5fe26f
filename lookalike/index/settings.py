"""Per-collection index and compression settings: defaults, validation, what forces a rebuild."""
from __future__ import annotations

from typing import Any

from ..errors import BadRequest
from ..validation import is_int

INDEX_TYPES = ("auto", "exact", "hnsw", "ivf")
DTYPES = ("f32", "f16", "i8")
#: Defaults: HNSW with 16 links per node is the usual sweet spot for 128-1280-d embeddings;
#: up to `threshold` live vectors (null: `exact_threshold` chooses it by dimension) search is
#: exact. A filter matching up to `filter_threshold` records (capped by `threshold`) is
#: answered by scanning just those rows: gathering and scoring them costs ~0.06 us a row at
#: 256-d, a filtered graph walk ~0.2 ms at 20k-50k rows, at recall 0.97-0.99 (even near 3-4k
#: matches: bench/exact_threshold.py --filters, docs/index.md).
#: IVF (`type: "ivf"`): `nlist` k-means lists (null: 4 sqrt(rows) when built), `nprobe` of them
#: scanned per query (measured: recall@10 >= 0.95 at 100k-1M with 32, see docs/index.md).
#: `target_recall`: the recall@10 the index is calibrated to (calibrate.py): the search widths
#: are then measured on the collection's own vectors, and `expansion_search` / `nprobe` only
#: serve until that measurement is done, or always when it is null.
INDEX_DEFAULTS: dict[str, Any] = {"type": "auto", "connectivity": 16, "expansion_add": 128,
                                  "expansion_search": 64, "threshold": None, "filter_threshold": 4096,
                                  "nlist": None, "nprobe": 32, "target_recall": 0.95}
COMPRESSION_DEFAULTS: dict[str, Any] = {"dtype": "f32", "pca_dim": None}
_LIMITS = {"connectivity": (4, 128), "expansion_add": (8, 4096), "expansion_search": (8, 4096),
           "filter_threshold": (0, 1_000_000_000), "nprobe": (1, 65536)}
#: Settings that may be null (automatic).
_OPTIONAL_LIMITS = {"nlist": (1, 1_000_000), "threshold": (0, 1_000_000_000)}


#: `threshold: null` (the default): `auto` scans exactly while a scan costs up to ~0.25 ms on one
#: core: up to EXACT_BUDGET / (dim + EXACT_ROW_DIMS) live rows, at least EXACT_MIN_ROWS. A scan
#: costs ~0.12 ns per float plus ~12 ns per row (its score and top-k), hence the per-row term.
#: bench/exact_threshold.py, 2 shared cores, clustered rows, float32 HNSW at its calibrated beam
#: (recall@10 0.99-1.0): the graph is faster from 2k rows at every dimension (1.4-3x), and past
#: the budget by 3-40x (256-d: exact 0.28 ms at 5k rows, 1.3 ms at 20k; the graph 0.09-0.14 ms).
#: Below the budget it saves under ~0.2 ms a query, for a build at the crossing (seconds, which
#: the write that crosses waits for up to 50k rows), a float32 copy of the vectors and recall
#: 0.99 for 1.0: exact keeps those. Gives 10 975 rows at 64-d, 7 894 at 128, 5 056 at 256,
#: 2 960 at 512, 1 304 at 1280: under the fixed 20 000 this replaced at every dimension.
EXACT_BUDGET, EXACT_ROW_DIMS, EXACT_MIN_ROWS = 1_800_000, 100, 1_000


def exact_threshold(index: dict, dim: int) -> int:
    """Live rows up to which `auto` (and any unfiltered search) scans exactly: the collection's
    `threshold` when set (it always wins), else chosen by the vectors' dimension (EXACT_BUDGET)."""
    given = index["threshold"]
    if given is not None:
        return given
    return max(EXACT_MIN_ROWS, EXACT_BUDGET // (max(dim, 1) + EXACT_ROW_DIMS))


def _int(name: str, value: Any, low: int, high: int) -> int:
    if not is_int(value) or not low <= value <= high:
        raise BadRequest(f"index setting '{name}' must be an integer from {low} to {high}, got {value!r}")
    return value


def _check_keys(kind: str, given: Any, defaults: dict) -> dict:
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise BadRequest(f"'{kind}' must be an object like {defaults}")
    unknown = set(given) - set(defaults)
    if unknown:
        raise BadRequest(f"unknown '{kind}' setting(s): {', '.join(sorted(unknown))}; "
                         f"known: {', '.join(defaults)}")
    return given


def normalize_index(given: Any, dim: int | None = None) -> dict:
    """The full index settings: defaults overlaid with `given`, validated (BadRequest if bad).

    A bare type name (`"exact"`, `"hnsw"`, `"ivf"`, `"auto"`) is short for `{"type": name}`.
    """
    if isinstance(given, str):
        given = {"type": given}
    out = {**INDEX_DEFAULTS, **_check_keys("index", given, INDEX_DEFAULTS)}
    if out["type"] not in INDEX_TYPES:
        raise BadRequest(f"unknown index type {out['type']!r}; use one of: {', '.join(INDEX_TYPES)}")
    for name, (low, high) in _LIMITS.items():
        _int(name, out[name], low, high)
    for name, (low, high) in _OPTIONAL_LIMITS.items():
        if out[name] is not None:
            _int(name, out[name], low, high)
    target = out["target_recall"]
    if target is not None:
        if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
            raise BadRequest(f"index setting 'target_recall' must be a number above 0 and at most 1 "
                             f"(or null: use expansion_search / nprobe as given), got {target!r}")
        out["target_recall"] = float(target)
    return out


def normalize_compression(given: Any, dim: int | None = None) -> dict:
    """The full compression settings, validated against the vector dimension when known."""
    out = {**COMPRESSION_DEFAULTS, **_check_keys("compression", given, COMPRESSION_DEFAULTS)}
    if out["dtype"] not in DTYPES:
        raise BadRequest(f"unknown compression dtype {out['dtype']!r}; use one of: {', '.join(DTYPES)}")
    pca = out["pca_dim"]
    if pca is not None:
        _int("pca_dim", pca, 1, 65536)
        if dim is not None and pca >= dim:
            raise BadRequest(f"'pca_dim' must be smaller than the vector dimension {dim}, got {pca}")
    return out


def build_key(index: dict, compression: dict, dim: int) -> dict:
    """The settings an index file was built with; a change in any of them means a rebuild."""
    if ann_kind(index, compression) == "ivf":
        return {"type": "ivf", "dim": dim, "nlist": index["nlist"],
                "dtype": compression["dtype"], "pca_dim": compression["pca_dim"]}
    return {"dim": dim, "connectivity": index["connectivity"], "expansion_add": index["expansion_add"],
            "dtype": compression["dtype"], "pca_dim": compression["pca_dim"]}


def ann_kind(index: dict, compression: dict) -> str:
    """The approximate structure these settings build: `ivf` or `hnsw` (`exact` names HNSW too,
    for the files it would have).

    `auto` builds an IVF when the codes are int8: whoever asks for int8 asks for memory, and
    next to 1-byte codes HNSW's links are half as big again (1.52x the int8 vector bytes at
    M=16), where IVF's ids add 4 % (1.04-1.05x at 1M-5M rows, bench/search.py). IVF queries
    cost more (unfiltered p50 0.5 ms against 0.15-0.2 ms at 1M, 0.9 against 0.6 at 5M) at
    equal or better recall, and build 2.6-3.7x faster; float32 and float16 codes keep HNSW,
    whose links add only 12-25 % to them.
    """
    if index["type"] == "ivf" or (index["type"] == "auto" and compression["dtype"] == "i8"):
        return "ivf"
    return "hnsw"


def code_bytes(dim: int, compression: dict) -> int:
    """Bytes one vector takes inside the ANN index (after PCA and quantisation)."""
    width = compression["pca_dim"] or dim
    return width * {"f32": 4, "f16": 2, "i8": 1}[compression["dtype"]]
