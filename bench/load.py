"""Load: concurrent clients mixing searches and upserts against a loopback server.

Starts `lookalike serve` on a loopback port (admin and search keys), fills a `model: "none"`
collection, then runs `--clients` threads (default 8) for `--duration` seconds (default
60). Each request is, at random: a search by vector (60 %), a search by id with a filter
(15 %), an upsert of a batch of new records (15 %), or an update of existing ones (10 %).
Searches use the search key, writes the admin key.

Prints a table per operation (count, throughput, p50/p99 latency, errors) and checks that
there were no errors (any non-2xx answer or transport error counts) and that the final
record count equals the records the server acknowledged, both over HTTP and after a clean
shutdown, reopening the folder with `lookalike.connect`. Exits 1 if a check fails.

    python bench/load.py                    # 8 clients, 60 s
    python bench/load.py --duration 600 --clients 16 --records 100000
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from collections import defaultdict
import importlib.util
from pathlib import Path

# a script here named like a standard module would shadow the standard library's `http` package: keep this folder off sys.path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402
import numpy as np  # noqa: E402


def _crash_module():
    """bench/crash.py, for its loopback server runner (loaded by path: this folder is off sys.path)."""
    spec = importlib.util.spec_from_file_location("lookalike_bench_crash", _HERE / "crash.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


Server = _crash_module().Server

ADMIN, SEARCH = "load-admin-key", "load-search-key"
CATEGORIES = ("shoes", "bags", "hats", "coats", "belts")


def vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def record(rid: str, vec: np.ndarray, i: int) -> dict:
    return {"_id": rid, "_vector": [round(float(x), 6) for x in vec], "category": CATEGORIES[i % len(CATEGORIES)],
            "price": i % 500, "version": 0}


def fill(url: str, n: int, dim: int, seed: int) -> None:
    """Create the collection and stream `n` records into it as NDJSON."""
    rng = np.random.default_rng(seed)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=600) as c:
        r = c.put("/v1/collections/load", json={"model": "none", "dim": dim})
        r.raise_for_status()
        for start in range(0, n, 5000):
            count = min(5000, n - start)
            vecs = vectors(rng, count, dim)
            body = "".join(json.dumps(record(f"p{start + i}", vecs[i], start + i)) + "\n" for i in range(count))
            r = c.post("/v1/collections/load/records", content=body.encode(),
                       headers={"Content-Type": "application/x-ndjson"})
            r.raise_for_status()
            if any(x["status"] == "error" for x in r.json()["results"]):
                raise RuntimeError("prefill failed")


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.samples: list[str] = []
        self.new_ids: set[str] = set()

    def add(self, op: str, seconds: float, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.latency[op].append(seconds)
            if not ok:
                self.errors[op] += 1
                if len(self.samples) < 5:
                    self.samples.append(f"{op}: {detail[:200]}")


def worker(url: str, number: int, prefilled: int, dim: int, stop: threading.Event, stats: Stats,
           batch: int) -> None:
    rng = random.Random(number)
    nrng = np.random.default_rng(1000 + number)
    reader = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {SEARCH}"}, timeout=60)
    writer = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=60)
    made = 0
    try:
        while not stop.is_set():
            roll = rng.random()
            if roll < 0.60:
                op, client, path = "search vector", reader, "search"
                body = {"query": {"vector": vectors(nrng, 1, dim)[0].round(6).tolist()}, "k": 10}
            elif roll < 0.75:
                op, client, path = "search id+filter", reader, "search"
                body = {"query": {"id": f"p{rng.randrange(prefilled)}"}, "k": 10,
                        "filter": {"category": rng.choice(CATEGORIES), "price": {"$lt": rng.randrange(50, 500)}}}
            elif roll < 0.90:
                op, client, path = "upsert new", writer, "records"
                ids = [f"w{number}-{made + i}" for i in range(batch)]
                made += batch
                vecs = vectors(nrng, batch, dim)
                body = {"records": [record(rid, vecs[i], i) for i, rid in enumerate(ids)]}
            else:
                op, client, path = "upsert update", writer, "records"
                picks = rng.sample(range(prefilled), batch)
                vecs = vectors(nrng, batch, dim)
                body = {"records": [{**record(f"p{p}", vecs[i], p), "version": rng.randrange(1, 10**6)}
                                    for i, p in enumerate(picks)]}
            started = time.perf_counter()
            try:
                r = client.post(f"/v1/collections/load/{path}", json=body)
                ok = r.status_code == 200
                detail = r.text
                if ok and path == "records":
                    results = r.json()["results"]
                    ok = not any(x["status"] == "error" for x in results)
                    if ok and op == "upsert new":
                        with stats.lock:
                            stats.new_ids.update(x["_id"] for x in results)
                elif ok:
                    ok = len(r.json()["hits"]) > 0
            except httpx.HTTPError as exc:
                ok, detail = False, repr(exc)
            stats.add(op, time.perf_counter() - started, ok, detail)
    finally:
        reader.close()
        writer.close()


def table(stats: Stats, wall: float) -> str:
    lines = ["| operation | requests | req/s | p50 ms | p99 ms | errors |", "|---|---|---|---|---|---|"]
    everything: list[float] = []
    for op in ("search vector", "search id+filter", "upsert new", "upsert update"):
        lat = stats.latency.get(op, [])
        everything += lat
        if lat:
            lines.append(f"| {op} | {len(lat)} | {len(lat) / wall:.1f} | {np.percentile(lat, 50) * 1000:.1f} "
                         f"| {np.percentile(lat, 99) * 1000:.1f} | {stats.errors.get(op, 0)} |")
    if everything:
        lines.append(f"| all | {len(everything)} | {len(everything) / wall:.1f} "
                     f"| {np.percentile(everything, 50) * 1000:.1f} | {np.percentile(everything, 99) * 1000:.1f} "
                     f"| {sum(stats.errors.values())} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--records", type=int, default=20_000, help="records in the collection before the load")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8, help="records per upsert request")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="lookalike-load-"))
    data = folder / "data"
    server = Server(data, folder / "server.log", admin_key=ADMIN, search_key=SEARCH).start()
    failures: list[str] = []
    try:
        t = time.perf_counter()
        fill(server.url, args.records, args.dim, args.seed)
        print(f"prefilled {args.records} records ({args.dim}-d) in {time.perf_counter() - t:.1f} s; "
              f"{args.clients} clients for {args.duration:.0f} s", file=sys.stderr, flush=True)
        stats, stop = Stats(), threading.Event()
        threads = [threading.Thread(target=worker, args=(server.url, i, args.records, args.dim, stop, stats, args.batch))
                   for i in range(args.clients)]
        started = time.perf_counter()
        for th in threads:
            th.start()
        time.sleep(args.duration)
        stop.set()
        for th in threads:
            th.join(120)
        wall = time.perf_counter() - started
        print(table(stats, wall))
        expected = args.records + len(stats.new_ids)
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {SEARCH}"}, timeout=60) as c:
            over_http = c.get("/v1/collections/load").json()["count"]
        errors = sum(stats.errors.values())
        if errors:
            failures.append(f"{errors} errors, e.g. {stats.samples}")
        if over_http != expected:
            failures.append(f"count over HTTP is {over_http}, expected {expected}")
    finally:
        server.stop()
    import lookalike
    with lookalike.connect(data) as db:
        reopened = db.collection("load").count()
    if reopened != expected:
        failures.append(f"count after reopening is {reopened}, expected {expected}")
    print(f"\nfinal count: {over_http} over HTTP, {reopened} after a clean shutdown and reopen; expected {expected} "
          f"({args.records} prefilled + {len(stats.new_ids)} acknowledged new)")
    shutil.rmtree(folder, ignore_errors=True)
    for f in failures:
        print(f"FAILED: {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
