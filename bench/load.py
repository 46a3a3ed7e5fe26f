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

With `--attackers N`, a slow-URL attacker round follows (issue 18): a local host drips its
answer one byte a second; for `--attack-duration` seconds, `--clients` normal clients search by
vector while one poller asks `/v1/health` every 0.1 s, first without attackers, then with N
threads searching by that dripping URL (search key) the whole time. One table compares health
p50/p99/max, unanswered health polls (5 s timeout) and normal search throughput with and
without the attack, and what the attackers got; health must answer throughout and normal
searches must not fail.

    python bench/load.py                    # 8 clients, 60 s
    python bench/load.py --duration 600 --clients 16 --records 100000
    python bench/load.py --duration 5 --records 2000 --attackers 45 --attack-duration 20
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
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


class DrippingHost:
    """An HTTP host on 127.0.0.1 that sends its answer one byte per `interval` seconds."""

    ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n" + b"\xff" * 1000

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self.stop = threading.Event()
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=512)
        self.sock.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/slow.jpg"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            for i in range(len(self.ANSWER)):
                if self.stop.wait(self.interval):
                    return
                try:
                    conn.sendall(self.ANSWER[i:i + 1])
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


def attack_phase(url: str, dim: int, clients: int, attackers: int, duration: float, slow_url: str) -> dict:
    """Normal vector searches and a health poller for `duration` s, with `attackers` slow-URL searchers."""
    stop = threading.Event()
    lock = threading.Lock()
    out: dict = {"health": [], "health_missed": 0, "search": [], "search_errors": 0, "attack": defaultdict(int)}

    def normal(number: int) -> None:
        nrng = np.random.default_rng(5000 + number)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {SEARCH}"}, timeout=60) as c:
            while not stop.is_set():
                started = time.perf_counter()
                try:
                    r = c.post("/v1/collections/load/search",
                               json={"query": {"vector": vectors(nrng, 1, dim)[0].round(6).tolist()}, "k": 10})
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    out["search"].append(time.perf_counter() - started)
                    out["search_errors"] += not ok

    def health() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = httpx.get(url + "/v1/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                ok = False
            with lock:
                if ok:
                    out["health"].append(time.perf_counter() - started)
                else:
                    out["health_missed"] += 1
            stop.wait(0.1)

    def attacker() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {SEARCH}"}, timeout=120) as c:
            while not stop.is_set():
                try:
                    r = c.post("/v1/collections/load/search", json={"query": {"url": slow_url}, "k": 10})
                    key = str(r.status_code)
                except httpx.HTTPError as exc:
                    key = type(exc).__name__
                with lock:
                    out["attack"][key] += 1
                if key == "503":
                    stop.wait(0.5)  # a polite client would honour Retry-After; an attacker retries soon

    threads = ([threading.Thread(target=normal, args=(i,)) for i in range(clients)] + [threading.Thread(target=health)]
               + [threading.Thread(target=attacker, daemon=True) for _ in range(attackers)])
    started = time.perf_counter()
    for th in threads:
        th.start()
    time.sleep(duration)
    stop.set()
    for th in threads[:clients + 1]:
        th.join(120)
    out["wall"] = time.perf_counter() - started
    after = time.perf_counter()  # the attackers' last requests may still be pending: health must answer now
    try:
        out["health_after"] = httpx.get(url + "/v1/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        out["health_after"] = False
    out["health_after_ms"] = (time.perf_counter() - after) * 1000
    give_up = time.monotonic() + 120  # a server without a fetch deadline would hold them for many minutes
    for th in threads[clients + 1:]:
        th.join(max(0.0, give_up - time.monotonic()))
    out["attackers_stuck"] = sum(th.is_alive() for th in threads[clients + 1:])
    return out


def attack_table(rounds: list[tuple[str, dict]]) -> str:
    def ms(values: list[float], q: float) -> str:
        return f"{np.percentile(values, q) * 1000:.1f}" if values else "-"
    lines = ["| round | health p50 ms | health p99 ms | health max ms | health unanswered | search req/s "
             "| search p50 ms | search p99 ms | search errors | attacker answers |", "|---" * 10 + "|"]
    for name, r in rounds:
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(r["attack"].items())) or "-"
        lines.append(f"| {name} | {ms(r['health'], 50)} | {ms(r['health'], 99)} | "
                     f"{max(r['health']) * 1000 if r['health'] else 0:.1f} | {r['health_missed']} | "
                     f"{len(r['search']) / r['wall']:.1f} | {ms(r['search'], 50)} | {ms(r['search'], 99)} | "
                     f"{r['search_errors']} | {answers} |")
    return "\n".join(lines)


def attack_round(url: str, args: argparse.Namespace, slow_url: str) -> list[str]:
    """Run the round without and with attackers; print the table; return failed checks."""
    rounds = [("no attack", attack_phase(url, args.dim, args.clients, 0, args.attack_duration, slow_url)),
              (f"{args.attackers} slow-URL attackers",
               attack_phase(url, args.dim, args.clients, args.attackers, args.attack_duration, slow_url))]
    print("\nslow-URL attacker round\n")
    print(attack_table(rounds))
    attacked = rounds[1][1]
    print(f"\nhealth right after the attack stopped: {'answered' if attacked['health_after'] else 'NO ANSWER'} "
          f"in {attacked['health_after_ms']:.0f} ms; attacker requests still pending 120 s later: "
          f"{attacked['attackers_stuck']}")
    failures = []
    if attacked["health_missed"] or not attacked["health_after"]:
        failures.append(f"health went unanswered during the attack ({attacked['health_missed']} polls) "
                        f"or after it ({'ok' if attacked['health_after'] else 'no answer'})")
    if attacked["search_errors"]:
        failures.append(f"{attacked['search_errors']} normal searches failed during the attack")
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    ap.add_argument("--records", type=int, default=20_000, help="records in the collection before the load")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8, help="records per upsert request")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--attackers", type=int, default=0, help="slow-URL attackers in the attacker round (0: no round)")
    ap.add_argument("--attack-duration", type=float, default=30.0, help="seconds of each attacker round phase")
    args = ap.parse_args()

    host = None
    if args.attackers:
        host = DrippingHost()
        os.environ["LOOKALIKE_URL_ALLOW"] = "127.0.0.1"  # the dripping host is on loopback (the server inherits)

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
        if host is not None:
            failures += attack_round(server.url, args, host.url)
    finally:
        server.stop()
        if host is not None:
            host.close()
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
