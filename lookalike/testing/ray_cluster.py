"""A Ray cluster of separate processes on this machine: a head node and worker nodes.

Each node is `ray start --block` (it stays in the foreground and stops the node's processes
when terminated), with every port chosen free and a private `--temp-dir`, so it never meets
another Ray instance on the machine; `kill()` takes a node down as a crash would.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from .servers import free_port

RAY = str(Path(sys.executable).with_name("ray"))
#: The test cluster runs without token authentication (it reads or writes no `~/.ray/auth_token`,
#: which other Ray users of the machine share; its ports are free ones, and nothing is secret).
CLUSTER_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}



#: Ports each node's worker processes may take (`--min-worker-port` to `--max-worker-port`).
WORKER_PORTS = 200
#: Every port (and worker range) this process has handed to a Ray node: a later node's worker
#: range holds none of them, nor its own ports.
_GIVEN: set[int] = set()


def _ports(node_manager_port: int, taken: frozenset[int] | set[int] = frozenset()) -> list[str]:
    """Ports every node opens, each free (Ray's defaults would collide between two nodes here),
    none inside the range its worker processes take; that range holds none of `taken` (the
    ports the node's other arguments name: a head's GCS port inside it stopped `ray start`)
    nor any port or range given to an earlier node."""
    names = ("object-manager-port", "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
             "runtime-env-agent-port", "metrics-export-port")
    avoid = {node_manager_port, *taken, *_GIVEN}
    low = free_port()
    while low > 60000 or any(low <= port <= low + WORKER_PORTS for port in avoid):
        low = free_port()
    ports: list[int] = []
    while len(ports) < len(names):
        port = free_port()
        if not low <= port <= low + WORKER_PORTS and port not in ports and port not in avoid:
            ports.append(port)
    _GIVEN.update(avoid, ports, range(low, low + WORKER_PORTS + 1))
    return [f"--node-manager-port={node_manager_port}", *(f"--{n}={p}" for n, p in zip(names, ports)),
            f"--min-worker-port={low}", f"--max-worker-port={low + WORKER_PORTS}"]


def _children(pid: int) -> list[int]:
    """All descendants of a process (the node's raylet, GCS, workers...), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _named_ports(args: list[str]) -> set[int]:
    """The ports `ray start` arguments name (`--port=N`, `--dashboard-port=N`, ...)."""
    return {int(a.split("=", 1)[1]) for a in args if a.startswith("--") and a.split("=", 1)[0].endswith("port")
            and "=" in a}


class Node:
    """One `ray start --block` process and the Ray processes under it."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.node_manager_port = free_port()  # tells the node apart in `ray.nodes()`
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(CLUSTER_ENV)
        self.proc = subprocess.Popen([RAY, "start", "--block", "--num-cpus=1", "--node-ip-address=127.0.0.1",
                                      "--disable-usage-stats", *_ports(self.node_manager_port, _named_ports(args)),
                                      *args],
                                     stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)

    def kill(self) -> None:
        """SIGKILL the node's processes at once, as a machine going away (no clean shutdown)."""
        pids = [*_children(self.proc.pid), self.proc.pid]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        """Stop the node: `ray start --block` stops its processes on SIGTERM; stragglers are killed."""
        if self.proc.poll() is None:
            pids = _children(self.proc.pid)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
            for pid in [*pids, self.proc.pid]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(timeout=10)


class Cluster:
    """A head node (1 CPU) in `folder`; `add_worker()` adds 1-CPU worker nodes."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        temp = folder / "ray"  # Ray's session folders (socket paths must stay short)
        self.head = Node(["--head", f"--port={self.port}", "--include-dashboard=false", f"--temp-dir={temp}", f"--dashboard-port={free_port()}",
                          f"--ray-client-server-port={free_port()}"], folder / "head.log")
        self.workers: list[Node] = []
        try:
            self.wait_for(1)
        except BaseException:
            self.head.stop()
            raise

    def add_worker(self) -> Node:
        node = Node([f"--address={self.address}"], self.folder / f"worker{len(self.workers)}.log")
        self.workers.append(node)
        self.wait_for(1 + sum(w.proc.poll() is None for w in self.workers))
        return node

    def alive_nodes(self) -> int:
        """Nodes the cluster's GCS counts as alive (asked from a separate process: this one may
        have Ray connected elsewhere)."""
        code = (f"import ray; ray.init(address='{self.address}', log_to_driver=False); "
                "print(sum(n['Alive'] for n in ray.nodes()))")
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **CLUSTER_ENV}
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2):
                pass  # the GCS listens (ray.init would wait long on a port nobody serves)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
        except (OSError, subprocess.TimeoutExpired):
            return 0
        try:
            return int(out.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return 0

    def wait_for(self, nodes: int, timeout: float = 300) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for node in [self.head, *self.workers]:
                if node.proc.poll() is not None:  # (called while nodes start: none was killed yet)
                    raise RuntimeError(f"a Ray node exited while starting: {node.log.read_text()[-2000:]}")
            if self.alive_nodes() >= nodes:
                return
            time.sleep(1)
        raise RuntimeError(f"the Ray cluster did not reach {nodes} nodes: {self.head.log.read_text()[-2000:]}")

    def stop(self) -> None:
        for node in [*self.workers, self.head]:
            node.stop()


def _drive(argv: list[str]) -> None:
    """Run as a separate driver process (as a user's would be): `actors ADDRESS` prints the node manager
    ports of the nodes Embedder actors ran on, as JSON; `ingest ADDRESS DATA CATALOG [PORT PID...]` runs
    `ray_ingest` into collection `items` of the data folder and prints the results and its wall
    time as JSON; with PORT, it kills the PIDs (a node) as soon as an encoder actor is alive on
    the node of that node manager port, i.e. while the actors work."""
    import json
    import ray
    command, address = argv[0], argv[1]
    if command == "actors":
        ray.init(address=address, log_to_driver=False)
        actors = [a for a in ray._private.state.actors().values() if "Embedder" in a["ActorClassName"]]
        ports = {n["NodeID"]: n["NodeManagerPort"] for n in ray.nodes()}
        print(json.dumps({"actor_node_ports": sorted({ports[a["Address"]["NodeID"]] for a in actors})}))
        return
    import lookalike
    from lookalike.ingest.ray import ray_ingest
    data, catalog = Path(argv[2]), Path(argv[3])
    victim, pids = (int(argv[4]), [int(p) for p in argv[5:]]) if len(argv) > 4 else (0, [])
    killed: list[int] = []
    written: list[str] = []
    done = threading.Event()

    def count(batch: list[dict]) -> None:
        written.extend(r["_id"] for r in batch if r["status"] == "inserted")

    def actor_ports(alive: bool = True) -> list[int]:
        """Node manager ports of the nodes this job's encoder actors are (or, alive=False, were last) on."""
        ports = {n["NodeID"]: n["NodeManagerPort"] for n in ray.nodes()}
        actors = ray._private.state.actors(job_id=ray.get_runtime_context().job_id).values()
        return sorted({ports[a["Address"]["NodeID"]] for a in actors if "Embedder" in a["ActorClassName"]
                       and (a["State"] == "ALIVE" or not alive) and a["Address"]["NodeID"] in ports})

    def kill_node() -> None:
        """SIGKILL the victim node's processes once an encoder actor runs there (mid-run)."""
        while victim and not done.is_set():
            placed = actor_ports()
            if victim in placed:
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                killed.extend(pids)
                print(json.dumps({"written_before_kill": len(written), "actor_node_ports": placed}), flush=True)
                return
            time.sleep(0.2)

    recs = [json.loads(line) for line in catalog.read_text().splitlines()]
    ray.init(address=address, log_to_driver=False)  # connected here, so the actor table can be read after
    with lookalike.connect(data) as db:
        col = db.collection("items", create=True)
        watcher = threading.Thread(target=kill_node, daemon=True)
        watcher.start()
        start = time.perf_counter()
        results = ray_ingest(col, recs, base_dir=catalog.parent, address=address, workers=2,
                             batch_size=int(os.environ.get("LOOKALIKE_BATCH", "2")), on_batch=count)
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
    print(json.dumps({"results": results, "killed": killed, "seconds": seconds,
                      "actor_node_ports": actor_ports(alive=False)}))


if __name__ == "__main__":
    _drive(sys.argv[1:])
