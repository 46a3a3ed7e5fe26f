"""Threads a `match` query spreads its work over (issue 16: p50 on 2 cores).

A query's embedding (ONNX Runtime or torch), its ORB keypoints (OpenCV) and its candidates'
verifications (OpenCV's descriptor distances and RANSAC) release the GIL, so on two cores they
run side by side: the embedding beside the keypoints, the candidates two at a time. The
results are the same as run one after the other (each candidate's check reads only the query
and that candidate), kept in the order asked for.

One pool of MATCH_THREADS workers serves every query of the process (a server's concurrent
requests queue on it rather than oversubscribe the cores); OpenCV runs one thread a call
(models/keypoints.py `_cv2`). A task may wait on another only when that one was submitted
before it (the query's extra keypoints, asked for before its candidates are verified), so the
first-in first-out queue never leaves every worker waiting on a task still queued. With one
core there is no pool: everything runs in the calling thread.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Workers of the pool at most (the issue's machine has 2 cores; more candidates than workers
#: are taken in turn).
MATCH_THREADS = 2

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def threads() -> int:
    """Workers the pool has: MATCH_THREADS, or fewer when the process may use fewer cores."""
    return max(1, min(MATCH_THREADS, len(os.sched_getaffinity(0))))


def pool() -> ThreadPoolExecutor | None:
    """The process's pool (made when first asked for); None with one core."""
    global _pool
    if threads() < 2:
        return None
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=threads(), thread_name_prefix="lookalike-match")
        return _pool


def _forget_pool() -> None:
    """A forked child has no threads of its parent's pool: it makes its own when first asked."""
    global _pool, _lock
    _pool, _lock = None, threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)


def submit(fn: Callable[[], R]) -> Future:
    """`fn` run by the pool, or (no pool) at once in this thread: its Future either way."""
    workers = pool()
    if workers is not None:
        return workers.submit(fn)
    out: Future = Future()
    try:
        out.set_result(fn())
    except BaseException as exc:  # raised again by result(), as a pool's Future does
        out.set_exception(exc)
    return out


def done(value: R) -> Future:
    """A Future holding `value` already."""
    out: Future = Future()
    out.set_result(value)
    return out


def run_all(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """`fn` of each item, in the items' order, the pool's workers taking them in turn."""
    items = list(items)
    workers = pool()
    if workers is None or len(items) < 2:
        return [fn(item) for item in items]
    return list(workers.map(fn, items))
