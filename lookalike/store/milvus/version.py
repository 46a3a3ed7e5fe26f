"""Which Milvus servers the store works with, read from the server's version at connect.

What sets the floor: JSON fields with `exists`, `json_contains` and `json_contains_any` (the
filter translation), `upsert`, `count(*)` and query iterators all arrive with Milvus 2.3.0.
Milvus Lite (reported as `milvus_lite-X.Y.Z`) has them all. Tested: docs/deployment.md.
"""
from __future__ import annotations

import re

from ...errors import LookalikeError

#: The oldest Milvus server the store works with.
MIN_SERVER = (2, 3, 0)
_SERVER = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)")


def server_release(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a Milvus server's version string (`v2.3.5-lite`, `2.4.13`);
    None for Milvus Lite and for strings in no known form (managed services name theirs freely)."""
    if version.startswith("milvus_lite"):
        return None
    found = _SERVER.match(version.strip())
    return tuple(int(part) for part in found.groups()) if found else None  # type: ignore[return-value]


def check_server_version(version: str, location: str) -> None:
    """Refuse a server older than MIN_SERVER, naming both versions."""
    release = server_release(version)
    if release is not None and release < MIN_SERVER:
        need = ".".join(map(str, MIN_SERVER))
        raise LookalikeError(f"Milvus >= {need} needed (the server at {location} is {version}): "
                             f"filters use JSON expressions, upsert and iterators of Milvus {need}")
