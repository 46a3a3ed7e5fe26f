"""Filter speed on the field index: milliseconds per filter over N records.

Run: python bench/filters.py [--records 1000000]

Builds the embedded store's field index over synthetic catalogue metadata (category,
price, tags list, nested attrs, booleans) and times typical filters, against a plain Python
scan of the same dicts as the baseline.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lookalike.store.field_index import FieldIndex  # noqa: E402
from lookalike.store.filters import parse_filter  # noqa: E402

FILTERS = {
    "equality": ({"category": "shoes"}, lambda d: d["category"] == "shoes"),
    "range": ({"price": {"$gte": 20, "$lt": 40}}, lambda d: 20 <= d["price"] < 40),
    "list contains": ({"tags": "sale"}, lambda d: "sale" in d["tags"]),
    "nested + bool": ({"attrs.color": "red", "in_stock": True}, lambda d: d["attrs"]["color"] == "red" and d["in_stock"]),
    "$or of $in": ({"$or": [{"category": {"$in": ["bags", "hats"]}}, {"price": {"$lt": 5}}]},
                   lambda d: d["category"] in ("bags", "hats") or d["price"] < 5),
    "selective (0.1%)": ({"sku_group": 7}, lambda d: d["sku_group"] == 7),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(0)
    cats = ["shoes", "bags", "hats", "shirts", "dresses", "watches", "belts", "socks"]
    colors = ["red", "blue", "green", "black", "white"]
    docs = [{"category": rng.choice(cats), "price": round(rng.uniform(1, 100), 2),
             "tags": rng.sample(["sale", "new", "eco", "limited", "bestseller"], rng.randint(0, 3)),
             "attrs": {"color": rng.choice(colors), "size": rng.randint(30, 48)},
             "in_stock": rng.random() > 0.2, "sku_group": rng.randrange(1000)} for _ in range(args.records)]
    start = time.perf_counter()
    index = FieldIndex()
    for i in range(0, len(docs), 100_000):
        index.add(list(range(i, min(i + 100_000, len(docs)))), docs[i:i + 100_000])
    build = time.perf_counter() - start
    print(f"\n{args.records:,} records; field index built in {build:.1f} s\n")
    print(f"| {'filter':<18} | {'matches':>9} | {'index ms':>9} | {'python scan ms':>14} | {'speed-up':>8} |")
    print(f"|{'-' * 20}|{'-' * 11}|{'-' * 11}|{'-' * 16}|{'-' * 10}|")
    for name, (spec, python) in FILTERS.items():
        node = parse_filter(spec)
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            mask = index.mask(node, len(docs))
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        want = sum(1 for d in docs if python(d))
        scan = time.perf_counter() - t
        assert int(mask.sum()) == want, (name, int(mask.sum()), want)
        best = min(times)
        print(f"| {name:<18} | {want:>9,} | {best * 1000:>9.2f} | {scan * 1000:>14.1f} | {scan / best:>7.0f}x |")


if __name__ == "__main__":
    main()
