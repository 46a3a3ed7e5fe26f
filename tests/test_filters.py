"""The filter language: every operator, dotted paths, lists, errors; checked against Python."""
from __future__ import annotations

import random

import numpy as np
import pytest

from lookalike.errors import BadRequest

DOCS = [
    {"_id": "a", "price": 5, "category": "shoes", "tags": ["red", "sale"], "attrs": {"color": "red", "size": 40}, "on_sale": True},
    {"_id": "b", "price": 15.5, "category": "shoes", "tags": ["blue"], "attrs": {"color": "blue", "size": 42}, "on_sale": False},
    {"_id": "c", "price": 25, "category": "bags", "tags": [], "attrs": {"color": "red"}, "note": None},
    {"_id": "d", "price": 35, "category": "hats", "on_sale": True},
    {"_id": "e", "category": "bags", "tags": ["red"], "variants": [{"color": "green"}, {"color": "red"}]},
]


@pytest.fixture
def col(db):
    c = db.collection("f", create=True, model="none", dim=3)
    rng = np.random.default_rng(0)
    c.upsert([{**d, "_vector": rng.normal(size=3).tolist()} for d in DOCS])
    return c


def ids(col, flt):
    hits = col.search({"vector": [1, 0, 0]}, k=100, filter=flt)["hits"]
    return sorted(h["_id"] for h in hits)


@pytest.mark.parametrize("flt,expected", [
    ({"category": "shoes"}, ["a", "b"]),
    ({"category": {"$eq": "bags"}}, ["c", "e"]),
    ({"category": {"$ne": "shoes"}}, ["c", "d", "e"]),
    ({"price": {"$gt": 15.5}}, ["c", "d"]),
    ({"price": {"$gte": 15.5}}, ["b", "c", "d"]),
    ({"price": {"$lt": 15.5}}, ["a"]),
    ({"price": {"$lte": 15.5}}, ["a", "b"]),
    ({"price": {"$gt": 5, "$lt": 35}}, ["b", "c"]),
    ({"category": {"$in": ["hats", "bags"]}}, ["c", "d", "e"]),
    ({"category": {"$nin": ["hats", "bags"]}}, ["a", "b"]),
    ({"price": {"$exists": False}}, ["e"]),
    ({"attrs": {"$exists": True}}, ["a", "b", "c"]),
    ({"attrs.color": "red"}, ["a", "c"]),
    ({"attrs.size": {"$gte": 41}}, ["b"]),
    ({"tags": "red"}, ["a", "e"]),                        # list contains
    ({"tags": {"$in": ["blue", "sale"]}}, ["a", "b"]),
    ({"tags": {"$ne": "red"}}, ["b", "c", "d"]),           # no element equals
    ({"tags": {"$exists": True}}, ["a", "b", "c", "e"]),   # an empty list exists
    ({"variants.color": "green"}, ["e"]),                  # lists of objects
    ({"note": None}, ["a", "b", "c", "d", "e"]),           # null matches missing too
    ({"on_sale": True}, ["a", "d"]),
    ({"on_sale": False}, ["b"]),
    ({"price": 5}, ["a"]),
    ({"price": 5.0}, ["a"]),                               # ints and floats compare as numbers
    ({"category": {"$gt": "bags"}}, ["a", "b", "d"]),     # string ordering
    ({"$or": [{"category": "hats"}, {"price": {"$lt": 10}}]}, ["a", "d"]),
    ({"$and": [{"category": "shoes"}, {"on_sale": True}]}, ["a"]),
    ({"$not": {"category": "shoes"}}, ["c", "d", "e"]),
    ({"price": {"$not": {"$gt": 20}}}, ["a", "b", "e"]),
    ({"category": "shoes", "tags": "blue"}, ["b"]),
    ({"_id": {"$in": ["a", "e"]}}, ["a", "e"]),
    ({"category": "nothing"}, []),
    ({}, ["a", "b", "c", "d", "e"]),
])
def test_operator(col, flt, expected):
    assert ids(col, flt) == expected


@pytest.mark.parametrize("flt,needle", [
    ({"price": {"$foo": 1}}, "unknown filter operator '$foo'"),
    ({"$xor": [{"a": 1}]}, "unknown filter operator '$xor'"),
    ({"price": {"$in": 5}}, "takes a list"),
    ({"price": {"$exists": "yes"}}, "true or false"),
    ({"$or": []}, "non-empty list"),
    ({"price": {"$gt": [1, 2]}}, "not a list"),
    ({"price": {"$gt": True}}, "compares numbers or strings"),
    ({"a..b": 1}, "invalid field path"),
    ({"price": {"$gt": 1, "x": 2}}, "mixes operators"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_filters_are_named(col, flt, needle):
    with pytest.raises(BadRequest, match=needle.replace("$", r"\$").replace("(", r"\(")):
        col.search({"vector": [1, 0, 0]}, filter=flt)


def test_filters_agree_with_python_on_random_data(db):
    """Random records and random range/equality filters: the mask equals a plain Python check."""
    rng = random.Random(1)
    col = db.collection("r", create=True, model="none", dim=2)
    docs = [{"_id": str(i), "n": rng.randint(0, 20), "s": rng.choice("abcde"),
             "l": rng.sample("xyz", rng.randint(0, 3))} for i in range(300)]
    col.upsert([{**d, "_vector": [1.0, float(i)]} for i, d in enumerate(docs)])
    for _ in range(40):
        lo, hi, s, item = rng.randint(0, 20), rng.randint(0, 20), rng.choice("abcdef"), rng.choice("xyzw")
        flt = {"$or": [{"n": {"$gte": lo, "$lt": hi}}, {"s": s}], "l": {"$ne": item}}
        want = sorted(d["_id"] for d in docs if (lo <= d["n"] < hi or d["s"] == s) and item not in d["l"])
        got = sorted(h["_id"] for h in col.search({"vector": [1, 0]}, k=1000, filter=flt)["hits"])
        assert got == want, flt


def test_delete_by_filter(col):
    assert col.delete(filter={"category": "bags"}) == 2
    assert ids(col, {}) == ["a", "b", "d"]
    with pytest.raises(BadRequest, match="empty delete filter"):
        col.delete(filter={})
