"""HTTP API throughput and latency against the same searches in-process.

Builds a `model: "none"` collection of N clustered 256-d vectors (embedded, no model),
starts `lookalike serve` on a loopback port, and runs the same searches:

  * in-process, one thread, then C threads (`Collection.search`);
  * over HTTP with C concurrent clients (threads, one keep-alive `httpx.Client` each).

Two kinds of query: `{"id": ...}` (a small body) and `{"vector": [256 floats]}` with a
filter (a ~5 KB body). Prints searches/s, client-side p50/p99 latency, and CPU time per
request of the server process and of this process per row.

Clients and server share the machine's cores, so the clients' own cost is measured too: the
client threads run in this process (not the server's), and `GET /v1/health`, a route that
does no work, gives the floor any HTTP request costs the clients and the server here. The CPU
columns (from /proc and getrusage) say where the time went even when other processes make
wall-clock latency noisy.

    python bench/http_search.py [--records 10000] [--searches 2000] [--clients 8] [--client httpx]
"""
from __future__ import annotations

import sys
from pathlib import Path

# Keep this folder off the front of sys.path, so no bench file shadows a standard library
# module (`http.client` is used here); search_data is imported from the end of the path.
_HERE = str(Path(__file__).resolve().parent)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(_HERE)] + [_HERE]

import argparse
import os
import resource
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


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of process `pid` (None: this process)."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(searches: list[dict], workers: int, search: Callable[[dict], dict],
        server: int | None = None) -> tuple[float, np.ndarray, float, float]:
    """(searches/s, latencies in ms, CPU ms per search of this process, of the `server` process)
    for `searches` spread over `workers` threads."""
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
            assert result.get("hits") or result.get("status") == "ok", searches[i]

    start, mine, theirs = time.perf_counter(), cpu_seconds(), cpu_seconds(server) if server else 0.0
    with ThreadPoolExecutor(workers) as pool:
        for f in [pool.submit(worker) for _ in range(workers)]:
            f.result()
    took = time.perf_counter() - start
    n = len(searches)
    server_ms = (cpu_seconds(server) - theirs) / n * 1000 if server else 0.0
    return n / took, latencies, (cpu_seconds() - mine) / n * 1000, server_ms


def http_search(url: str, kind: str) -> Callable[[dict], dict]:
    """A search over HTTP (an empty body: GET /v1/health), one keep-alive connection per thread.

    `kind` "http.client": the standard library's connection with orjson, about the least a
    Python client can spend per request; "httpx": an `httpx.Client`, as an application would
    use (several times the client CPU, which the server's searches compete with here)."""
    local = threading.local()
    search_path = "/v1/collections/bench/search"
    if kind == "httpx":
        def search(body: dict) -> dict:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(base_url=url, timeout=60)
            response = client.post(search_path, json=body) if body else client.get("/v1/health")
            response.raise_for_status()
            return response.json()
        return search
    import http.client
    import orjson
    host, port = url.removeprefix("http://").split(":")
    headers = {"Content-Type": "application/json"}

    def search_std(body: dict) -> dict:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = http.client.HTTPConnection(host, int(port), timeout=60)
        if body:
            conn.request("POST", search_path, body=orjson.dumps(body), headers=headers)
        else:
            conn.request("GET", "/v1/health")
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")
        return orjson.loads(data)
    return search_std


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=10_000)
    ap.add_argument("--searches", type=int, default=2000, help="searches per row")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="passes over the paths, alternating")
    ap.add_argument("--client", choices=("http.client", "httpx"), default="http.client",
                    help="the HTTP client the client threads use (see http_search)")
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
            remote = http_search(url, args.client)
            for body in kinds["id"][:50] + kinds["vector+filter"][:50]:  # warm up both, and check they agree
                a, b = local(body), remote(body)
                assert [h["_id"] for h in a["hits"]] == [h["_id"] for h in b["hits"]]
            rows = []
            paths = (("in-process, 1 thread", 1, local), ("HTTP, 1 client", 1, remote),
                     (f"in-process, {args.clients} threads", args.clients, local),
                     (f"HTTP, {args.clients} clients", args.clients, remote))
            kinds["health (no work)"] = [{}] * args.searches  # the floor: what any request costs
            for kind, searches in kinds.items():
                runs = [p for p in paths if p[2] is remote] if not searches[0] else paths
                got: dict[str, list] = {name: [] for name, _, _ in runs}
                for _ in range(args.rounds):  # alternate the paths, so a busy machine's slow minutes hit all
                    for name, workers, fn in runs:
                        got[name].append(run(searches, workers, fn, proc.pid if fn is remote else None))
                for name, _, _ in runs:
                    rates, lats, mine, theirs = zip(*got[name])
                    lat = np.concatenate(lats)
                    rows.append((kind, name, float(np.median(rates)), np.percentile(lat, 50), np.percentile(lat, 99),
                                 float(np.median(mine)), float(np.median(theirs))))
            parts = breakdown(db, col, kinds["vector+filter"][:200])
        finally:
            db.close()
            proc.terminate()
            proc.wait(15)

    cores = len(os.sched_getaffinity(0))
    print(f"\n{args.records} records x {DIM}-d (model none), k={args.k}, {args.searches} searches per row, "
          f"{cores} cores, server and {args.client} clients on one machine; CPU ms per request: of this process (the "
          f"client threads, or the in-process search) and of the server process\n")
    print(f"| {'query':<16} | {'path':<24} | {'searches/s':>10} | {'p50 ms':>7} | {'p99 ms':>7} "
          f"| {'client CPU':>10} | {'server CPU':>10} |")
    print(f"|{'-' * 18}|{'-' * 26}|{'-' * 12}|{'-' * 9}|{'-' * 9}|{'-' * 12}|{'-' * 12}|")
    for kind, name, rate, p50, p99, mine, theirs in rows:
        print(f"| {kind:<16} | {name:<24} | {rate:>10.0f} | {p50:>7.2f} | {p99:>7.2f} | {mine:>10.3f} "
              f"| {theirs if theirs else float('nan'):>10.3f} |")
    print(f"\n| query | p50 added by the server, 1 client (ms) | HTTP {args.clients} clients / in-process "
          f"{args.clients} threads, searches/s | server CPU per search over the in-process search's (ms) |")
    print("|---|---|---|---|")
    for kind in [k for k in kinds if kinds[k][0]]:
        got = {name: (rate, p50, mine, theirs) for k, name, rate, p50, _, mine, theirs in rows if k == kind}
        added = got["HTTP, 1 client"][1] - got["in-process, 1 thread"][1]
        share = got[f"HTTP, {args.clients} clients"][0] / got[f"in-process, {args.clients} threads"][0]
        over = got["HTTP, 1 client"][3] - got["in-process, 1 thread"][2]
        print(f"| {kind} | {added:.2f} | {share:.2f} | {over:.2f} |")
    print("\nWhere a vector+filter search's server time goes (us per request, in this process, median of 200;"
          " the app called as ASGI without a socket):\n")
    print("| step | us |")
    print("|---|---|")
    for step, us in parts:
        print(f"| {step} | {us:.1f} |")


