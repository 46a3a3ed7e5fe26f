"""Crash harness: SIGKILL a real `lookalike serve` during HTTP ingestion, then check the data.

Every round starts the server on a loopback port over the same data folder, lets writer
threads upsert (and update, and delete) batches over HTTP, and kills the server with
SIGKILL at a random moment (0-2 s after every writer had a first request acknowledged).
The folder is then reopened with `lookalike.connect` and:

- the store opens cleanly and SQLite's `PRAGMA integrity_check` says ok;
- every acknowledged record (HTTP 200 with a per-record status) is there with exactly its
  metadata and vector (vectors are derived from id and version, so checks are exact);
- every acknowledged delete stayed deleted, and no record appears that was never sent;
- `count()` equals the number of distinct ids stored;
- a search by each checked vector finds its record first; for the collection with a forced
  HNSW graph (`index: {"type": "hnsw", "threshold": 0}`) that search goes through the graph,
  and the graph covers every row of the vector file.

A batch whose request was in flight at the kill may or may not have landed: each of its
records must be either in its old or its new state (never torn), and what did land is
from then on checked like acknowledged data.

    python bench/crash.py                  # 100 rounds, then 5 concurrent-writer rounds
    python bench/crash.py --rounds 10 --images-every 3 --keep /tmp/crash-data
    python bench/crash.py --rounds 0 --intruder-rounds 3

Concurrent-writer rounds: while the server's writers run, a second writer, the CLI
`lookalike ingest`, is pointed at the same folder (the natural mistake: both default to
./lookalike-data), and a read-only CLI `get` reads an acknowledged record beside them. The
table says what the intruder got (exit status, whether the refusal named the server's pid)
and whether every acknowledged record (the server's, and the intruder's if it was let in)
is intact afterwards.

`tests/test_crash_http.py` runs three rounds of the same code.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import base64
import logging
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# a script here named like a standard module would shadow the standard library's `http` package: keep this folder off sys.path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

DIM = 16
ADMIN = "crash-admin-key"
#: collection name -> settings; "img" is used only in image rounds (it needs the model).
COLLECTIONS: dict[str, dict] = {
    "exact": {"model": "none", "dim": DIM, "index": {"type": "exact"}},
    "ann": {"model": "none", "dim": DIM, "index": {"type": "hnsw", "threshold": 0}},
    "img": {"model": "efficientnet-lite0", "thumbnails": False},
}


class CheckFailed(AssertionError):
    """A durability or consistency violation found after a crash."""


# -- deterministic content ----------------------------------------------------------------
def vector_for(rid: str, version: int) -> np.ndarray:
    """The unit vector of (id, version): the same in the writer and the checker."""
    seed = int.from_bytes(hashlib.sha256(f"{rid}\0{version}".encode()).digest()[:8], "little")
    v = np.random.default_rng(seed).standard_normal(DIM)
    return v / np.linalg.norm(v)


def meta_for(rid: str, version: int) -> dict:
    return {"v": version, "tag": f"t{version % 5}", "n": len(rid) * 10 + version, "attrs": {"of": rid}}


def image_for(rid: str, version: int) -> bytes:
    """A small JPEG drawn from (id, version)."""
    from lookalike.sample import COLORS, PATTERNS, draw_item
    rng = random.Random(f"{rid}:{version}")
    image = draw_item(rng.choice(PATTERNS), COLORS[rng.choice(sorted(COLORS))], seed=rng.randrange(10**6), size=96)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def record_for(collection: str, rid: str, version: int) -> dict:
    source = ({"_base64": base64.b64encode(image_for(rid, version)).decode()} if collection == "img"
              else {"_vector": vector_for(rid, version).tolist()})
    return {"_id": rid, **source, **meta_for(rid, version)}


# -- the server process -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`lookalike serve` on a loopback port; `kill()` is SIGKILL, `stop()` a clean SIGTERM."""

    def __init__(self, data: Path, log: Path, admin_key: str = ADMIN, search_key: str | None = None) -> None:
        self.data, self.log = data, log
        self.keys = ["--admin-key", admin_key] + (["--search-key", search_key] if search_key else [])
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "Server":
        env = {k: v for k, v in os.environ.items() if k not in ("LOOKALIKE_ADMIN_KEY", "LOOKALIKE_SEARCH_KEY")}
        cmd = [sys.executable, "-m", "lookalike.cli", "serve", "--data", str(self.data), "--port", str(self.port),
               *self.keys, "--no-access-log", "--log-level", "warning"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; log: {self.log}")
            try:
                if httpx.get(self.url + "/v1/health", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not start within {timeout}s; log: {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)


# -- what the writers know ----------------------------------------------------------------
@dataclass
class Ledger:
    """One collection's expected state, as acknowledged by the server."""

    name: str
    acked: dict[str, int] = field(default_factory=dict)       # id -> version acknowledged
    deleted: set[str] = field(default_factory=set)            # acknowledged deletes (never re-used)
    maybe: dict[str, set] = field(default_factory=dict)       # id -> states an in-flight request may have left
    next_id: int = 0
    ops: int = 0
    acked_ops: int = 0

    def new_ids(self, n: int, round_no: int) -> list[str]:
        ids = [f"r{round_no}/{self.name}-{self.next_id + i}" for i in range(n)]
        self.next_id += n
        return ids


def writer(client: httpx.Client, ledger: Ledger, round_no: int, stop: threading.Event, rng: random.Random,
           batch: tuple[int, int], acked: threading.Event | None = None) -> None:
    """Upsert / update / delete batches until the server dies (or `stop` is set);
    `acked` is set after the first acknowledged request."""
    first_ops = ledger.acked_ops
    while not stop.is_set():
        if acked is not None and ledger.acked_ops > first_ops:
            acked.set()
        live = sorted(set(ledger.acked) - set(ledger.maybe))
        kind = rng.random()
        if kind < 0.15 and len(live) > 10:
            ids = rng.sample(live, 3)
            pending = {rid: {ledger.acked[rid], None} for rid in ids}   # None: deleted
            request = ("POST", f"/v1/collections/{ledger.name}/records/delete", {"ids": ids})
        elif kind < 0.35 and len(live) > 10:
            ids = rng.sample(live, min(len(live), rng.randint(*batch)))
            pending = {rid: {ledger.acked[rid], ledger.acked[rid] + 1} for rid in ids}
            request = ("POST", f"/v1/collections/{ledger.name}/records",
                       {"records": [record_for(ledger.name, rid, ledger.acked[rid] + 1) for rid in ids]})
        else:
            ids = ledger.new_ids(rng.randint(*batch), round_no)
            pending = {rid: {None, 0} for rid in ids}
            request = ("POST", f"/v1/collections/{ledger.name}/records",
                       {"records": [record_for(ledger.name, rid, 0) for rid in ids]})
        for rid, states in pending.items():
            ledger.maybe.setdefault(rid, set()).update(states)
        ledger.ops += 1
        try:
            method, path, body = request
            response = client.request(method, path, json=body)
        except httpx.TransportError:
            return  # the server died with this request in flight: its records stay "maybe"
        if response.status_code != 200:
            raise CheckFailed(f"{path} answered {response.status_code}: {response.text[:300]}")
        answer = response.json()
        ledger.acked_ops += 1
        if "deleted" in answer:
            if answer["deleted"] != len(ids):
                raise CheckFailed(f"deleting {ids} deleted {answer['deleted']}")
            for rid in ids:
                ledger.acked.pop(rid, None)
                ledger.deleted.add(rid)
                ledger.maybe.pop(rid, None)
            continue
        results = answer["results"]
        if [r.get("_id") for r in results] != ids or any(r["status"] == "error" for r in results):
            raise CheckFailed(f"bad upsert results: {results[:3]}")
        for rid in ids:
            ledger.acked[rid] = max(s for s in pending[rid] if s is not None)
            ledger.maybe.pop(rid, None)


# -- checks after the crash ---------------------------------------------------------------
def check_sqlite(data: Path) -> None:
    con = sqlite3.connect(data / "lookalike.sqlite")
    try:
        result = con.execute("PRAGMA integrity_check").fetchall()
    finally:
        con.close()
    if result != [("ok",)]:
        raise CheckFailed(f"SQLite integrity_check: {result[:5]}")


def _user_fields(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if not k.startswith("_")}


def stored_state(col: Any, rid: str, doc: dict, vector: np.ndarray, ledger: Ledger) -> int:
    """The version a stored record is in; CheckFailed if it matches none it may be in."""
    allowed = set()
    if rid in ledger.acked:
        allowed.add(ledger.acked[rid])
    allowed |= {s for s in ledger.maybe.get(rid, ()) if s is not None}
    if not allowed:
        raise CheckFailed(f"{ledger.name}: record {rid!r} is stored but was never sent (or was deleted)")
    version = doc.get("v")
    if version not in allowed:
        raise CheckFailed(f"{ledger.name}: record {rid!r} has version {version!r}, expected one of {allowed}")
    if _user_fields(doc) != meta_for(rid, version):
        raise CheckFailed(f"{ledger.name}: metadata of {rid!r} is {_user_fields(doc)}, expected {meta_for(rid, version)}")
    if ledger.name == "img":
        expected = col.embed_image(image_for(rid, version))
        cos = float(np.dot(expected, vector) / (np.linalg.norm(expected) * np.linalg.norm(vector)))
        if cos < 0.99:
            raise CheckFailed(f"img: vector of {rid!r} does not match its image (cosine {cos:.4f})")
    else:
        got = vector / np.linalg.norm(vector)
        if not np.allclose(got, vector_for(rid, version), atol=1e-5):
            raise CheckFailed(f"{ledger.name}: vector of {rid!r} (version {version}) is not the one sent")
    return version


def check_collection(db: Any, ledger: Ledger, round_no: int, rng: random.Random, sample: int) -> dict:
    """Check one collection against its ledger; adopt what in-flight requests left; return stats."""
    from lookalike.errors import NotFound
    col = db.collection(ledger.name)
    ids, matrix = col._store.all_vectors()
    if len(ids) != len(set(ids)) or col.count() != len(ids):
        raise CheckFailed(f"{ledger.name}: count() is {col.count()}, distinct ids stored {len(set(ids))}, rows {len(ids)}")
    stored = dict(zip(ids, matrix))
    missing = [rid for rid in ledger.acked if rid not in stored and None not in ledger.maybe.get(rid, ())]
    if missing:
        raise CheckFailed(f"{ledger.name}: {len(missing)} acknowledged records lost, e.g. {missing[:3]}")
    back = [rid for rid in ledger.deleted if rid in stored]
    if back:
        raise CheckFailed(f"{ledger.name}: deleted records came back: {back[:3]}")
    docs = dict(zip(ids, col._store.get(ids))) if ids else {}
    new_state: dict[str, int] = {}
    for rid in ids:
        new_state[rid] = stored_state(col, rid, docs[rid], stored[rid], ledger)
    # what landed is durable now; what did not land was never acknowledged
    landed_this_round = [rid for rid in ledger.maybe if rid in stored]
    for rid in list(ledger.acked):
        if rid not in stored:
            ledger.acked.pop(rid)
            ledger.deleted.add(rid)
    ledger.acked.update(new_state)
    ledger.maybe.clear()
    # searches: everything written this round plus a sample of older records
    recent = [rid for rid in ids if rid.startswith(f"r{round_no}/")] + landed_this_round
    probe = list(dict.fromkeys(recent + rng.sample(ids, min(sample, len(ids)))))
    use_ann = ledger.name == "ann"
    if use_ann:
        info = col.info()["index"]
        if info.get("active") != "hnsw" or info.get("indexed_rows") != col._store.n_slots:
            raise CheckFailed(f"ann: graph does not cover the vector file: {info}, slots {col._store.n_slots}")
    for rid in probe:
        query = {"vector": stored[rid].tolist()}
        hits = col.search(query, k=3)["hits"]
        if not hits or hits[0]["_id"] != rid:
            raise CheckFailed(f"{ledger.name}: search by the vector of {rid!r} gave {[h['_id'] for h in hits]}")
    for rid in rng.sample(sorted(ledger.deleted), min(20, len(ledger.deleted))):
        try:
            col.get(rid)
        except NotFound:
            continue
        raise CheckFailed(f"{ledger.name}: deleted record {rid!r} can be read")
    return {"records": len(ids), "searched": len(probe), "deleted": len(ledger.deleted)}


def check_all(data: Path, ledgers: list[Ledger], round_no: int, rng: random.Random, sample: int) -> dict:
    """Open the crashed folder the normal way, then check SQLite and every collection."""
    import lookalike
    stats: dict[str, Any] = {}
    warnings = _capture_warnings()
    try:
        with lookalike.connect(data, allow_file=False) as db:
            check_sqlite(data)
            for ledger in ledgers:
                stats[ledger.name] = check_collection(db, ledger, round_no, rng, sample)
    finally:
        messages = warnings.pop()
    check_sqlite(data)
    stats["rebuilt_index"] = sum("rebuilding" in m for m in messages)
    return stats


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def pop(self) -> list[str]:
        logging.getLogger("lookalike").removeHandler(self)
        return self.messages


def _capture_warnings() -> _Warnings:
    handler = _Warnings()
    logging.getLogger("lookalike").addHandler(handler)
    return handler


# -- one round ----------------------------------------------------------------------------
@dataclass
class RoundResult:
    round: int
    images: bool
    acked_ops: int
    inflight: int
    killed_after_s: float
    records: int
    check_s: float
    rebuilt_index: int


def setup(server: Server, names: list[str]) -> None:
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=120) as c:
        for name in names:
            r = c.put(f"/v1/collections/{name}", json=COLLECTIONS[name])
            if r.status_code not in (200, 201):
                raise RuntimeError(f"creating {name}: {r.status_code} {r.text}")


def start_writers(data: Path, ledgers: dict[str, Ledger], names: list[str]) -> tuple["Server", list[httpx.Client]]:
    """A fresh server on `data` with the named collections set up, and one admin client per collection."""
    for name in names:
        ledgers.setdefault(name, Ledger(name))
    server = Server(data, data.parent / "server.log").start()
    setup(server, names)
    clients = [httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN}"},
                            timeout=httpx.Timeout(60, connect=5)) for _ in names]
    return server, clients


