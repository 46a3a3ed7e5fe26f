"""The one way lookalike gets FAISS (the optional `ann` extra): its Python interrupt check
removed once, before any FAISS call, whichever layer makes the first.

`import faiss` installs a callback that each thread of an add or search calls every few hundred
rows: it takes the GIL to look for Ctrl-C. Only the main thread ever sees a signal, so from the
background adder and builder (where a bulk load's adds run) or a match worker it finds nothing,
yet waits for the GIL (up to Python's 5 ms switch interval) while Python stages hold it, and
the call's other threads spin at its barriers. Removed, a FAISS call on the main thread (an
inline build of up to 50k rows, a search) answers Ctrl-C when it returns. Deleting it during a
call is unsafe, hence once, under a lock, before the module is handed out.
"""
from __future__ import annotations

import os
import threading
from types import ModuleType

import numpy as np

#: Set LOOKALIKE_FAISS_INTERRUPT=keep to leave FAISS's Python interrupt check in place.
INTERRUPT_ENV = "LOOKALIKE_FAISS_INTERRUPT"

_lock = threading.Lock()
_module: ModuleType | None = None


def faiss() -> ModuleType:
    """The faiss module, ready for use; ImportError where the `ann` extra is not installed."""
    global _module
    if _module is None:
        with _lock:
            if _module is None:
                import faiss as module  # optional dependency (the `ann` extra)

                if os.environ.get(INTERRUPT_ENV, "").lower() != "keep":
                    module.InterruptCallback.clear_instance()
                _module = module
    return _module


def faiss_or_none() -> ModuleType | None:
    """The faiss module (`faiss`), or None where it is not installed: for paths with a NumPy
    or OpenCV fallback."""
    try:
        return faiss()
    except ImportError:
        return None


def hamming_faiss() -> ModuleType | None:
    """The faiss module where installed with its binary k-NN (`knn_hamming`; older builds lack it),
    else None: for Hamming searches with a NumPy or OpenCV fallback."""
    module = faiss_or_none()
    return module if hasattr(module, "knn_hamming") else None


def knn_hamming(module: ModuleType, queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """FAISS's exact binary k-NN (distances, indices (len(queries), k)) of packed codes (uint8 rows)
    on the calling thread alone: the callers (match's workers, `duplicates`' processes) are the
    parallelism, and OpenMP's thread count is each thread's own setting."""
    queries, base = np.ascontiguousarray(queries), np.ascontiguousarray(base)
    if not hasattr(module, "omp_set_num_threads"):  # a build without OpenMP runs one thread anyway
        return module.knn_hamming(queries, base, k)
    threads = module.omp_get_max_threads()
    module.omp_set_num_threads(1)
    try:
        return module.knn_hamming(queries, base, k)
    finally:
        module.omp_set_num_threads(threads)