def breakdown(db, col, bodies: list[dict]) -> list[tuple[str, float]]:
    """The steps of the server's work on one search, each timed alone on the same bodies, and the
    whole app (middleware, routing, the search) called in-process with and without the short path."""
    import asyncio
    import inspect
    import json
    from lookalike.jsontext import load_json
    from lookalike.server import create_app, schemas
    from lookalike.server.errors import SafeJSONResponse
    raw = [json.dumps(b).encode() for b in bodies]
    parsed = [load_json(r) for r in raw]
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

    def whole_app(fast: bool, method: str, path: str) -> float:
        options = {"fast_search": fast} if has_fast_path else {}  # an older server has no short path
        app = create_app(db, auth_failures=False, **options)

        async def call(body: bytes) -> float:
            headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
                     "path": path, "raw_path": path.encode(), "root_path": "", "scheme": "http",
                     "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
                     "server": ("127.0.0.1", 2), "state": {}}
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive() -> dict:
                return messages.pop() if messages else {"type": "http.disconnect"}

            async def send(message: dict) -> None:
                if message["type"] == "http.response.start":
                    assert message["status"] == 200, message
            t = time.perf_counter()
            await app(scope, receive, send)
            return time.perf_counter() - t

        async def calls() -> float:
            times = [await call(r) for r in raw + raw]
            return float(np.median(times[len(raw):]) * 1e6)  # the first pass warms up
        return asyncio.run(calls())
    path = "/v1/collections/bench/search"
    has_fast_path = "fast_search" in inspect.signature(create_app).parameters
    short = [("whole app: search, the short path (fastpath.FastSearch)", whole_app(True, "POST", path))] \
        if has_fast_path else []
    return [("body JSON parse (load_json: orjson)", each(load_json, raw)),
            ("pydantic SearchBody validation (lone-surrogate check included)",
             each(schemas.SearchBody.model_validate, parsed)),
            ("model_dump(exclude_unset)", each(lambda m: m.model_dump(exclude_unset=True), models)),
            ("Collection.search (its own validation included)", each(search, bodies)),
            ("response JSON, the server's response class (orjson)", each(lambda r: SafeJSONResponse(r).body, results)),
            ("whole app: GET /v1/health (middleware, routing)", whole_app(True, "GET", "/v1/health")),
            *short, ("whole app: search through FastAPI's route (worker thread)", whole_app(False, "POST", path))]


if __name__ == "__main__":
    main()
