"""Columnar postings of every metadata path, so filters are NumPy masks, not Python loops.

For each dotted path we keep two parallel integer arrays, `rows` (the record's slot) and
`vids` (an id of the value, from a per-path dictionary of distinct values). A condition is
answered by deciding which *distinct values* match (a handful of Python comparisons, or a
vectorised one over the numeric values) and then one NumPy gather over the postings:
filtering a million records takes a few milliseconds. Lists contribute one posting per
element, so equality on a list field means "contains", as in MongoDB.
"""
from __future__ import annotations

import json
import math
import threading
from typing import Any, Iterable

import numpy as np

from .filters import And, Cond, Node, Not, Or

# Value tags: number, string, boolean, null; and presence markers for objects and lists.
NUM, STR, BOOL, NULL, OBJ, ARR = "n", "s", "b", "z", "o", "a"


def value_key(value: Any) -> tuple[str, Any] | None:
    """The (tag, value) a scalar is indexed under; ints and floats compare as numbers."""
    if value is None:
        return (NULL, None)
    if isinstance(value, bool):
        return (BOOL, value)
    if isinstance(value, (int, float)):
        return (NUM, float(value))
    if isinstance(value, str):
        return (STR, value)
    return None


class _Growable:
    """An append-only NumPy buffer; readers slice a consistent prefix without locking."""

    def __init__(self, dtype: type, capacity: int = 256) -> None:
        self._buf = np.empty(capacity, dtype=dtype)
        self.size = 0

    @classmethod
    def of(cls, values: np.ndarray, dtype: type) -> "_Growable":
        """A buffer holding `values` (copied: the next extend must not write into a caller's array)."""
        out = cls(dtype, max(256, len(values)))
        out._buf[: len(values)] = values
        out.size = len(values)
        return out

    def extend(self, values: Iterable[int]) -> None:
        arr = np.fromiter(values, dtype=self._buf.dtype)
        need = self.size + len(arr)
        if need > len(self._buf):
            grown = np.empty(max(need, 2 * len(self._buf)), dtype=self._buf.dtype)
            grown[: self.size] = self._buf[: self.size]
            self._buf = grown
        self._buf[self.size:need] = arr
        self.size = need

    def view(self) -> np.ndarray:
        return self._buf[: self.size]


_MATERIALIZE = threading.Lock()


class Postings:
    """All (slot, value) pairs of one path."""

    def __init__(self, saved_keys: str | None = None) -> None:
        self.rows = _Growable(np.int64)
        self.vids = _Growable(np.int32)
        # Distinct values; from a snapshot they stay JSON until first used, because decoding the
        # keys of paths nobody filters on (titles, SKUs: one value per record) was most of a load.
        self._saved = saved_keys
        self._keys: list[tuple[str, Any]] | None = None if saved_keys is not None else []
        self._vid_of: dict[tuple[str, Any], int] = {}
        self._numbers: np.ndarray | None = None

    def _materialize(self) -> None:
        with _MATERIALIZE:  # a reader and a writer may both get here first: build it once
            if self._keys is None:
                keys = [(k[0], k[1]) for k in json.loads(self._saved)]
                self._vid_of = {key: vid for vid, key in enumerate(keys)}
                self._keys, self._saved = keys, None  # set last: readers test _keys

    @property
    def keys(self) -> list[tuple[str, Any]]:
        if self._keys is None:
            self._materialize()
        return self._keys

    @property
    def vid_of(self) -> dict[tuple[str, Any], int]:
        if self._keys is None:
            self._materialize()
        return self._vid_of

    def keys_json(self) -> str:
        """The distinct values as JSON (as saved; not decoded if they never were)."""
        saved = self._saved
        return saved if saved is not None else json.dumps([list(k) for k in self.keys])

    def vid(self, key: tuple[str, Any]) -> int:
        vid_of = self.vid_of
        vid = vid_of.get(key)
        if vid is None:
            vid = vid_of[key] = len(self._keys)
            self._keys.append(key)
            self._numbers = None
        return vid

    def add(self, pairs: list[tuple[int, tuple[str, Any]]]) -> None:
        get = self.vid_of.get
        vids = [get(key) for _, key in pairs]  # known values: one dict lookup each
        for i, vid in enumerate(vids):
            if vid is None:
                vids[i] = self.vid(pairs[i][1])
        self.rows.extend(slot for slot, _ in pairs)
        self.vids.extend(vids)

    def numbers(self) -> np.ndarray:
        """Numeric value of every distinct value id (NaN where not a number)."""
        if self._numbers is None or len(self._numbers) != len(self.keys):
            self._numbers = np.array([k[1] if k[0] == NUM else math.nan for k in self.keys], dtype=np.float64)
        return self._numbers


