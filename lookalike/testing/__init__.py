"""Helpers for the tests and benchmarks, not used by the engine: copy transforms
(`copies`), photo-like images (`photos`), and a Milvus server and a Ray cluster of separate
processes on this machine (`milvus_server`, `ray_cluster`). The demo's drawn catalogue is `lookalike.sample`."""
