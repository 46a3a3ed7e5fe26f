"""The MongoDB-like filter language, parsed once into a small typed tree.

The tree is what every backend consumes: the embedded store evaluates it to a NumPy mask
over its field index (`store.field_index`), the Milvus store translates it to a boolean
expression. Parsing is where bad filters are refused, with the path and operator named.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from ..errors import BadRequest

COMPARISONS = ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists")
LOGICAL = ("$and", "$or", "$not")
Scalar = Union[str, int, float, bool, None]
#: Bounds on one filter, so parsing and evaluating it stays cheap (a 1.5M-branch `$or` took 8 s of CPU):
#: conditions (field tests), branches (items of `$and`/`$or` lists and `$not`s), `$in`/`$nin` values.
MAX_CONDITIONS = 1000
MAX_BRANCHES = 1000
MAX_IN_VALUES = 10_000


class _Budget:
    """What is left of one filter's bounds while it is parsed; BadRequest naming the limit beyond."""

    def __init__(self) -> None:
        self.left = {"conditions": MAX_CONDITIONS, "branches": MAX_BRANCHES, "$in/$nin values": MAX_IN_VALUES}
        self.limits = dict(self.left)

    def take(self, what: str, n: int = 1) -> None:
        self.left[what] -= n
        if self.left[what] < 0:
            raise BadRequest(f"filter has more than {self.limits[what]} {what} (the limit); "
                             "narrow it, or split the query")


@dataclass(frozen=True)
class Cond:
    """`path op value`, e.g. Cond("price", "$lt", 20)."""

    path: str
    op: str
    value: Any


@dataclass(frozen=True)
class And:
    children: tuple


@dataclass(frozen=True)
class Or:
    children: tuple


@dataclass(frozen=True)
class Not:
    child: Any


Node = Union[Cond, And, Or, Not]
MATCH_ALL = And(())


#: Parsed filters kept by their exact value (filters repeat: tenants, categories, facets): parsing
#: `{"p10": true}` cost 4 us of a 100 us search, three conditions 10 us; and their mask-cache keys.
_PARSED: dict[tuple, Node] = {}
_KEYS: dict[int, tuple[Node, str]] = {id(MATCH_ALL): (MATCH_ALL, repr(MATCH_ALL))}
#: Filters kept, and the most values one kept filter may hold (larger ones are parsed each time).
PARSED_MAX, FROZEN_MAX = 512, 64


def parse_filter(spec: Any) -> Node:
    """Validate a filter object and return its tree; `None`/`{}` match everything. A filter seen
    before (the same JSON value, types included) gives the same tree object again (trees are
    immutable); one that was refused is checked again each time."""
    if spec is None:
        return MATCH_ALL
    if not isinstance(spec, dict):
        raise BadRequest(f"a filter must be a JSON object, got {type(spec).__name__}")
    frozen = _frozen(spec, [FROZEN_MAX])
    node = _PARSED.get(frozen) if frozen is not None else None
    if node is None:
        node = _parse_object(spec, depth=0, budget=_Budget())
        if frozen is not None:
            if len(_PARSED) >= PARSED_MAX:
                _PARSED.clear()
                _KEYS.clear()
                _KEYS[id(MATCH_ALL)] = (MATCH_ALL, repr(MATCH_ALL))
            _KEYS[id(node)] = (node, repr(node))
            _PARSED[frozen] = node
    return node


def filter_key(node: Node) -> str:
    """A string that tells filters apart exactly (their repr: 1, 1.0 and True differ), for cache
    keys; kept with the parsed filters, so a repeated filter costs a lookup, not a repr."""
    kept = _KEYS.get(id(node))
    return kept[1] if kept is not None and kept[0] is node else repr(node)


def _frozen(value: Any, left: list[int]) -> tuple | None:
    """A hashable image of a JSON value, equal only for values parsing cannot tell apart (exact
    types; floats by their hex digits, so -0.0 is not 0.0); None for anything else and past
    `left[0]` values (nesting or size), which are then parsed each time."""
    left[0] -= 1
    if left[0] < 0:
        return None
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return (kind, value)
    if kind is float:
        return (kind, value.hex())
    if kind is dict:
        items = []
        for key, item in value.items():
            frozen = _frozen(item, left)
            if frozen is None or type(key) is not str:
                return None
            items.append((key, frozen))
        return (kind, tuple(items))
    if kind is list:
        items = []
        for item in value:
            frozen = _frozen(item, left)
            if frozen is None:
                return None
            items.append(frozen)
        return (kind, tuple(items))
    return None


