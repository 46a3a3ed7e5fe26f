"""Incremental parsing of an NDJSON request body into records for `Collection.upsert_iter`.

A line that is not JSON, or longer than the per-line limit, becomes an `InvalidRecord`
(an error result for that line alone); the rest of the stream goes on.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator

from ..records import InvalidRecord


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(text: str | bytes) -> Any:
    """json.loads that refuses NaN/Infinity (not JSON, and never a valid value here) and
    JSON nested too deeply for the parser (a ValueError, so a 400, never a 500)."""
    try:
        return json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise ValueError("JSON is nested too deeply") from None


def parse_line(line: bytes, number: int) -> Any:
    try:
        return loads(line)
    except (ValueError, UnicodeDecodeError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        return InvalidRecord(f"line {number} is not valid JSON: {reason}")


def _too_long(number: int, limit: int) -> InvalidRecord:
    return InvalidRecord(f"line {number} is longer than the server's limit of {limit} bytes")


def _finish(line: bytearray, number: int, limit: int) -> Any:
    """The record of one complete line; None for a blank line."""
    if not line.strip():
        return None
    if len(line) > limit:
        return _too_long(number, limit)
    return parse_line(bytes(line), number)


def iter_records(chunks: Iterable[bytes], max_line_bytes: int) -> Iterator[Any]:
    """Records from byte chunks of NDJSON, one per non-blank line, in order (lines counted from 1)."""
    buffer = bytearray()
    number = 1
    skipping = False  # inside a line already reported as too long
    for chunk in chunks:
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            if end < 0:
                if not skipping:
                    buffer += chunk[start:]
                    if len(buffer) > max_line_bytes:
                        yield _too_long(number, max_line_bytes)
                        skipping, buffer = True, bytearray()
                break
            if not skipping:
                buffer += chunk[start:end]
                record = _finish(buffer, number, max_line_bytes)
                if record is not None:
                    yield record
            skipping, buffer = False, bytearray()
            number += 1
            start = end + 1
    if not skipping:
        record = _finish(buffer, number, max_line_bytes)
        if record is not None:
            yield record