def run_round(data: Path, ledgers: dict[str, Ledger], round_no: int, rng: random.Random, *,
              images: bool = False, kill_window: tuple[float, float] = (0.0, 2.0), sample: int = 100) -> RoundResult:
    """Start the server, write from one thread per collection, SIGKILL it, check everything."""
    names = ["exact", "ann"] + (["img"] if images else [])
    server, clients = start_writers(data, ledgers, names)
    stop = threading.Event()
    failures: list[BaseException] = []
    before = {n: ledgers[n].acked_ops for n in names}

    # the kill comes at a random moment after every writer had one request acknowledged (so
    # each round checks something, however slow the machine; images wait for the model)
    warm = {n: threading.Event() for n in names}

    def guarded(client: httpx.Client, ledger: Ledger, seed: int) -> None:
        try:
            writer(client, ledger, round_no, stop, random.Random(seed),
                   (2, 6) if ledger.name == "img" else (4, 24), warm[ledger.name])
        except BaseException as exc:  # noqa: BLE001 - reported after the round
            failures.append(exc)

    threads = [threading.Thread(target=guarded, args=(c, ledgers[n], rng.randrange(2**32)), daemon=True)
               for c, n in zip(clients, names)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 180
    while (not all(e.is_set() for e in warm.values()) and any(t.is_alive() for t in threads)
           and time.monotonic() < deadline):
        time.sleep(0.01)
    delay = rng.uniform(*kill_window)
    time.sleep(delay)
    server.kill()
    stop.set()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    if failures:
        raise failures[0]
    inflight = sum(len(ledgers[n].maybe) > 0 for n in names)
    started = time.perf_counter()
    stats = check_all(data, [ledgers[n] for n in names], round_no, rng, sample)
    return RoundResult(round_no, images, sum(ledgers[n].acked_ops - before[n] for n in names), inflight,
                       delay, sum(stats[n]["records"] for n in names), time.perf_counter() - started,
                       stats["rebuilt_index"])


def run(rounds: int, data: Path, *, seed: int = 0, images_every: int = 0, sample: int = 100,
        kill_window: tuple[float, float] = (0.0, 2.0), progress: bool = False) -> list[RoundResult]:
    """`rounds` crash rounds over one data folder; raises CheckFailed at the first violation."""
    rng = random.Random(seed)
    ledgers: dict[str, Ledger] = {}
    results = []
    for i in range(1, rounds + 1):
        images = bool(images_every) and i % images_every == 0
        result = run_round(data, ledgers, i, rng, images=images, kill_window=kill_window, sample=sample)
        results.append(result)
        if progress:
            print(f"round {i:3d}: {result.acked_ops:3d} acked requests, {result.inflight} in flight at the kill "
                  f"({result.killed_after_s:.2f} s after the first acks), {result.records} records, "
                  f"checked in {result.check_s:.2f} s"
                  f"{' [images]' if images else ''}", file=sys.stderr, flush=True)
    return results


def table(results: list[RoundResult], wall: float) -> str:
    acked = [r.acked_ops for r in results]
    lines = ["| rounds | image rounds | acked requests | kills with a request in flight | records at end "
             "| lost acked | violations | index rebuilt on open | check s p50 | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|",
             f"| {len(results)} | {sum(r.images for r in results)} | {sum(acked)} "
             f"| {sum(r.inflight > 0 for r in results)} | {results[-1].records if results else 0} | 0 | 0 "
             f"| {sum(r.rebuilt_index > 0 for r in results)} "
             f"| {float(np.median([r.check_s for r in results])) if results else 0:.2f} | {wall:.0f} |"]
    return "\n".join(lines)


# -- concurrent writers ---------------------------------------------------------------------
@dataclass
class IntruderResult:
    round: int
    exit_code: int
    named_holder: bool
    reader_ok: bool
    intruder_stored: int
    violation: str


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lookalike.cli", *args], capture_output=True, text=True, timeout=300)


def run_intruder_round(data: Path, ledgers: dict[str, Ledger], round_no: int, rng: random.Random,
                       sample: int = 100) -> IntruderResult:
    """Server writers running; a CLI ingest and a CLI get on the same folder; SIGKILL; check."""
    names = ["exact", "ann"]
    server, clients = start_writers(data, ledgers, names)
    stop = threading.Event()
    failures: list[BaseException] = []
    warm = {n: threading.Event() for n in names}

    def guarded(client: httpx.Client, ledger: Ledger, seed: int) -> None:
        try:
            writer(client, ledger, round_no, stop, random.Random(seed), (4, 24), warm[ledger.name])
        except BaseException as exc:  # noqa: BLE001 - reported after the round
            failures.append(exc)
    threads = [threading.Thread(target=guarded, args=(c, ledgers[n], rng.randrange(2**32)), daemon=True)
               for c, n in zip(clients, names)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 180
    while not all(e.is_set() for e in warm.values()) and time.monotonic() < deadline:
        time.sleep(0.01)
    ledger = ledgers["exact"]
    intruder_ids = [f"r{round_no}/intruder-{i}" for i in range(40)]
    catalogue = data.parent / f"intruder-{round_no}.jsonl"
    catalogue.write_text("".join(json.dumps({"_id": rid, "_vector": vector_for(rid, 0).tolist(),
                                             **meta_for(rid, 0)}) + "\n" for rid in intruder_ids))
    for rid in intruder_ids:  # in flight until the CLI says how it went
        ledger.maybe.setdefault(rid, set()).update({None, 0})
    intruder = cli("ingest", str(catalogue), "-c", "exact", "--data", str(data), "--model", "none", "-q")
    if intruder.returncode == 0:
        for rid in intruder_ids:
            ledger.acked[rid] = 0
            ledger.maybe.pop(rid, None)
    known = sorted(set(ledger.acked) - set(ledger.maybe))
    probe = rng.choice(known)
    reader = cli("get", "-c", "exact", "--data", str(data), probe, "--json")
    reader_ok = reader.returncode == 0 and _user_fields(json.loads(reader.stdout)) == meta_for(probe, ledger.acked[probe])
    time.sleep(rng.uniform(0.2, 1.0))  # the server writes on after the intruder
    server.kill()
    stop.set()
    for t in threads:
        t.join(60)
    for c in clients:
        c.close()
    found = [f"server writer: {exc}" for exc in failures if isinstance(exc, CheckFailed)]
    if len(found) < len(failures):
        raise next(exc for exc in failures if not isinstance(exc, CheckFailed))
    try:
        check_all(data, [ledgers[n] for n in names], round_no, rng, sample)
    except CheckFailed as exc:
        found.append(f"after: {exc}")
    violation = "; ".join(found)[:200]
    import lookalike
    with lookalike.connect(data, allow_file=False) as db:  # the server is gone: nobody holds the folder
        stored = sum(d is not None for d in db.collection("exact")._store.get(intruder_ids))
    return IntruderResult(round_no, intruder.returncode, f"pid {server.proc.pid}" in intruder.stderr, reader_ok,
                          stored, violation)


def intruder_table(results: list[IntruderResult]) -> str:
    lines = ["| round | intruder exit | refusal names the server pid | CLI get beside the server | "
             "intruder records stored | check after SIGKILL |", "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r.round} | {r.exit_code} | {'yes' if r.named_holder else 'no'} | "
                     f"{'ok' if r.reader_ok else 'FAILED'} | {r.intruder_stored} | {r.violation or 'ok'} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images-every", type=int, default=10, help="every Nth round also ingests images (0: never)")
    ap.add_argument("--sample", type=int, default=100, help="older records searched per collection per round")
    ap.add_argument("--intruder-rounds", type=int, default=5, help="concurrent-writer rounds after the crash rounds")
    ap.add_argument("--keep", help="data folder to use (kept); default a temporary one")
    args = ap.parse_args()
    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="lookalike-crash-"))
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "data"
    started = time.perf_counter()
    try:
        results = run(args.rounds, data, seed=args.seed, images_every=args.images_every, sample=args.sample,
                      progress=True)
    except CheckFailed as exc:
        print(f"FAILED: {exc}\n(data kept in {data})", file=sys.stderr)
        return 1
    if results:
        print(table(results, time.perf_counter() - started))
    rng, ledgers = random.Random(args.seed + 1), {}
    intruders = [run_intruder_round(folder / "intruded", ledgers, i, rng, sample=args.sample)
                 for i in range(1, args.intruder_rounds + 1)]
    if intruders:
        print(intruder_table(intruders))
    if any(r.violation or r.exit_code == 0 or not r.reader_ok for r in intruders):
        print(f"FAILED: a concurrent writer was let in or damaged data (kept in {folder})", file=sys.stderr)
        return 1
    if not args.keep:
        import shutil
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
