"""JSON text of documents and catalogue lines: orjson where it reads and writes exactly what the
standard library would, `json` for the rest.

orjson parses and writes small documents several times faster than `json` (a search reads ten
stored documents, a bulk load writes thousands), but it refuses NaN and Infinity (which
`json` reads) and integers past 64 bits, and reads integers of 20 or more digits as floats.
Those cases go to `json`, so every value reads and writes as it always did.
"""
from __future__ import annotations

import json
from typing import Any

import orjson

#: Every ASCII digit byte as b"1", every other byte as b" ": a run of 20 digits (an integer
#: orjson may turn into a float, as it keeps 64 bits, so json reads it) becomes b"1" * 20, found
#: by a plain substring search (a regex took 40 us on a 5 KB vector query, orjson 5 us to parse it).
_DIGITS = bytes(0x31 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_LONG_NUMBER = b"1" * 20


def _has_long_number(text: str | bytes) -> bool:
    """True when `text` holds 20 ASCII digits in a row (in UTF-8 no other character has a digit byte)."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return _LONG_NUMBER in data.translate(_DIGITS)


def load_json(text: str | bytes) -> Any:
    """`json.loads(text)`, by orjson where that gives the same value (a seventh of the time on
    small documents: stored documents made up a fifth of a search's hit formatting). What
    orjson refuses (NaN, bytes not UTF-8, nesting past its limit, bad JSON) goes to
    `json.loads`, which gives what it always gave: the value or its own error."""
    if not _has_long_number(text):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def dump_json(value: Any) -> str:
    """JSON text of a document (as `json.dumps(value, ensure_ascii=False)`, compact), by orjson
    unless it refuses the value (integers past 64 bits); `load_json` reads it back to `value`."""
    if not value:
        return "{}" if isinstance(value, dict) else json.dumps(value, ensure_ascii=False)
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, ensure_ascii=False)
