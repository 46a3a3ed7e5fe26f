"""A Milvus standalone server (the PyPI package `milvus`, embedded etcd) started for the tests.

One server per test session, in a temporary folder, on a free port; each test (or module
fixture) gets its own Milvus database, so collection names never collide between tests.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from .servers import free_port

#: Components whose advertised address is pinned to loopback (Milvus 2.3 has no listen-address
#: setting: its gRPC ports bind every interface; they are free ports and the data stays in tmp).
COMPONENTS = ("rootCoord", "proxy", "queryCoord", "queryNode", "indexCoord", "indexNode", "dataCoord", "dataNode")
_names = itertools.count()



class MilvusProcess:
    """A running Milvus server: `url` for lookalike.connect, `database()` for a fresh namespace."""

    def __init__(self, base_dir: Path) -> None:
        from milvus import MilvusServer, MilvusServerConfig
        self.port = free_port()
        config = MilvusServerConfig(data_dir=str(base_dir), proxy_port=self.port)
        for component in COMPONENTS:
            config.set(f"{component}.ip", "127.0.0.1")
        self.server = MilvusServer(config)
        self.server.start()  # waits for /healthz (about 10 s)
        self.url = f"milvus://127.0.0.1:{self.port}"
        from pymilvus import MilvusClient
        self.client = MilvusClient(uri=f"http://127.0.0.1:{self.port}", timeout=30)
        self.version = self.client.get_server_version()

    def database(self) -> str:
        """A new, empty Milvus database on the server; its `milvus://` URL."""
        name = f"t{next(_names)}"
        self.client.create_database(name)
        return f"{self.url}/{name}"

    def drop(self, url: str) -> None:
        """Drop a database made by `database()` with its collections (Milvus keeps at most 64)."""
        from pymilvus import MilvusClient
        name = url.rsplit("/", 1)[1]
        client = MilvusClient(uri=f"http://127.0.0.1:{self.port}", db_name=name, timeout=30)
        try:
            for collection in client.list_collections():
                client.drop_collection(collection)
        finally:
            client.close()
        self.client.drop_database(name)

    def stop(self) -> None:
        self.client.close()
        self.server.stop()


class Locations:
    """Store locations by name for one test or module: Milvus Lite files under `folder`, or
    fresh databases on `server` (dropped by `drop()`)."""

    def __init__(self, server: MilvusProcess | None, folder: Path) -> None:
        self.server, self.folder = server, folder
        self.made: dict[str, str] = {}

    def __call__(self, name: str = "store") -> str:
        if name not in self.made:
            self.made[name] = self.server.database() if self.server else str(self.folder / f"{name}.db")
        return self.made[name]

    def drop(self) -> None:
        if self.server:
            for url in self.made.values():
                self.server.drop(url)
        self.made.clear()