def _parse_object(spec: dict, depth: int, budget: _Budget) -> Node:
    if depth > 32:
        raise BadRequest("filter is nested too deeply (more than 32 levels)")
    parts: list[Node] = []
    for key, value in spec.items():
        if not isinstance(key, str):
            raise BadRequest("filter keys must be strings")
        if key.startswith("$"):
            parts.append(_parse_logical(key, value, depth, budget))
        else:
            _check_path(key)
            parts.append(_parse_field(key, value, depth, budget))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _parse_logical(op: str, value: Any, depth: int, budget: _Budget) -> Node:
    if op == "$not":
        if not isinstance(value, dict):
            raise BadRequest("'$not' takes a filter object")
        budget.take("branches")
        return Not(_parse_object(value, depth + 1, budget))
    if op in ("$and", "$or"):
        if not isinstance(value, list) or not value:
            raise BadRequest(f"'{op}' takes a non-empty list of filter objects")
        budget.take("branches", len(value))  # before looking at the items: a huge list is refused at once
        if not all(isinstance(v, dict) for v in value):
            raise BadRequest(f"'{op}' takes a non-empty list of filter objects")
        children = tuple(_parse_object(v, depth + 1, budget) for v in value)
        return And(children) if op == "$and" else Or(children)
    if op in COMPARISONS:
        raise BadRequest(f"operator '{op}' must be applied to a field, e.g. {{\"price\": {{\"{op}\": ...}}}}")
    raise BadRequest(f"unknown filter operator '{op}'; known: {', '.join(COMPARISONS + LOGICAL)}")


def _parse_field(path: str, value: Any, depth: int, budget: _Budget) -> Node:
    if isinstance(value, dict) and value and all(isinstance(k, str) and k.startswith("$") for k in value):
        conds = [_parse_operator(path, op, arg, depth, budget) for op, arg in value.items()]
        return conds[0] if len(conds) == 1 else And(tuple(conds))
    if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("$") for k in value):
        raise BadRequest(f"filter on '{path}' mixes operators and plain fields")
    budget.take("conditions")
    return Cond(path, "$eq", _scalar(path, "$eq", value))


def _parse_operator(path: str, op: str, arg: Any, depth: int, budget: _Budget) -> Node:
    if op == "$not":
        if not isinstance(arg, dict) or not arg:
            raise BadRequest(f"'$not' on '{path}' takes an operator object, e.g. {{\"$gt\": 5}}")
        if depth > 32:
            raise BadRequest("filter is nested too deeply (more than 32 levels)")
        budget.take("branches")
        return Not(_parse_field(path, arg, depth + 1, budget))
    if op not in COMPARISONS:
        raise BadRequest(f"unknown filter operator '{op}' on '{path}'; known: {', '.join(COMPARISONS + ('$not',))}")
    budget.take("conditions")
    if op in ("$in", "$nin"):
        if not isinstance(arg, list):
            raise BadRequest(f"'{op}' on '{path}' takes a list of values")
        budget.take("$in/$nin values", len(arg))
        return Cond(path, op, tuple(_scalar(path, op, v) for v in arg))
    if op == "$exists":
        if not isinstance(arg, bool):
            raise BadRequest(f"'$exists' on '{path}' takes true or false")
        return Cond(path, op, arg)
    value = _scalar(path, op, arg)
    if op in ("$gt", "$gte", "$lt", "$lte") and (value is None or isinstance(value, bool)):
        raise BadRequest(f"'{op}' on '{path}' compares numbers or strings, not {json_type(value)}")
    return Cond(path, op, value)


def _scalar(path: str, op: str, value: Any) -> Scalar:
    if isinstance(value, (dict, list)):
        raise BadRequest(f"'{op}' on '{path}' takes a string, number, boolean or null, not {json_type(value)}"
                         + ("; use $in for several values" if isinstance(value, list) else ""))
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"'{op}' on '{path}': NaN and infinity are not valid values")
    if isinstance(value, int) and abs(value) > 1e308:  # no float can hold it (JSON allows any integer)
        raise BadRequest(f"'{op}' on '{path}': the number is too large")
    if not isinstance(value, (str, int, float, bool)) and value is not None:
        raise BadRequest(f"'{op}' on '{path}': unsupported value type {type(value).__name__}")
    return value


def _check_path(path: str) -> None:
    if not path or any(not part for part in path.split(".")):
        raise BadRequest(f"invalid field path {path!r} in filter")


def json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null"}.get(type(value), type(value).__name__)
