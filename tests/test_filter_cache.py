"""Parsed filters are kept by their exact JSON value (store/filters.py): a repeated filter is
one lookup, values parsing tells apart stay apart, and refused filters are refused every time."""
from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import BadRequest
from lookalike.store import filters
from lookalike.store.filters import filter_key, parse_filter


def test_a_repeated_filter_is_the_same_tree_and_key():
    spec = {"brand": "acme", "price": {"$gte": 3, "$lt": 50}, "tags": {"$in": ["a", "b"]}}
    first = parse_filter(spec)
    again = parse_filter({"brand": "acme", "price": {"$gte": 3, "$lt": 50}, "tags": {"$in": ["a", "b"]}})
    assert again is first
    assert filter_key(again) == repr(first)


@pytest.mark.parametrize("a, b", [
    ({"p": 1}, {"p": True}), ({"p": 1}, {"p": 1.0}), ({"p": 0.0}, {"p": -0.0}), ({"p": 0}, {"p": False}),
    ({"p": None}, {"p": "None"}), ({"p": {"$in": [1, 2]}}, {"p": {"$in": [1, True]}}),
])
def test_values_parsing_tells_apart_stay_apart(a, b):
    ta, tb = parse_filter(a), parse_filter(b)
    assert ta is not tb and repr(ta) != repr(tb)
    assert filter_key(ta) != filter_key(tb)
    assert parse_filter(a) is ta and parse_filter(b) is tb


def test_refused_filters_are_refused_every_time():
    for _ in range(3):
        with pytest.raises(BadRequest, match="NaN"):
            parse_filter({"p": float("nan")})
        with pytest.raises(BadRequest, match="mixes operators"):
            parse_filter({"p": {"$gt": 1, "x": 2}})
    deep: dict = {"p": 1}
    for _ in range(40):
        deep = {"$not": deep}
    for _ in range(2):
        with pytest.raises(BadRequest, match="nested too deeply"):
            parse_filter(deep)


def test_large_or_unusual_filters_are_parsed_each_time_and_right():
    big = {"p": {"$in": list(range(500))}}
    assert parse_filter(big) is not parse_filter(big) and parse_filter(big) == parse_filter(big)
    val = np.float64(2.5)  # a float subclass: not kept, parsed as before
    assert parse_filter({"p": val}) == filters.Cond("p", "$eq", 2.5)


def test_changing_a_filter_dict_after_use_gives_its_new_tree():
    spec = {"p": 1}
    first = parse_filter(spec)
    spec["p"] = 2
    assert parse_filter(spec) == filters.Cond("p", "$eq", 2) and parse_filter(spec) is not first


def test_the_kept_filters_are_bounded(monkeypatch):
    monkeypatch.setattr(filters, "PARSED_MAX", 8)
    trees = [parse_filter({"n": i}) for i in range(30)]
    assert len(filters._PARSED) <= 8 and len(filters._KEYS) <= 9
    assert [t.value for t in trees] == list(range(30))
    assert filter_key(trees[0]) == repr(trees[0])  # forgotten: its key is its repr again
