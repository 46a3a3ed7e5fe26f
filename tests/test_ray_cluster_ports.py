"""The test Ray cluster's port choice (lookalike/testing/ray_cluster.py): a node's worker port
range never holds a port the node (or an earlier node) was given, which stopped `ray start`
("worker_ports is trying to use a port number ... used by other components")."""
from __future__ import annotations

import itertools

from lookalike.testing import ray_cluster


def _range(args: list[str]) -> range:
    value = {a.split("=", 1)[0]: int(a.split("=", 1)[1]) for a in args}
    return range(value["--min-worker-port"], value["--max-worker-port"] + 1)


def test_the_worker_range_avoids_the_ports_the_node_was_given(monkeypatch):
    # the free ports the OS would offer: first a range start whose range holds the GCS port
    offered = itertools.chain([57127, 57140, 30000], range(40000, 40010), range(50000, 50400))
    monkeypatch.setattr(ray_cluster, "free_port", lambda: next(offered))
    monkeypatch.setattr(ray_cluster, "_GIVEN", set())
    args = ray_cluster._ports(49013, ray_cluster._named_ports(["--head", "--port=57263", "--dashboard-port=54501"]))
    workers = _range(args)
    assert 57263 not in workers and 49013 not in workers and 54501 not in workers
    assert workers.start == 30000
    chosen = [int(a.split("=", 1)[1]) for a in args if not a.startswith(("--min-worker", "--max-worker"))]
    assert len(set(chosen)) == len(chosen) and not set(chosen) & set(workers)
    # a second node's range and ports avoid everything the first one was given
    second = ray_cluster._ports(40050, set())
    assert not set(_range(second)) & (set(workers) | set(chosen) | {57263, 54501})


def test_named_ports_reads_only_port_arguments():
    assert ray_cluster._named_ports(["--head", "--port=6379", "--ray-client-server-port=10001",
                                     "--temp-dir=/tmp/x", "--num-cpus=1"]) == {6379, 10001}
