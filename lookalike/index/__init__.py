"""Vector indexes: exact (the reference) and approximate ones behind one interface."""
from .exact import ExactIndex, top_k

__all__ = ["ExactIndex", "top_k"]
