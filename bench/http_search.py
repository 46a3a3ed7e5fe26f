"""HTTP API throughput and latency against the same searches in-process.

Builds a `model: "none"` collection of N clustered 256-d vectors (embedded, no model),
starts `lookalike serve` on a loopback port, and runs the same searches:

  * in-process, one thread, then C threads (`Collection.search`);
  * over HTTP with C concurrent clients (threads, one keep-alive `httpx.Client` each).

Two kinds of query: `{"id": ...}` (a small body) and `{"vector": [256 floats]}` with a
filter (a ~5 KB body). Prints searches/s and client-side p50/p99 latency per row.

    python bench/http_search.py [--records 10000] [--searches 2000] [--clients 8]
"""
from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: keep its folder off the front of sys.path, or it would shadow
# the standard library's `http` package; search_data is imported from the end of the path.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(_HERE)] + [_HERE]

import argparse
import os
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import httpx
import numpy as np

from search_data import clustered  # noqa: E402

import lookalike  # noqa: E402

DIM = 256


def build(data: Path, n: int) -> list[np.ndarray]:
    """The collection `bench` of n vectors (ids v0..), with a `shard` field to filter on; returns query vectors."""
    vectors, queries = clustered(n, DIM, 512, seed=7)
    with lookalike.connect(data) as db:
        col = db.collection("bench", create=True, model="none", dim=DIM)
        records = ({"_id": f"v{i}", "_vector": vectors[i].tolist(), "shard": i % 10, "price": float(i % 100)}
                   for i in range(n))
        results = col.upsert(records, batch_size=10_000)
        col._store.wait_index()
        assert all(r["status"] == "inserted" for r in results)
    return list(queries)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_") or k == "LOOKALIKE_DEVICE"}
    proc = subprocess.Popen([sys.executable, "-m", "lookalike.cli", "serve", "--data", str(data), "--port", str(port),
                             "--no-access-log", "--log-level", "warning"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def run(searches: list[dict], workers: int, search: Callable[[dict], dict]) -> tuple[float, np.ndarray]:
    """(searches/s, latencies in ms) for `searches` spread over `workers` threads."""
    latencies = np.zeros(len(searches))
    position = iter(range(len(searches)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                i = next(position, None)
            if i is None:
                return
            start = time.perf_counter()
            result = search(searches[i])
            latencies[i] = (time.perf_counter() - start) * 1000
            assert result["hits"], searches[i]

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(worker) for _ in range(workers)]:
            f.result()
    return len(searches) / (time.perf_counter() - start), latencies


def http_search(url: str) -> Callable[[dict], dict]:
    local = threading.local()

    def search(body: dict) -> dict:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url + "/v1/collections/bench", timeout=60)
        response = client.post("/search", json=body)
        response.raise_for_status()
        return response.json()
    return search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--searches", type=int, default=2000, help="searches per row")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the paths, alternating")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="lookalike-http-bench-") as tmp:
        data = Path(tmp) / "data"
        t0 = time.perf_counter()
        queries = build(data, args.records)
        print(f"built {args.records} x {DIM}-d records in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
        rng = np.random.default_rng(1)
        kinds = {
            "id": [{"query": {"id": f"v{i}"}, "k": args.k} for i in rng.integers(0, args.records, args.searches)],
            "vector+filter": [{"query": {"vector": [round(float(x), 6) for x in queries[i % len(queries)]]},
                               "k": args.k, "filter": {"shard": {"$in": [1, 2, 3]}, "price": {"$lt": 80}}}
                              for i in range(args.searches)],
        }
        proc, url = start_server(data)
        db = lookalike.connect(data, read_only=True)  # the server holds the writer lock
        try:
            col = db.collection("bench")

            def local(body: dict) -> dict:
                params = dict(body)
                return col.search(params.pop("query"), **params)
            remote = http_search(url)
            for body in kinds["id"][:50] + kinds["vector+filter"][:50]:  # warm up both, and check they agree
                a, b = local(body), remote(body)
                assert [h["_id"] for h in a["hits"]] == [h["_id"] for h in b["hits"]]
            rows = []
            paths = (("in-process, 1 thread", 1, local), ("HTTP, 1 client", 1, remote),
                     (f"in-process, {args.clients} threads", args.clients, local),
                     (f"HTTP, {args.clients} clients", args.clients, remote))
            for kind, searches in kinds.items():
                lat_by: dict[str, list] = {name: [] for name, _, _ in paths}
                rate_by: dict[str, list] = {name: [] for name, _, _ in paths}
                for _ in range(args.rounds):  # alternate the paths, so a busy machine's slow minutes hit all
                    for name, workers, fn in paths:
                        rate, lat = run(searches, workers, fn)
                        lat_by[name].append(lat)
                        rate_by[name].append(rate)
                for name, _, _ in paths:
                    lat = np.concatenate(lat_by[name])
                    rows.append((kind, name, float(np.median(rate_by[name])), np.percentile(lat, 50),
                                 np.percentile(lat, 99)))
            parts = breakdown(col, kinds["vector+filter"][:200])
        finally:
            db.close()
            proc.terminate()
            proc.wait(15)

    cores = len(os.sched_getaffinity(0))
    print(f"\n{args.records} records x {DIM}-d (model none), k={args.k}, {args.searches} searches per row, "
          f"{cores} cores, server and clients on one machine\n")
    print(f"| {'query':<14} | {'path':<24} | {'searches/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} |")
    print(f"|{'-' * 16}|{'-' * 26}|{'-' * 12}|{'-' * 9}|{'-' * 9}|")
    for kind, name, rate, p50, p99 in rows:
        print(f"| {kind:<14} | {name:<24} | {rate:>10.0f} | {p50:>7.2f} | {p99:>7.2f} |")
    print(f"\n| query | p50 added by the server, 1 client (ms) | HTTP {args.clients} clients / in-process "
          f"{args.clients} threads, searches/s |")
    print("|---|---|---|")
    for kind in kinds:
        got = {name: (rate, p50) for k, name, rate, p50, _ in rows if k == kind}
        added = got["HTTP, 1 client"][1] - got["in-process, 1 thread"][1]
        share = got[f"HTTP, {args.clients} clients"][0] / got[f"in-process, {args.clients} threads"][0]
        print(f"| {kind} | {added:.2f} | {share:.2f} |")
    print("\nWhere a vector+filter search's server time goes (us per request, in-process, median of 200):\n")
    print("| step | us |")
    print("|---|---|")
    for step, us in parts:
        print(f"| {step} | {us:.1f} |")


def breakdown(col, bodies: list[dict]) -> list[tuple[str, float]]:
    """The steps of the server's work on one search, each timed alone on the same bodies."""
    import json
    from lookalike.server import schemas
    from lookalike.server.errors import SafeJSONResponse
    from starlette.responses import JSONResponse
    raw = [json.dumps(b).encode() for b in bodies]
    parsed = [json.loads(r) for r in raw]
    models = [schemas.SearchBody.model_validate(p) for p in parsed]
    results = []
    for b in bodies:
        params = dict(b)
        results.append(col.search(params.pop("query"), **params))

    def each(fn, items) -> float:
        times = []
        for item in items:
            t = time.perf_counter()
            fn(item)
            times.append(time.perf_counter() - t)
        return float(np.median(times) * 1e6)

    def search(body: dict) -> None:
        params = dict(body)
        col.search(params.pop("query"), **params)
    return [("body JSON parse (json.loads, as FastAPI)", each(json.loads, raw)),
            ("pydantic SearchBody validation", each(schemas.SearchBody.model_validate, parsed)),
            ("model_dump(exclude_unset)", each(lambda m: m.model_dump(exclude_unset=True), models)),
            ("Collection.search (its own validation included)", each(search, bodies)),
            ("response JSON, json.dumps (starlette JSONResponse)", each(lambda r: JSONResponse(r).body, results)),
            ("response JSON, the server's response class", each(lambda r: SafeJSONResponse(r).body, results))]


if __name__ == "__main__":
    main()
