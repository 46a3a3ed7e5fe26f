"""load_json/dump_json read and write exactly what the standard json module would."""
from __future__ import annotations

import json
import math

from hypothesis import given, settings, strategies as st

from lookalike.jsontext import dump_json, load_json

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=6), max_leaves=40)


def same(a, b) -> bool:
    """Equal with the same types all the way down (1 != 1.0 here; NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


@settings(max_examples=400, deadline=None)
@given(values)
def test_load_json_reads_what_json_reads(value):
    text = json.dumps(value)
    assert same(load_json(text), json.loads(text))
    assert same(load_json(text.encode()), json.loads(text))


@settings(max_examples=200, deadline=None)
@given(values.filter(lambda v: "NaN" not in json.dumps(v) and "Infinity" not in json.dumps(v)))
def test_dump_json_round_trips(value):
    assert same(load_json(dump_json(value)), value)


def test_integers_past_64_bits_stay_exact():
    for text in ["-9223372036854775809", "18446744073709551616", '{"a": [1, "x", 123456789012345678901]}',
                 '{"v": [0.5, -9223372036854775809]}']:
        assert same(load_json(text), json.loads(text)), text
    # floats with long fractions and vectors read as orjson reads them (same values as json)
    line = json.dumps({"_id": "r", "_vector": [0.012345678901234567, -0.9876543210987654] * 128})
    assert same(load_json(line), json.loads(line))
