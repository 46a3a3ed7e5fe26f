"""Helpers for the tests and benchmarks, not used by the engine: copy transforms
(`copies`) and photo-like images (`photos`). The demo's drawn catalogue is `lookalike.sample`."""
