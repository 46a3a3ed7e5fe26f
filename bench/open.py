"""Cold-start time of a big collection: opening with the saved field index vs rebuilding it.

Run: python bench/open.py [--records 300000]

Writes N records (precomputed 8-d vectors, catalogue-like metadata as in bench/filters.py)
through the store API, closes the database (which saves the field-index snapshot), then
opens it again (a) with the snapshot and (b) after deleting it (the field index is rebuilt
by parsing every record's JSON), alternating, and checks that both answer the same filters.
"""
from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lookalike  # noqa: E402
from lookalike.store.filters import parse_filter  # noqa: E402

FILTERS = [{"category": "shoes"}, {"price": {"$gte": 20, "$lt": 40}}, {"tags": "sale"},
           {"attrs.color": "red", "in_stock": True}, {"sku_group": 7}]


def records(n: int, seed: int = 0):
    rng = random.Random(seed)
    cats = ["shoes", "bags", "hats", "shirts", "dresses", "watches", "belts", "socks"]
    colors = ["red", "blue", "green", "black", "white"]
    for i in range(n):
        yield {"_id": f"sku-{i}", "_vector": [rng.random() for _ in range(8)], "category": rng.choice(cats),
               "price": round(rng.uniform(1, 100), 2),
               "tags": rng.sample(["sale", "new", "eco", "limited", "bestseller"], rng.randint(0, 3)),
               "attrs": {"color": rng.choice(colors), "size": rng.randint(30, 48)},
               "in_stock": rng.random() > 0.2, "sku_group": rng.randrange(1000), "title": f"item number {i}"}


def open_and_filter(path: Path) -> tuple[float, list[int]]:
    start = time.perf_counter()
    db = lookalike.connect(path)
    col = db.collection("c")
    col.count()
    took = time.perf_counter() - start
    store = col._store
    counts = [int((store._fields.mask(parse_filter(f), store.n_slots) & store._alive[: store.n_slots]).sum())
              for f in FILTERS]
    db.close()
    return took, counts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="lookalike-open-"))
    try:
        start = time.perf_counter()
        with lookalike.connect(root) as db:
            col = db.collection("c", create=True, model="none", dim=8)
            batch: list[dict] = []
            for rec in records(args.records):
                batch.append(rec)
                if len(batch) == 5000:
                    col.upsert(batch)
                    batch = []
            if batch:
                col.upsert(batch)
        write = time.perf_counter() - start
        snapshot = root / "fields" / "c.0.npz"
        size = snapshot.stat().st_size
        saved = snapshot.read_bytes()
        times: dict[str, list[float]] = {"snapshot": [], "rebuild": []}
        answers: dict[str, list[int]] = {}
        for _ in range(args.repeat):
            for mode in ("snapshot", "rebuild"):
                if mode == "rebuild":
                    snapshot.unlink()
                else:
                    snapshot.write_bytes(saved)
                took, counts = open_and_filter(root)
                times[mode].append(took)
                answers.setdefault(mode, counts)
                assert counts == answers[mode]
        assert answers["snapshot"] == answers["rebuild"], answers
        print(f"\n{args.records:,} records written in {write:.0f} s; snapshot {size / 1e6:.0f} MB; "
              f"same filter counts both ways: {answers['snapshot']}\n")
        print(f"| {'open':<28} | {'median s':>8} | {'runs':>20} |")
        print(f"|{'-' * 30}|{'-' * 10}|{'-' * 22}|")
        base = statistics.median(times["rebuild"])
        for mode, label in (("rebuild", "rebuild field index (before)"), ("snapshot", "load saved snapshot")):
            med = statistics.median(times[mode])
            runs = " ".join(f"{t:.2f}" for t in times[mode])
            print(f"| {label:<28} | {med:>8.2f} | {runs:>20} |  {base / med:.1f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
