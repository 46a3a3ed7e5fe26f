"""Checks for the numbers, names and weights that requests and settings carry.

JSON booleans are Python ints, so every number check refuses `True`/`False` explicitly:
`{"k": true}` is a bad request, not k=1. Each check raises BadRequest naming the parameter.
"""
from __future__ import annotations

import math
from typing import Any

from .errors import BadRequest

#: Widest vector any collection may have (the embedded store's limit; a backend with a lower
#: one declares it as `max_dim`, see store/base.py).
MAX_DIM = 65536


def is_number(value: Any) -> bool:
    """An int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_int(value: Any) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def in_range(value: Any, low: float, high: float) -> bool:
    """A number (not a bool, not NaN) from `low` to `high`."""
    return is_number(value) and low <= value <= high


def check_int(name: str, value: Any, low: int, high: int) -> int:
    """An integer from `low` to `high`: "'name' must be an integer from low to high" otherwise."""
    if not is_int(value) or not low <= value <= high:
        raise BadRequest(f"'{name}' must be an integer from {low} to {high}")
    return value


def check_number(value: Any, low: float, high: float, message: str) -> float:
    """A number from `low` to `high` as a float; BadRequest(message) otherwise."""
    if not in_range(value, low, high):
        raise BadRequest(message)
    return float(value)


def check_weight(name: str, value: Any, high: float = 100) -> float:
    """A weight from 0 to `high`."""
    return check_number(value, 0, high, f"'{name}' must be a weight from 0 to {high:g}")


def is_grade(value: Any) -> bool:
    """A finite number >= 0 (a relevance grade)."""
    return is_number(value) and math.isfinite(value) and value >= 0


def check_bool(name: str, value: Any) -> bool:
    """A JSON boolean."""
    if not isinstance(value, bool):
        raise BadRequest(f"'{name}' must be true or false")
    return value


def is_field_names(value: Any) -> bool:
    """A list of non-empty strings."""
    return isinstance(value, list) and all(isinstance(f, str) and f for f in value)


def check_field_names(name: str, value: Any) -> list[str]:
    """A list of field names (non-empty strings)."""
    if not is_field_names(value):
        raise BadRequest(f"'{name}' must be a list of field names")
    return value


def check_field_name(name: str, value: Any) -> str:
    """One field name (a non-empty string)."""
    if not isinstance(value, str) or not value:
        raise BadRequest(f"'{name}' must be a field name")
    return value


def check_dim(value: Any, high: int = MAX_DIM) -> int:
    """A vector width from 1 to `high` (the store's `max_dim`)."""
    return check_int("dim", value, 1, high)
