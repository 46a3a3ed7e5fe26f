"""Filters for the Milvus store: a per-record filter view, and the filter tree as a Milvus expression.

Design notes (how it works and why): docs/milvus.md, "Notes: `lookalike/store/milvus/filters.py`".
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ...errors import BadRequest
from ..field_index import ARR, BOOL, NULL, NUM, OBJ, STR, flatten
from ..filters import And, Cond, Node, Not, Or

#: The JSON column holding the filter view.
COLUMN = "filter_view"
#: An expression true for every record (ids are never empty).
TRUE = 'id != ""'
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.\- ]{1,120}$")
_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def path_key(path: str) -> str:
    """The key a field path has in the filter view: itself, or a digest when it has odd characters."""
    if _SAFE_KEY.match(path):
        return path
    return "~" + hashlib.sha1(path.encode()).hexdigest()[:24]


def number(value: float | int) -> float | int:
    """Integral numbers as int, so 3 and 3.0 are one value on every server."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def filter_view(view: dict) -> dict:
    """The filter view of a record's filterable fields (metadata plus computed fields)."""
    maps: dict[str, dict] = {m: {} for m in ("p", "v", "b", "z", "nlo", "nhi", "slo", "shi")}
    for path, (tag, value) in flatten(view):
        key = path_key(path)
        maps["p"][key] = 1
        if tag == NUM or tag == STR:
            values = maps["v"].setdefault(key, [])
            value = number(value) if tag == NUM else value
            if value not in values:  # numbers and strings never compare equal to each other
                values.append(value)
            lo, hi = ("nlo", "nhi") if tag == NUM else ("slo", "shi")
            maps[lo][key] = min(maps[lo].get(key, value), value)
            maps[hi][key] = max(maps[hi].get(key, value), value)
        elif tag == BOOL:
            if value not in maps["b"].setdefault(key, []):
                maps["b"][key].append(value)
        elif tag == NULL:
            maps["z"][key] = 1
        elif tag not in (OBJ, ARR):
            raise BadRequest(f"metadata '{path}' has a value the Milvus store cannot index")
    return {m: d for m, d in maps.items() if d}


def quote(text: str) -> str:
    """A Milvus string literal (double quotes; backslash escapes for quote, backslash, CR/LF, tab)."""
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    return f'"{escaped}"'


def literal(value: Any) -> str:
    """A scalar (string, number or boolean) as a Milvus literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(number(value))
    if isinstance(value, str):
        return quote(value)
    raise BadRequest(f"the Milvus store cannot compare with a value of type {type(value).__name__}")


def _exists(ref: str) -> str:
    """`exists` in parentheses: Milvus 2.3's grammar reads `exists a and b` as `exists (a and b)`."""
    return f"(exists {ref})"


def _ref(m: str, path: str) -> str:
    return f'{COLUMN}["{m}"]["{path_key(path)}"]'


def to_expression(node: Node) -> str:
    """The Milvus boolean expression for a filter tree; '' for "match everything".

    Raises BadRequest naming the operator for anything without a faithful translation,
    so a filter is never silently dropped or weakened.
    """
    if isinstance(node, And) and not node.children:
        return ""
    return _expr(node)


def _expr(node: Node) -> str:
    if isinstance(node, Cond):
        return _cond(node)
    if isinstance(node, Not):
        return f"not ({_expr(node.child)})"
    if isinstance(node, And):
        return " and ".join(f"({_expr(c)})" for c in node.children) if node.children else TRUE
    if isinstance(node, Or):
        return " or ".join(f"({_expr(c)})" for c in node.children) if node.children else f"not ({TRUE})"
    raise BadRequest(f"the Milvus store cannot translate filter node {type(node).__name__}")


def _cond(cond: Cond) -> str:
    op, value, path = cond.op, cond.value, cond.path
    if op == "$exists":
        present = _exists(_ref('p', path))
        return present if value else f"not {present}"
    if op in ("$eq", "$in"):
        return _any_of(path, [value] if op == "$eq" else list(value))
    if op in ("$ne", "$nin"):
        return f"not ({_any_of(path, [value] if op == '$ne' else list(value))})"
    if op in _RANGE:
        if isinstance(value, bool) or value is None:
            raise BadRequest(f"'{op}' on '{path}' compares numbers or strings, not {value!r}")
        if isinstance(value, str):
            lo, hi = "slo", "shi"
        elif isinstance(value, (int, float)):
            lo, hi = "nlo", "nhi"
        else:
            raise BadRequest(f"'{op}' on '{path}': the Milvus store cannot compare with {type(value).__name__}")
        ref = _ref(hi if op in ("$gt", "$gte") else lo, path)
        return f"({_exists(ref)} and {ref} {_RANGE[op]} {literal(value)})"
    raise BadRequest(f"filter operator '{op}' (on '{path}') has no Milvus translation")


def _any_of(path: str, values: list) -> str:
    """True when the field has any of `values` (null: also when the field is missing)."""
    parts = []
    scalars = [v for v in values if v is not None and not isinstance(v, bool)]
    bools = [v for v in values if isinstance(v, bool)]
    if scalars:
        ref = _ref("v", path)
        if len(scalars) == 1:
            parts.append(f"({_exists(ref)} and json_contains({ref}, {literal(scalars[0])}))")
        else:
            parts.append(f"({_exists(ref)} and json_contains_any({ref}, [{', '.join(literal(v) for v in scalars)}]))")
    for b in dict.fromkeys(bools):
        ref = _ref("b", path)
        parts.append(f"({_exists(ref)} and json_contains({ref}, {literal(b)}))")
    if any(v is None for v in values):
        parts.append(f"(not {_exists(_ref('p', path))} or {_exists(_ref('z', path))})")
    if not parts:  # `$in: []` matches nothing
        return f"not ({TRUE})"
    return " or ".join(parts)
