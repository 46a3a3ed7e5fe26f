"""load_json/dump_json read and write exactly what the standard json module would."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from lookalike.jsontext import dump_json, load_json, load_json_many

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


def test_only_integer_tokens_of_19_digits_send_a_text_to_the_slow_check():
    """A float's long fraction or exponent is no integer orjson could misread: a JSONL line of
    vectors (most hold such fractions) is taken as orjson reads it, without scanning its values;
    a long integer anywhere, and a long run where an integer may start, still count."""
    from lookalike.jsontext import _has_long_number
    line = json.dumps({"_id": "r", "_vector": [0.0012345678901234567, -0.00098765432109876543] * 128})
    assert not _has_long_number(line) and not _has_long_number(line.encode())
    for text in ["1.5e+0000000000000000000001", "[0.5, 1E1234567890123456789]"]:
        assert not _has_long_number(text), text
    for text in ["12345678901234567890", '{"a": -9223372036854775809}', "[1,12345678901234567890]",
                 '{"a":\n1234567890123456789}', "12345678901234567890.5", "1e-1234567890123456789"]:
        assert _has_long_number(text), text
        assert same(load_json(text), json.loads(text))


@pytest.mark.parametrize("texts", [
    ['{"a": 1}', '{"b": -9223372036854775809}', '{"c": "x"}'],  # 19 digits below -2**63: orjson reads a float
    ['{"a": -9223372036854775808, "b": 18446744073709551615}'],  # the ends of orjson's integers
    ['{"a": 1234567890}', '{"b": 1}'], ['1234567890', '123456789'],  # digits meeting across two texts
    ['{"a": NaN}', '{"b": 2}'], ['{"a": 18446744073709551616}'], [], ['{"é": 1.5}'] * 3,
    ['{"a": "sku-12345678901234567890"}', '{"a": 1E400}', '{"a": "caf\\u00e9 \\ud83d\\ude00", "b": "\\ud800"}'],
    ['{"a": "\ud800", "n": 1}'],  # a lone surrogate in the str itself: orjson refuses it, json reads it
    ['0.1234567890', '123456789012345678901'], ['[0.5e+1234567890123456789]', '-12345678901234567890'],
])
def test_load_json_many_gives_each_json_loads_value(texts):
    got = load_json_many(texts)
    assert len(got) == len(texts) and all(same(g, json.loads(t)) for g, t in zip(got, texts))


@settings(max_examples=200, deadline=None)
@given(st.lists(values, max_size=5))
def test_load_json_many_reads_what_json_reads(batch):
    texts = [json.dumps(v) for v in batch]
    assert all(same(g, json.loads(t)) for g, t in zip(load_json_many(texts), texts))


def test_store_get_returns_stored_documents_exactly(tmp_path):
    """The documents a search's hits carry (read in one batch) are the ones written, values and types."""
    import lookalike
    db = lookalike.connect(tmp_path)
    col = db.collection("c", create=True, model="none", dim=2)
    docs = [{"big": -9223372036854775809, "f": 1.0, "i": 1, "s": "sku-12345678901234567890", "n": None},
            {"nested": {"a": [1, 2.5, "x"]}, "u": "café"}, {"huge": 2**70}, {}]
    col.upsert([{"_id": f"r{i}", "_vector": [1.0, i + 0.5], **doc} for i, doc in enumerate(docs)])
    for i, doc in enumerate(docs):
        assert same(col.get(f"r{i}"), {"_id": f"r{i}", **doc})
    hits = col.search({"vector": [1.0, 0.0]}, k=4)["hits"]
    assert [h["_id"] for h in hits] == ["r0", "r1", "r2", "r3"]
    for hit in hits:
        assert same({k: v for k, v in hit.items() if k != "_score"}, {"_id": hit["_id"], **docs[int(hit["_id"][1:])]})
    db.close()
