"""One collection's search index: exact, HNSW or IVF, kept in step with the vector file, on disk.

Design notes (how it works and why): docs/index.md, "Notes: `lookalike/index/manager.py`".
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np

from . import planning
from .ann import KINDS
from .calibrate import GROWTH, MIN_QUERIES, QUERIES, Calibration, calibrate, floor
from .compress import PCA
from .exact import SMALL, ExactIndex, dot, plain, rescore_many, score_all, score_slots, top_k, top_k_many
from .masks import MaskInfo, MaskInfos, cached_params
from .planning import Plan
from .rwlock import RWLock
from .settings import ann_kind, build_key, code_bytes, exact_threshold

log = logging.getLogger(__name__)

FORMAT = 1
#: Collections up to this many rows are (re)built inline, larger ones on a background thread
#: while exact search answers.
INLINE_BUILD_ROWS = 50_000
#: Rows added per FAISS call while building (bounds the temporary copy of the rows).
BUILD_CHUNK = 100_000
#: A write leaving this many rows out of the published index has them added on a background
#: thread (searches scan the rows not yet added exactly meanwhile), so a bulk load's next batch
#: is parsed and committed while FAISS adds this one; fewer are added before the write returns.
BACKGROUND_ADD_ROWS = 2048
#: Rows per FAISS add into the published index when few are waiting: searches wait for each
#: add, so a few thousand (tenths of a second) at a time.
ADD_CHUNK = 4096
#: Rows per add while more are waiting (a bulk load that outpaces FAISS): its add is parallel
#: only within one call, whose threads meet at a barrier per graph level, so calls of 4096 rows
#: cost ~25 % more CPU than calls of 16384 (measured at 100k rows, efConstruction 64, 2 shared
#: cores; 32768 saved no more). Searches meanwhile wait up to one such add (~1 s on 2 cores).
BULK_ADD_CHUNK = 16384
#: The graph is saved (a cache of the vector file: open adds the rows written since its last
#: save) once it grew by SAVE_MIN_ROWS rows and a quarter since then; by its own size (a
#: doubling) while written rows wait to be added: a bulk load that outpaces FAISS writes the
#: graph ~2x its final size in all rather than ~4-5x, and searches and adds wait for no more
#: saves than that (a save holds off adds: ~0.4 s per 100k rows of 256-d on 2 cores).
SAVE_MIN_ROWS = 50_000


def _row_sum(matrix: np.ndarray, row: int) -> str:
    return hashlib.sha1(np.ascontiguousarray(matrix[row]).tobytes()).hexdigest() if row >= 0 else ""


class CollectionIndex:
    """Chooses exact or HNSW per query and keeps the HNSW graph (if any) covering the vector file."""

    def __init__(self, folder: Path, name: str, generation: int, dim: int, index: dict, compression: dict,
                 matrix: Callable[[], np.ndarray], live_count: Callable[[], int]) -> None:
        self.folder = folder
        self.name = name
        self.generation = generation
        self.dim = dim
        self.settings = index
        self.compression = compression
        self._matrix = matrix
        self._live_count = live_count
        self._ann = None  # a FaissIndex (ann.HnswIndex or ann.IvfIndex) once built
        self._rw = RWLock()
        self._state = threading.Lock()  # guards _ann/_builder swaps and catch-up adds
        self._builder: threading.Thread | None = None
        self._adder: threading.Thread | None = None  # catches up with written rows (BACKGROUND_ADD_ROWS)
        self._adder_lock = threading.Lock()
        self._add_wanted = False
        self._build_error: str | None = None
        self._saved_rows = 0
        self._cancel = False
        self._infos = MaskInfos()
        self._plans = threading.local()
        self._params: dict[tuple, object] = {}  # unfiltered FAISS search parameters by (kind, k, width)
        self._calibration: Calibration | None = None  # widths measured to meet target_recall (calibrate.py)
        # planning.width's answers for one (index, rows, calibration, settings), by (in_count, pool)
        self._widths: tuple = (None, 0, None, None, {})

    # -- files ---------------------------------------------------------------------------
    def _path(self, suffix: str) -> Path:
        return self.folder / f"{self.name}.{self.generation}.{suffix}"

    def _key(self) -> dict:
        return build_key(self.settings, self.compression, self.dim)

    def remove_stale(self) -> None:
        """Delete index files of this collection's other generations (superseded by compaction)."""
        if not self.folder.exists():
            return
        for f in self.folder.glob(f"{self.name}.*"):
            parts = f.name.split(".")
            if parts[0] == self.name and parts[1] != str(self.generation):
                f.unlink(missing_ok=True)

    def destroy(self) -> None:
        """Forget the graph and delete every index file of this collection."""
        self.close(save=False)
        if self.folder.exists():
            for f in self.folder.glob(f"{self.name}.*"):
                if f.name.split(".")[0] == self.name:
                    f.unlink(missing_ok=True)

    def save(self) -> None:
        """Write the graph and its meta file (atomically each; the meta names the row count)."""
        ann = self._ann
        if ann is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        self._rw.acquire_read()  # no adds while writing; searches may go on
        try:
            rows = ann.ntotal
            if ann.pca is not None:
                ann.pca.save(self._path("pca.npz"))
            ann.save(self._path("faiss"))
            meta = {"format": FORMAT, "library": "faiss", "key": self._key(), "ntotal": rows,
                    "last_row": _row_sum(self._matrix(), rows - 1)}
            if self._calibration is not None:
                meta["calibration"] = self._calibration.to_dict()
            tmp = self._path("json.tmp")
            with open(tmp, "w") as fh:
                json.dump(meta, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._path("json"))
            self._saved_rows = rows
        finally:
            self._rw.release_read()

    def _load_saved(self):
        """The saved graph if it provably matches the vector file, else None (reason logged)."""
        meta_path, graph_path = self._path("json"), self._path("faiss")
        if not meta_path.exists() or not graph_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            matrix = self._matrix()
            rows = int(meta["ntotal"])
            if meta.get("format") != FORMAT or meta.get("key") != self._key():
                raise ValueError("built with other settings")
            if rows > len(matrix) or meta.get("last_row") != _row_sum(matrix, rows - 1):
                raise ValueError("does not match the vector file")
            pca = PCA.load(self._path("pca.npz")) if self.compression["pca_dim"] else None
            if pca is not None and (pca.dim != self.compression["pca_dim"] or pca.components.shape[1] != self.dim):
                raise ValueError("PCA file has the wrong shape")
            ann = KINDS[ann_kind(self.settings, self.compression)].load(graph_path, self.dim, self.compression, pca,
                                                                         self.settings)
            width = pca.dim if pca else self.dim
            if ann.ntotal != rows or ann.raw.d != width:
                raise ValueError(f"graph holds {ann.ntotal} rows of {ann.raw.d}-d, meta says {rows} of {width}-d")
            self._saved_rows = rows
            saved, target = meta.get("calibration"), self.settings["target_recall"]
            if saved and target is not None:
                self._calibration = Calibration.from_dict(saved, target, floor(ann, self.settings))
            return ann
        except Exception as exc:  # any damage means: rebuild from the vectors
            log.warning("index of collection %r unusable (%s); rebuilding from the vectors", self.name, exc)
            return None

    # -- lifecycle -----------------------------------------------------------------------
    def wanted(self) -> bool:
        """Whether this collection should have a graph (or IVF) now (by type, and live count
        against `threshold`: settings.exact_threshold)."""
        kind, limit = self.settings["type"], exact_threshold(self.settings, self.dim)
        return kind in ("hnsw", "ivf") or (kind == "auto" and self._live_count() > limit)

    def open(self) -> None:
        """Load the saved graph and catch up, or build one if wanted; drop files if not wanted."""
        self.remove_stale()
        if not self.wanted():
            return
        ann = self._load_saved()
        if ann is not None:
            self._ann = ann
            self._catch_up()
            return
        self._start_build()

    def sync(self) -> None:
        """After new rows were committed: add them to the graph (on a background thread for
        BACKGROUND_ADD_ROWS or more), or start one if now wanted."""
        ann = self._ann
        if ann is None:
            if self._builder is None and self.wanted():
                self._start_build()
            return
        if len(self._matrix()) - ann.ntotal >= BACKGROUND_ADD_ROWS or self._adder is not None:
            self._add_in_background()
            return
        self._grow()

    def _add_in_background(self) -> None:
        with self._adder_lock:
            self._add_wanted = True
            if self._adder is None:
                self._adder = threading.Thread(target=self._adding, name=f"index-add-{self.name}", daemon=True)
                self._adder.start()

    def _adding(self) -> None:
        """The background adder: grow the index until no write asked for more (or closing)."""
        try:
            while True:
                with self._adder_lock:
                    if not self._add_wanted or self._cancel:
                        self._adder = None
                        return
                    self._add_wanted = False
                self._grow()
        except Exception as exc:  # searches go on (the rows not added are scanned exactly)
            log.exception("adding rows to the index of collection %r failed", self.name)
            self._build_error = f"{type(exc).__name__}: {exc}"
            with self._adder_lock:
                self._adder = None

    def _grow(self) -> None:
        """Add the rows past the index's end; rebuild a structure that no longer fits; save now and then."""
        self._catch_up()
        ann = self._ann
        if ann is not None and self._builder is None and ann.stale(ann.ntotal):
            self._start_build()  # e.g. an IVF trained when small: more lists now; the old one serves meanwhile
            ann = self._ann
        if ann is not None and self._save_due(ann):
            self.save()

    def _save_due(self, ann) -> bool:
        """Whether the graph grew enough since its last save to write it again (SAVE_MIN_ROWS).
        A crash loses only the graph's growth since the save: open adds those rows again (at
        FAISS's add rate: up to half the graph after a crash mid bulk load, a quarter else)."""
        grown = ann.ntotal - self._saved_rows
        loading = len(self._matrix()) - ann.ntotal >= BACKGROUND_ADD_ROWS
        return grown > max(SAVE_MIN_ROWS, self._saved_rows if loading else ann.ntotal // 4)

    def _catch_up(self) -> None:
        """Add the vector file's rows past the graph's end (slot order, nothing skipped)."""
        with self._state:
            ann = self._ann
            if ann is None:
                return
            matrix = self._matrix()
            if ann.ntotal >= len(matrix):
                return
            due = self._calibration_due(ann, len(matrix) - ann.ntotal)
            held = min(QUERIES, len(matrix) - ann.ntotal) if due else 0
            self._add(ann, matrix, len(matrix) - held)  # measured at (nearly) its new size
            if held:
                self._calibration = self._measure(ann, matrix)  # searches only: readers may go on
                self._add(ann, matrix, len(matrix))

    def _add(self, ann, matrix: np.ndarray, end: int) -> None:
        """Add rows ntotal..end-1 to the published index (searches wait)."""
        while ann.ntotal < end:
            start = ann.ntotal
            step = min(end - start, ADD_CHUNK if end - start < 2 * ADD_CHUNK else BULK_ADD_CHUNK)
            rows = np.ascontiguousarray(matrix[start:start + step], dtype=np.float32)
            self._rw.acquire_write()
            try:
                ann.add(rows)
            finally:
                self._rw.release_write()

    def _start_build(self) -> None:
        if len(self._matrix()) <= INLINE_BUILD_ROWS:
            self._build()
            return
        with self._state:
            if self._builder is not None:
                return
            self._builder = threading.Thread(target=self._build, name=f"index-{self.name}", daemon=True)
            self._builder.start()

    def _build(self) -> None:
        """Build a graph over the current rows, catch up, publish, save. Exact search serves meanwhile."""
        try:
            matrix = self._matrix()
            if len(matrix) == 0:
                return
            kind = KINDS[ann_kind(self.settings, self.compression)]
            wanted = min(len(matrix), kind.sample_rows(len(matrix), self.settings))
            sample = matrix[np.linspace(0, len(matrix) - 1, wanted).astype(np.int64)]
            ann = kind.create(self.dim, self.settings, self.compression, sample, len(matrix))
            held = self._held_out(len(matrix))  # the newest rows query the index before they join it
            for start in range(0, len(matrix) - held, BUILD_CHUNK):
                if self._cancel:
                    return
                ann.add(matrix[start:min(start + BUILD_CHUNK, len(matrix) - held)])
            calibration = self._measure(ann, matrix) if held else None
            if held:
                ann.add(matrix[ann.ntotal:])
            with self._state:
                if self._cancel:
                    return
                latest = self._matrix()
                if len(latest) > ann.ntotal:
                    ann.add(latest[ann.ntotal:])
                self._ann, self._calibration = ann, calibration
            self._saved_rows = 0
            self.save()
            self._build_error = None
        except Exception as exc:  # keep serving exact results; report in stats
            log.exception("building the index of collection %r failed", self.name)
            self._build_error = f"{type(exc).__name__}: {exc}"
        finally:
            self._builder = None

    def wait(self, timeout: float | None = None) -> bool:
        """Block until background builds and adds finish; True if none is running afterwards."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            thread = self._builder or self._adder
            if thread is None:
                return True
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            thread.join(left)

    # -- calibration (calibrate.py) ------------------------------------------------------
    def _held_out(self, rows: int) -> int:
        """Rows kept out of a new index until it is measured (0: too few, or no target)."""
        if self.settings["target_recall"] is None:
            return 0
        held = min(QUERIES, rows // 5)
        return held if held >= MIN_QUERIES else 0

    def _calibration_due(self, ann, pending: int) -> bool:
        """Measure before adding `pending` rows? When a target is set, enough rows are pending,
        and nothing was measured yet or the index has grown GROWTH-fold since."""
        if self.settings["target_recall"] is None or pending < MIN_QUERIES:
            return False
        current = self._calibration
        return current is None or ann.ntotal + pending >= current.rows * GROWTH

    def _measure(self, ann, matrix: np.ndarray) -> Calibration | None:
        """Recall curves of `ann` queried with (up to QUERIES of) the rows past its end."""
        target = self.settings["target_recall"]
        if target is None:
            return None
        tail = np.arange(ann.ntotal, len(matrix))
        picks = tail[np.linspace(0, len(tail) - 1, min(QUERIES, len(tail))).astype(np.int64)]
        return calibrate(ann, matrix, plain(matrix)[picks], self.settings, target)

    def reconfigure(self, index: dict, compression: dict) -> None:
        """New settings: search-time ones apply at once; build-time ones rebuild from the vectors."""
        rebuild = build_key(index, compression, self.dim) != self._key()
        self.settings, self.compression = index, compression
        if rebuild or not self.wanted():
            self.close(save=False)
            for suffix in ("faiss", "json", "pca.npz"):
                self._path(suffix).unlink(missing_ok=True)
            self._cancel = False
            self._ann, self._calibration = None, None
        if self._ann is None and self.wanted():
            self._start_build()
        elif index["target_recall"] is None:
            self._calibration = None
        elif self._calibration is not None and self._ann is not None:  # picked from the measured curves
            self._calibration.retarget(index["target_recall"], floor(self._ann, index))
            self._widths = (None, 0, None, None, {})  # the same calibration, changed in place

    def drop(self) -> None:
        """Forget the graph and its files: searches go exact until `rebuild` (the rows are about
        to change in place, e.g. a new tuned space, and the old graph must not answer for them)."""
        self.close(save=False)
        for suffix in ("faiss", "json", "pca.npz"):
            self._path(suffix).unlink(missing_ok=True)
        self._cancel = False
        self._ann = None

    def rebuild(self) -> None:
        """Build again from the matrix (after `drop` and the change of rows)."""
        self.drop()
        if self.wanted():
            self._start_build()

    def close(self, save: bool = True) -> None:
        """Stop a running build; save a graph that grew since its last save (after the rows being
        added in the background are in: a bulk load's index is complete when its database closes)."""
        adder = self._adder
        if save and adder is not None:
            adder.join()
        self._cancel = True
        self.wait()
        if save and self._ann is not None and self._ann.ntotal != self._saved_rows:
            self.save()
        if not save:
            self._ann, self._calibration = None, None

    # -- search --------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self._ann is not None

    def last_plan(self) -> Plan | None:
        """How the last `search` on this thread was answered (for benchmarks and debugging)."""
        return getattr(self._plans, "plan", None)

    def uses_ann(self, matching: int) -> bool:
        """The index (HNSW/IVF) for this many candidate records? (planning.uses_ann)"""
        ann = self._ann
        return planning.uses_ann(ann, self.settings, matching, self._live_count(), self._calibration,
                                 lambda in_count, pool: self._width(ann, in_count, pool))

    def _width(self, ann, in_count: int, pool: int) -> int:
        """`planning.width` for `ann`, kept per (in_count, pool) while the index's rows, its
        calibration and settings stay: every search asks twice (uses_ann, then its plan), and
        the same counts as the searches before it until a write changes them."""
        calibration, settings = self._calibration, self.settings
        memo = self._widths
        if memo[0] is not ann or memo[1] != ann.ntotal or memo[2] is not calibration or memo[3] is not settings:
            memo = self._widths = (ann, ann.ntotal, calibration, settings, {})
        known = memo[4]
        wide = known.get((in_count, pool))
        if wide is None:
            if len(known) >= 64:  # filters of many different sizes: keep it small
                known.clear()
            wide = known[in_count, pool] = planning.width(ann, settings, in_count, pool, calibration)
        return wide

    def search(self, query: np.ndarray, k: int, allowed: np.ndarray,
               matching: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(slots, exact scores) of the best k allowed slots, best first.

        `matching` is the number of allowed slots when the caller knows it (it must never
        exceed the true count); otherwise it is counted. A read-only `allowed` (the store's
        cached masks) has its count, FAISS selector and slot list computed once and reused.
        """
        info = self._infos.get(allowed)
        if matching is None:
            matching = info.count(allowed)
        plan = Plan(matching=matching)
        self._plans.plan = plan
        if k > 0 and self.uses_ann(matching):
            found = self._ann_candidates(query, k, allowed, info, plan)
            if found is not None:
                matrix = self._matrix()
                scores = dot(plain(matrix)[found], np.asarray(query, dtype=np.float32)) if len(found) \
                    else np.empty(0, np.float32)
                best = top_k(scores, k)
                return found[best], scores[best]
            plan.fallback = True
        return self._exact(query, k, allowed, info, matching)

    def search_many(self, queries: np.ndarray, k: int, allowed: np.ndarray,
                    matching: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
        """`search` for each row of `queries`, with the same results: one FAISS search for the
        batch where the index answers (a query its width leaves short is searched alone, widening
        as `search` does), one matrix product per chunk of rows where exact search does."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        info = self._infos.get(allowed)
        if matching is None:
            matching = info.count(allowed)
        plan = Plan(matching=matching)
        self._plans.plan = plan
        if k > 0 and len(queries) and self.uses_ann(matching):
            found = self._ann_candidates_many(queries, k, allowed, info, plan)
            if found is not None:
                matrix = plain(self._matrix())
                sizes = {len(cand) if cand is not None else -1 for cand in found}
                if len(sizes) == 1 and 0 < next(iter(sizes)) <= SMALL:  # all answered, alike: one gather
                    return rescore_many(matrix, queries, np.stack(found), k)
                out = []
                for query, cand in zip(queries, found):
                    if cand is None:
                        out.append(self.search(query, k, allowed, matching))
                        continue
                    scores = dot(matrix[cand], query) if len(cand) else np.empty(0, np.float32)
                    best = top_k(scores, k)
                    out.append((cand[best], scores[best]))
                self._plans.plan = plan
                return out
            plan.fallback = True
        matrix = self._matrix()
        n = min(len(allowed), len(matrix))
        if matching == n == len(allowed):
            return top_k_many(matrix[:n], queries, k)
        slots = info.slots(allowed) if not allowed.flags.writeable and n == len(allowed) \
            else np.flatnonzero(allowed[:n])
        return top_k_many(matrix, queries, k, slots)

    def _exact(self, query: np.ndarray, k: int, allowed: np.ndarray, info: MaskInfo,
               matching: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the allowed slots (their list reused from `info` when cached)."""
        matrix = self._matrix()
        n = min(len(allowed), len(matrix))
        if allowed.flags.writeable or n != len(allowed) or matching == n:
            return ExactIndex(matrix).search(query, k, allowed)
        slots = info.slots(allowed)
        if len(slots) < n:
            rows = self._infos.rows(info, plain(matrix), slots)
            scores = dot(rows, np.asarray(query, dtype=np.float32)) if rows is not None \
                else score_slots(matrix, query, slots)
        else:
            scores = score_all(matrix[:n], query)
        best = top_k(scores, k)
        return slots[best], scores[best]

    def _plan_ann(self, ann, k: int, allowed: np.ndarray, info: MaskInfo,
                  plan: Plan) -> tuple[int, int, int, object, int]:
        """(rows covered by the index, hits wanted, pool, selector, first width) of an index search
        for `k` hits among `allowed`; records the choice in `plan`."""
        covered = min(ann.ntotal, len(allowed))
        in_count = plan.matching if covered == len(allowed) else int(np.count_nonzero(allowed[:covered]))
        pool = planning.pool(ann, k)
        # every indexed row allowed (no filter, no deletes): no selector, the fastest search;
        # else a bitmap over `allowed` (slots past the index's end never come up in it)
        selector = None if in_count == ann.ntotal else info.selector(allowed)
        width = self._width(ann, in_count, pool)
        plan.kind, plan.pool, plan.filtered = ann.kind, pool, selector is not None
        return covered, min(k, in_count), pool, selector, width

    def _ann_candidates(self, query: np.ndarray, k: int, allowed: np.ndarray, info: MaskInfo,
                        plan: Plan) -> np.ndarray | None:
        """Candidate slots from the index (plus unindexed tail rows), or None to go exact."""
        self._rw.acquire_read()
        try:
            ann = self._ann
            if ann is None:
                return None
            covered, want, pool, selector, width = self._plan_ann(ann, k, allowed, info, plan)
            while True:
                plan.widths.append(width)
                found = ann.search(query, pool, width, selector, self._search_params(ann, allowed, info, pool, width,
                                                                                     selector is not None))
                if len(found) >= want or width >= ann.max_width:
                    break
                width = planning.widen(ann, width)  # the filter left the search short
        finally:
            self._rw.release_read()
        if len(found) < want:
            return None  # never fewer than k hits when k exist: exact search guarantees it
        found = found.astype(np.int64, copy=False)
        if covered == len(allowed):
            return found
        tail = np.flatnonzero(allowed[covered:]) + covered  # rows written after the index's last add
        return np.concatenate([found, tail]) if len(tail) else found

    def _ann_candidates_many(self, queries: np.ndarray, k: int, allowed: np.ndarray, info: MaskInfo,
                             plan: Plan) -> list[np.ndarray | None] | None:
        """`_ann_candidates` for a batch at the first width it tries (None for a query left short
        there: `search` widens for it alone), or None to go exact."""
        self._rw.acquire_read()
        try:
            ann = self._ann
            if ann is None:
                return None
            covered, want, pool, selector, width = self._plan_ann(ann, k, allowed, info, plan)
            plan.widths = [width]
            labels = ann.search_many(queries, pool, width, selector,
                                     self._search_params(ann, allowed, info, pool, width, selector is not None))
        finally:
            self._rw.release_read()
        tail = np.flatnonzero(allowed[covered:]) + covered if covered < len(allowed) else None
        out: list[np.ndarray | None] = []
        for row in labels:
            found = row[row >= 0]
            if len(found) < want:
                out.append(None)
            else:
                out.append(np.concatenate([found, tail]) if tail is not None and len(tail) else found)
        return out

    def _search_params(self, ann, allowed: np.ndarray, info: MaskInfo, k: int, width: int, filtered: bool):
        """FAISS parameters, reused: with a selector from the mask's cached info (a cached mask's
        bitmap lives as long as the info), without one from this index's own small table."""
        if filtered:
            return info.params(ann, allowed, k, width) if not allowed.flags.writeable else None
        return cached_params(self._params, ann, k, width, lambda: None)

    # -- stats ---------------------------------------------------------------------------
    def stats(self) -> dict:
        ann = self._ann
        state = "ready" if ann is not None else ("building" if self._builder is not None else "none")
        info = {**self.settings, "exact_threshold": exact_threshold(self.settings, self.dim),
                "active": ann.kind if ann is not None else "exact", "state": state,
                "library": "faiss" if ann is not None else None,
                "indexed_rows": ann.ntotal if ann is not None else 0,
                "adding": self._adder is not None,
                "memory_bytes": ann.memory_bytes() if ann is not None else 0}
        if ann is not None:
            info.update(ann.info())
        calibration = self._calibration if ann is not None else None
        # what searches use: the measured widths, or the configured ones until measured
        info["beam"] = calibration.beams[0][1] if calibration else (ann.base_width(self.settings) if ann else None)
        info["measured_recall"] = calibration.beams[0][2] if calibration else None
        info["calibration"] = calibration.summary() if calibration else None
        if self._build_error:
            info["error"] = self._build_error
        return info

    def bytes_per_vector(self) -> int:
        """Bytes of one vector as searched: compressed codes with a graph, float32 without."""
        return code_bytes(self.dim, self.compression) if self._ann is not None else self.dim * 4
