"""Checks the command line makes before it runs a search, so mistakes get an answer.

The engine takes any field name (a field missing from every record simply never matches);
at the command line such a name is nearly always a typo, so names unknown to a collection
that holds records are refused with the known ones listed.
"""
from __future__ import annotations

from typing import Any

from ..errors import LookalikeError

#: Fields the engine keeps on a record besides the user's metadata.
ENGINE_FIELDS = {"_id", "_file", "_url", "_labels", "_colors", "_labels.label", "_labels.score", "_colors.color",
                 "_colors.weight"}
#: `--group-by` values that mean "no grouping" (the collection's group_field is not applied).
NO_GROUPING = {"false", "none", "no", "off", "0"}
SAMPLE = 200


class UsageError(Exception):
    """Bad command-line usage, or a value the collection cannot use (exit status 2)."""


def known_fields(col: Any) -> set[str] | None:
    """Metadata paths (dotted, with their parents) present in the collection; None if unknown or empty."""
    if col.count() == 0:
        return None
    paths: set[str] = set()
    try:
        paths.update(f["path"] for f in col.facets(top=1)["facets"])
    except LookalikeError:  # a store without facets: the sampled records still tell
        pass
    for record in col.records(limit=SAMPLE)["records"]:
        paths.update(_paths(record))
    for path in list(paths):
        parts = path.split(".")
        paths.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return paths


def _paths(doc: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, value in doc.items():
        path = prefix + key
        out.add(path)
        if isinstance(value, dict):
            out |= _paths(value, path + ".")
    return out


def _listing(known: set[str]) -> str:
    own = sorted(p for p in known if not p.startswith("_"))
    return ", ".join(own) if own else "(none)"


def check_fields(col: Any, names: list[str], option: str) -> None:
    """Refuse names that no record of `col` has (UsageError listing the known fields)."""
    known = known_fields(col)
    if known is None:
        return
    unknown = [n for n in names if n not in known and n not in ENGINE_FIELDS]
    if unknown:
        raise UsageError(f"{option}: no record of collection {col.name!r} has field(s) {', '.join(unknown)}; "
                          f"known fields: {_listing(known)}")


def group_by_value(text: str | None) -> str | bool | None:
    """`--group-by`: a field name, or False for "no grouping" (false/none/no/off/0)."""
    if text is None:
        return None
    return False if text.strip().lower() in NO_GROUPING else text


def parse_vector_arg(text: str) -> list[float]:
    """`--vector`: a JSON list of numbers, or comma-separated numbers."""
    import json
    raw = text.strip()
    try:
        value = json.loads(raw if raw.startswith("[") else f"[{raw}]")
    except json.JSONDecodeError:
        raise UsageError("--vector must be a JSON list of numbers or comma-separated numbers") from None
    if not isinstance(value, list) or not value or not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                           for x in value):
        raise UsageError("--vector must be a non-empty list of numbers")
    return [float(x) for x in value]
