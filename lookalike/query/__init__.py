"""Queries: the filter language, the field index that answers it, and search parameters."""
from .filters import MATCH_ALL, And, Cond, Not, Or, parse_filter

__all__ = ["MATCH_ALL", "And", "Cond", "Not", "Or", "parse_filter"]