def flatten(doc: dict) -> list[tuple[str, tuple[str, Any]]]:
    """(path, value key) for every scalar, list element and object/list presence in a record."""
    out: list[tuple[str, tuple[str, Any]]] = []

    def walk(prefix: str, value: Any, in_list: bool) -> None:
        if isinstance(value, dict):
            if prefix:
                out.append((prefix, (OBJ, None)))
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v, False)
        elif isinstance(value, list):
            if not in_list:
                out.append((prefix, (ARR, None)))
            for item in value:
                walk(prefix, item, True)
        else:
            key = value_key(value)
            if key is not None:
                out.append((prefix, key))

    walk("", doc, False)
    return out


class FieldIndex:
    """Postings for every path of every record, evaluated into boolean masks over slots."""

    def __init__(self) -> None:
        self.paths: dict[str, Postings] = {}
        self._first: dict[str, tuple[int, np.ndarray]] = {}

    def add(self, slots: list[int], docs: list[dict]) -> None:
        """Index records; a slot is written once (updates go to new slots).

        A top-level string or number (most fields of a bulk load) is keyed here without
        `flatten`'s walk (~2 us a field less); any other value is walked, in the same order."""
        by_path: dict[str, list[tuple[int, tuple[str, Any]]]] = {}
        for slot, doc in zip(slots, docs):
            for name, value in doc.items():
                kind = type(value)
                if kind is str:
                    key: tuple[str, Any] | None = (STR, value)
                elif kind is int or kind is float:  # not bool: type() is exact
                    key = (NUM, float(value))
                else:
                    for path, nested in flatten({name: value}):
                        by_path.setdefault(path, []).append((slot, nested))
                    continue
                pairs = by_path.get(name)
                if pairs is None:
                    pairs = by_path[name] = []
                pairs.append((slot, key))
        for path, pairs in by_path.items():
            self.paths.setdefault(path, Postings()).add(pairs)
        self._first.clear()

    # -- persistence (see store/field_snapshot.py) ------------------------------------------
    def to_arrays(self) -> tuple[list[str], list[str], np.ndarray, np.ndarray, np.ndarray]:
        """(paths, JSON of the distinct values per path, concatenated rows, concatenated vids, offsets).

        A consistent copy while writers append: each path's arrays are sliced at one size, and
        keys are copied after, so every vid in the slice has its key."""
        paths = list(self.paths)
        posts = [self.paths[p] for p in paths]
        sizes = [min(post.rows.size, post.vids.size) for post in posts]  # rows grow first
        rows = [post.rows.view()[:n] for post, n in zip(posts, sizes)]
        vids = [post.vids.view()[:n] for post, n in zip(posts, sizes)]
        keys = [post.keys_json() for post in posts]
        offsets = np.cumsum([0] + [len(r) for r in rows], dtype=np.int64)
        cat = (lambda parts, dt: np.concatenate(parts).astype(dt) if parts else np.empty(0, dt))  # noqa: E731
        return paths, keys, cat(rows, np.int64), cat(vids, np.int32), offsets

    @classmethod
    def from_arrays(cls, paths: list[str], keys: list[str], rows: np.ndarray, vids: np.ndarray,
                    offsets: np.ndarray) -> "FieldIndex":
        """The index `to_arrays` described."""
        index = cls()
        for i, path in enumerate(paths):
            post = Postings(saved_keys=keys[i])
            lo, hi = int(offsets[i]), int(offsets[i + 1])
            post.rows = _Growable.of(rows[lo:hi], np.int64)
            post.vids = _Growable.of(vids[lo:hi], np.int32)
            index.paths[path] = post
        return index

    # -- evaluation -----------------------------------------------------------------------
    def mask(self, node: Node, n_slots: int) -> np.ndarray:
        """Boolean mask over slots 0..n_slots-1 of records matching `node` (dead slots included)."""
        if isinstance(node, Cond):
            return self._cond(node, n_slots)
        if isinstance(node, Not):
            return ~self.mask(node.child, n_slots)
        if isinstance(node, And):
            out = np.ones(n_slots, dtype=bool)
            for child in node.children:
                out &= self.mask(child, n_slots)
            return out
        if isinstance(node, Or):
            out = np.zeros(n_slots, dtype=bool)
            for child in node.children:
                out |= self.mask(child, n_slots)
            return out
        raise TypeError(f"not a filter node: {node!r}")

    def _cond(self, cond: Cond, n_slots: int) -> np.ndarray:
        if cond.op == "$ne":
            return ~self._cond(Cond(cond.path, "$eq", cond.value), n_slots)
        if cond.op == "$nin":
            return ~self._cond(Cond(cond.path, "$in", cond.value), n_slots)
        post = self.paths.get(cond.path)
        out = np.zeros(n_slots, dtype=bool)
        null_matches_missing = (cond.op == "$eq" and cond.value is None) or (
            cond.op == "$in" and None in cond.value)
        if cond.op == "$exists" and not cond.value:
            return ~self._cond(Cond(cond.path, "$exists", True), n_slots)
        if null_matches_missing:  # MongoDB: {"f": null} matches records without f
            out = ~self._cond(Cond(cond.path, "$exists", True), n_slots)
        if post is None or not post.keys:
            return out
        wanted = self._matching_values(post, cond)
        rows, vids = post.rows.view(), post.vids.view()
        hit = rows[wanted[vids]]
        out[hit[hit < n_slots]] = True
        return out

    @staticmethod
    def _matching_values(post: Postings, cond: Cond) -> np.ndarray:
        """Boolean table over the path's distinct values: which satisfy the condition."""
        wanted = np.zeros(len(post.keys), dtype=bool)
        op, value = cond.op, cond.value
        if op == "$exists":
            wanted[:] = True
        elif op in ("$eq", "$in"):
            for v in (value if op == "$in" else (value,)):
                vid = post.vid_of.get(value_key(v))
                if vid is not None:
                    wanted[vid] = True
        elif isinstance(value, str):
            compare = {"$gt": str.__gt__, "$gte": str.__ge__, "$lt": str.__lt__, "$lte": str.__le__}[op]
            for vid, (tag, v) in enumerate(post.keys):
                wanted[vid] = tag == STR and compare(v, value)
        else:
            nums = post.numbers()
            with np.errstate(invalid="ignore"):
                wanted = {"$gt": nums > value, "$gte": nums >= value, "$lt": nums < value, "$lte": nums <= value}[op]
        return wanted

    # -- grouping ------------------------------------------------------------------------
    def first_values(self, path: str, n_slots: int) -> np.ndarray:
        """Per slot, the value id of the path's first value (-1 where missing)."""
        cached = self._first.get(path)
        if cached is not None and cached[0] == n_slots:
            return cached[1]
        first = np.full(n_slots, -1, dtype=np.int64)
        post = self.paths.get(path)
        if post is not None:
            rows, vids = post.rows.view(), post.vids.view()
            scalar = np.array([k[0] not in (OBJ, ARR) for k in post.keys], dtype=bool)[vids]
            rows, vids = rows[scalar][::-1], vids[scalar][::-1]
            keep = rows < n_slots
            first[rows[keep]] = vids[keep]  # reversed, so the first value written last wins
        self._first[path] = (n_slots, first)
        return first

    def value_of(self, path: str, vid: int) -> Any:
        """The original value behind a value id (numbers come back as int where integral)."""
        tag, value = self.paths[path].keys[vid]
        if tag == NUM and float(value).is_integer() and abs(value) < 2**53:
            return int(value)
        return value
