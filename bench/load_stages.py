"""Where a bulk load's CPU goes, stage by stage: `col.upsert` and `lookalike ingest` (in process).

    python bench/load_stages.py --size 200000            # both paths, batches of 20k
    python bench/load_stages.py --size 100000 --rows cli

The same clustered 256-d vectors as bench/load_vectors.py. Each stage's functions are wrapped
with timers: wall seconds and the CPU seconds of the thread running them (`time.thread_time`;
FAISS's add also runs on its OpenMP threads, so its CPU is the process's minus every Python
stage's). `cli` runs `lookalike.cli.main` in this process (its JSONL reading is the main
thread's CPU less the batches' writes). Stages nest: a store write's CPU includes the inline
first build and any save it triggered; the table's "own" column takes nested stages out.
Measure CPU seconds on a shared machine; wall seconds move with the other jobs.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[0] = str(HERE.parent)

import lookalike  # noqa: E402
from lookalike.cli.main import main as cli_main  # noqa: E402
from lookalike.index import manager  # noqa: E402
from lookalike.ingest import pipeline  # noqa: E402
from lookalike.store.embedded import collection as embedded  # noqa: E402
from bench import search_data  # noqa: E402

#: (stage, owner class, method): each call's wall and thread CPU seconds are summed per stage.
STAGES = [
    ("record checks (prepare thread)", pipeline.Ingestor, "_prepare"),
    ("store write (main thread)", embedded.EmbeddedCollection, "write"),
    ("index build (first graph)", manager.CollectionIndex, "_build"),
    ("index adds (FAISS)", manager.CollectionIndex, "_add"),
    ("calibration", manager.CollectionIndex, "_measure"),
    ("index saves", manager.CollectionIndex, "save"),
]

_totals: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0])  # wall, cpu, nested cpu, calls
_stack = threading.local()


def _wrap(stage: str, owner: type, name: str) -> None:
    inner = getattr(owner, name)

    @functools.wraps(inner)
    def timed(*args, **kwargs):
        outer = getattr(_stack, "frames", None)
        if outer is None:
            outer = _stack.frames = []
        outer.append(0.0)
        t, c = time.perf_counter(), time.thread_time()
        try:
            return inner(*args, **kwargs)
        finally:
            cpu = time.thread_time() - c
            nested = outer.pop()
            row = _totals[stage]
            row[0] += time.perf_counter() - t
            row[1] += cpu
            row[2] += nested
            row[3] += 1
            if outer:
                outer[-1] += cpu
    setattr(owner, name, timed)


def run_upsert(data, batch: int, folder: Path) -> None:
    db = lookalike.connect(folder)
    col = db.collection("v", create=True, model="none", dim=data.shape[1], index={"target_recall": 0.95})
    for start in range(0, len(data), batch):
        rows = range(start, min(start + batch, len(data)))
        col.upsert([{"_id": f"r{i}", "_vector": data[i].tolist(), "p": i % 10} for i in rows], batch_size=batch)
    col._store.wait_index()
    db.close()


def run_cli(data, batch: int, folder: Path) -> float:
    """Write the JSONL (untimed), then ingest it; returns the untimed seconds of CPU."""
    c = time.process_time()
    catalog = folder / "vectors.jsonl"
    with open(catalog, "w") as fh:
        for i in range(len(data)):
            fh.write(json.dumps({"_id": f"r{i}", "_vector": data[i].tolist(), "p": i % 10}) + "\n")
    db = lookalike.connect(folder / "data")
    db.collection("v", create=True, model="none", dim=data.shape[1], index={"target_recall": 0.95})
    db.close()
    untimed = time.process_time() - c
    rc = cli_main(["ingest", str(catalog), "-c", "v", "--data", str(folder / "data"), "-q"])
    assert rc == 0, rc
    return untimed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--rows", default="upsert,cli", help="comma-separated: upsert, cli")
    args = ap.parse_args()
    for stage, owner, name in STAGES:
        _wrap(stage, owner, name)
    data, _ = search_data.clustered(args.size, args.dim, 1, seed=1)
    print(f"# {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; {args.size:,} x {args.dim}-d, "
          f"batches of {args.batch:,}")
    for row in [r.strip() for r in args.rows.split(",") if r.strip()]:
        _totals.clear()
        folder = Path(tempfile.mkdtemp(prefix="lookalike-stages-"))
        try:
            main_cpu = time.thread_time()
            t, c = time.perf_counter(), time.process_time()
            untimed = run_cli(data, args.batch, folder) if row == "cli" else run_upsert(data, args.batch, folder) or 0.0
            wall, cpu = time.perf_counter() - t, time.process_time() - c - untimed
            main_cpu = time.thread_time() - main_cpu - untimed
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        python = sum(v[1] - v[2] for k, v in _totals.items() if k != "index adds (FAISS)")
        print(f"\n## {row}: {wall:.1f} s wall, {cpu:.1f} CPU s ({args.size / wall:,.0f} vec/s, "
              f"load average {os.getloadavg()[0]:.1f})")
        print("| stage | calls | wall s | thread CPU s | own CPU s |")
        print("|---|---|---|---|---|")
        for stage, _, _ in STAGES:
            w, c_, nested, n = _totals.get(stage, [0.0, 0.0, 0.0, 0])
            print(f"| {stage} | {n} | {w:.1f} | {c_:.1f} | {c_ - nested:.1f} |")
        writes = _totals.get("store write (main thread)", [0.0, 0.0, 0.0, 0])[1]
        print(f"| main thread outside the writes (caller / JSONL reading) | | | {main_cpu - writes:.1f} | |")
        print(f"| FAISS (process CPU less the Python stages' own) | | | | {cpu - python - (main_cpu - writes):.1f} |")


if __name__ == "__main__":
    main()
