"""Columnar postings of every metadata path, so filters are NumPy masks, not Python loops.

For each dotted path we keep two parallel integer arrays, `rows` (the record's slot) and
`vids` (an id of the value, from a per-path dictionary of distinct values). A condition is
answered by deciding which *distinct values* match (a handful of Python comparisons, or a
vectorised one over the numeric values) and then one NumPy gather over the postings:
filtering a million records takes a few milliseconds. Lists contribute one posting per
element, so equality on a list field means "contains", as in MongoDB.
"""
from __future__ import annotations

import math
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


class Postings:
    """All (slot, value) pairs of one path."""

    def __init__(self) -> None:
        self.rows = _Growable(np.int64)
        self.vids = _Growable(np.int32)
        self.keys: list[tuple[str, Any]] = []
        self.vid_of: dict[tuple[str, Any], int] = {}
        self._numbers: np.ndarray | None = None

    def vid(self, key: tuple[str, Any]) -> int:
        vid = self.vid_of.get(key)
        if vid is None:
            vid = self.vid_of[key] = len(self.keys)
            self.keys.append(key)
            self._numbers = None
        return vid

    def add(self, pairs: list[tuple[int, tuple[str, Any]]]) -> None:
        self.rows.extend(slot for slot, _ in pairs)
        self.vids.extend(self.vid(key) for _, key in pairs)

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
        """Index records; a slot is written once (updates go to new slots)."""
        by_path: dict[str, list[tuple[int, tuple[str, Any]]]] = {}
        for slot, doc in zip(slots, docs):
            for path, key in flatten(doc):
                by_path.setdefault(path, []).append((slot, key))
        for path, pairs in by_path.items():
            self.paths.setdefault(path, Postings()).add(pairs)
        self._first.clear()

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
