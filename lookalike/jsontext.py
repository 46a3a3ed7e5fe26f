"""JSON text of documents and catalogue lines: orjson where it reads and writes exactly what the
standard library would, `json` for the rest.

orjson parses and writes small documents several times faster than `json` (a search reads ten
stored documents, a bulk load writes thousands), but it refuses NaN and Infinity (which
`json` reads) and integers past 64 bits, and reads integers outside [-2**63, 2**64) as floats.
Those cases go to `json`, so every value reads and writes as it always did.
"""
from __future__ import annotations

import json
from typing import Any

import orjson

#: orjson keeps integers in [-2**63, 2**64) exactly and reads longer ones as floats, whose
#: magnitude is then at least this; a parsed document holding such a float is read again by json.
_BIG = 2.0 ** 63


def _may_hold_big_integer(value: Any) -> bool:
    """Whether an orjson-parsed value holds a float of magnitude >= 2**63 (it may have been an
    integer token past 64 bits). A scan of the parsed value, not a regex over the text: a regex
    for long digit runs cost 1.3 ms per line of 256 floats (most of a JSONL ingest), this ~5 us."""
    if type(value) is float:
        return not -_BIG < value < _BIG
    if type(value) is dict:
        value = list(value.values())
    if type(value) is not list or not value:
        return False
    try:  # a list of numbers: two C-speed passes
        return not -_BIG < min(value) or not max(value) < _BIG
    except TypeError:  # strings, lists, dicts, None among them
        return any(_may_hold_big_integer(v) for v in value)


def load_json(text: str | bytes) -> Any:
    """`json.loads(text)`, by orjson where that gives the same value (a seventh of the time on
    small documents: stored documents made up a fifth of a search's hit formatting). What
    orjson refuses (NaN, bytes not UTF-8, nesting past its limit, bad JSON) or may have read
    differently (integers past 64 bits) goes to `json.loads`, which gives what it always gave:
    the value or its own error."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
    if _has_long_number(text) and _may_hold_big_integer(value):  # the text check first: ~0.1 us
        return json.loads(text)
    return value


#: Byte table for `bytes.translate`: each ASCII digit to b"0"; `.`, `e`, `E` and `+` (which
#: precede the digits of a fraction or an exponent, never an integer's) to b"f"; every other
#: byte to b".". An integer token of 19+ digits is then a plain `find` of b"." and 19 b"0"s
#: (~0.1 us per stored document), and a float's long fraction (0.0012345678901234567, most
#: lines of a JSONL of vectors) is not one.
_DIGITS_AS_ZERO = bytes(48 if 48 <= c <= 57 else 102 if c in b".eE+" else 46 for c in range(256))
#: The shortest digit run of an integer orjson may read as a float (-9223372036854775809).
_LONG_RUN = b"0" * 19
_LONG_INTEGER = b"." + _LONG_RUN


def _has_long_number(text: str | bytes) -> bool:
    """Whether `text` holds a run of 19 or more digits not after `.`, `e`, `E` or `+` (an
    integer orjson may read as a float; UTF-8 never puts ASCII digits inside a multi-byte
    character; lone surrogates pass through `surrogatepass` unchanged). A long run anywhere
    else (inside a string, a float's integer part, a negative exponent) counts too, and
    `_may_hold_big_integer` then looks at the parsed value."""
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    digits = raw.translate(_DIGITS_AS_ZERO)
    return digits.startswith(_LONG_RUN) or digits.find(_LONG_INTEGER) >= 0


def load_json_many(texts: list[str]) -> list[Any]:
    """`[load_json(t) for t in texts]` for a search's stored documents: texts without a run of 19
    digits (no integer past orjson's 64 bits) are orjson's values as they are, checked in one
    pass over the batch rather than one scan of each parsed document."""
    if _has_long_number(",".join(texts)):  # each text's own runs: a comma before each
        return [load_json(t) for t in texts]
    out = []
    for text in texts:
        try:
            out.append(orjson.loads(text))
        except orjson.JSONDecodeError:
            out.append(json.loads(text))
    return out


def dump_json(value: Any) -> str:
    """JSON text of a document (as `json.dumps(value, ensure_ascii=False)`, compact), by orjson
    unless it refuses the value (integers past 64 bits); `load_json` reads it back to `value`."""
    if not value:
        return "{}" if isinstance(value, dict) else json.dumps(value, ensure_ascii=False)
    try:
        return orjson.dumps(value).decode()
    except (TypeError, orjson.JSONEncodeError):
        return json.dumps(value, ensure_ascii=False)
