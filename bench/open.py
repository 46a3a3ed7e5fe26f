"""Cold-start time of a big collection: opening with the saved field index vs rebuilding it.

Run: python bench/open.py [--records 300000]

Writes N records (precomputed 8-d vectors, catalogue-like metadata as in bench/filters.py)
through the store API, closes the database (which saves the field-index snapshot), then
opens it again, in turn:

- `snapshot + slot table`: the saved snapshot as written (the database's write count still
  equals the one it was saved at, so the slot table comes from it: no record row is read);
- `snapshot, records read`: the same snapshot without its write state, so every record's id,
  slot and content hash is read from SQLite to check it (what every open did before);
- `rebuild`: no snapshot; every record's JSON is parsed into the field index;

and checks that all three answer the same filters.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

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


def open_and_filter(path: Path) -> tuple[float, float, list[int]]:
    """(wall s, CPU s of this process) to open read-only (as a writer would, minus re-saving a
    snapshot it finds stale) and count the records; and the filter counts."""
    start, cpu = time.perf_counter(), time.process_time()
    db = lookalike.connect(path, read_only=True)
    col = db.collection("c")
    col.count()
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    store = col._store
    counts = [int((store._fields.mask(parse_filter(f), store.n_slots) & store._alive[: store.n_slots]).sum())
              for f in FILTERS]
    db.close()
    return took, cpu, counts


def without_state(snapshot: Path) -> bytes:
    """The snapshot's bytes with its write state removed (so opening must read the records)."""
    with np.load(snapshot) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(bytes(arrays["meta"]).decode())
    meta.pop("state", None)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    other = snapshot.with_name("stateless.npz")
    np.savez(other, **arrays)
    content = other.read_bytes()
    other.unlink()
    return content


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--keep", default=None, help="data folder kept and reused (written once; the snapshot is put back as saved)")
    args = ap.parse_args()
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lookalike-open-"))
    try:
        start = time.perf_counter()
        if not (root / "fields" / "c.0.npz").exists():
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
        stateless = without_state(snapshot)
        modes = {"rebuild": None, "records": stateless, "table": saved}
        labels = {"rebuild": "rebuild field index", "records": "snapshot, records read",
                  "table": "snapshot + slot table"}
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        cpus: dict[str, list[float]] = {mode: [] for mode in modes}
        answers: dict[str, list[int]] = {}
        for _ in range(args.repeat):
            for mode, content in modes.items():
                if content is None:
                    snapshot.unlink()
                else:
                    snapshot.write_bytes(content)
                took, cpu, counts = open_and_filter(root)
                times[mode].append(took)
                cpus[mode].append(cpu)
                answers.setdefault(mode, counts)
                assert counts == answers[mode]
        assert answers["table"] == answers["records"] == answers["rebuild"], answers
        print(f"\n{args.records:,} records written in {write:.0f} s; snapshot {size / 1e6:.0f} MB; "
              f"same filter counts every way: {answers['table']}\n")
        print(f"| {'open':<24} | {'median s':>8} | {'runs':>20} | {'CPU s':>6} | vs rebuild |")
        print(f"|{'-' * 26}|{'-' * 10}|{'-' * 22}|{'-' * 8}|------------|")
        base = statistics.median(times["rebuild"])
        for mode in modes:
            med = statistics.median(times[mode])
            runs = " ".join(f"{t:.2f}" for t in times[mode])
            cpu = statistics.median(cpus[mode])
            print(f"| {labels[mode]:<24} | {med:>8.2f} | {runs:>20} | {cpu:>6.2f} | {base / med:>9.1f}x |")
        snapshot.write_bytes(saved)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
