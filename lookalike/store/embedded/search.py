"""Search in the embedded store: filter masks, exact or planned ANN ranking, boosts, grouping."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from ...index import planning
from ...index.exact import ExactIndex, top_k
from ..filters import MATCH_ALL, Node, filter_key
from ..base import Hit, SearchRequest
from ..ranking import add_boosts, best_hits, group_keys
from .docs import documents


class EmbeddedSearch:
    """Search of an EmbeddedCollection (a mixin: it uses the collection's slots, masks and index)."""

    # -- search --------------------------------------------------------------------------
    def _allowed(self, where: Node, exclude: Sequence[str]) -> np.ndarray:
        n = self.n_slots
        if not exclude:  # live & filter, cached read-only (the index reuses its count and bitmap)
            key = ("allowed", filter_key(where), n, self._fields_version, self._alive_version)
            return self._masks.get(key, lambda: self._live_matching(where, n))
        allowed = self._alive[:n].copy()
        if where is not MATCH_ALL:
            allowed &= self._filter_mask(where, n)
        for rid in exclude:
            slot = self._slot_of.get(rid)
            if slot is not None and slot < n:
                allowed[slot] = False
        return allowed

    def _filter_mask(self, where: Node, n: int) -> np.ndarray:
        version = self._fields_version  # read before computing: a newer mask never hides under it
        return self._masks.get((filter_key(where), n, version), lambda: self._fields.mask(where, n))

    def _live_matching(self, where: Node, n: int) -> np.ndarray:
        """Live slots matching `where`, as a new read-only mask."""
        allowed = self._alive[:n].copy()
        if where is not MATCH_ALL:
            allowed &= self._filter_mask(where, n)
        allowed.flags.writeable = False
        return allowed

    def postings(self, path: str) -> tuple[np.ndarray, np.ndarray, list]:
        with self._reading():
            post = self._fields.paths.get(path)
            if post is None:
                return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32), []
            rows, vids = post.rows.view(), post.vids.view()
            size = min(len(rows), len(vids))  # a consistent prefix while a write appends
            return rows[:size], vids[:size], list(post.keys)

    def search(self, request: SearchRequest) -> list[Hit]:
        with self._rw.read():  # _reading() inlined: this is every search's path
            self._check_present()
            return self._search(request)

    def _search(self, request: SearchRequest) -> list[Hit]:
        if request.slot_scores is None and not request.boosts and not request.group_by:
            return self._by_vector(request)
        allowed = self._allowed(request.where, request.exclude)
        if request.slot_scores is not None:
            return self._precomputed(request, allowed)
        matching = int(np.count_nonzero(allowed))
        if self._index.uses_ann(matching):
            hits = self._ann_ranked(request, allowed, matching)
            if hits is not None:
                return hits
        index = ExactIndex(self._matrix[:len(allowed)])
        slots, scores = index.scores(request.vector, allowed)
        return self._ranked(slots, scores, request, len(allowed))

    def _by_vector(self, request: SearchRequest) -> list[Hit]:
        """Hits ranked by the vector alone: one index search over the cached live & filter mask.

        Excluded ids (an `id` query's own anchors) are searched for as many more hits and then
        left out, so the mask keeps its cached count, slot list and FAISS selector (a fresh mask
        without them cost a copy, a count and a bitmap per query: half an `id` search). Exact
        search gives the same hits in the same order (ties go to the lower slot either way); the
        index searches a pool larger by the excluded count.
        """
        slots, scores = self._vector_slots(request)
        ids = self._slot_ids
        return [Hit(ids[s], sc) for s, sc in zip(slots, scores.tolist())]

    def _vector_slots(self, request: SearchRequest) -> tuple[list[int], np.ndarray]:
        """`_by_vector`'s hits as (slots, float32 scores), from the offset on."""
        allowed = self._allowed(request.where, ())
        n = len(allowed)
        drop = set()
        for rid in request.exclude:
            slot = self._slot_of.get(rid)
            if slot is not None and slot < n and allowed[slot]:
                drop.add(slot)
        need = request.k + request.offset
        # unfiltered: the live count (never above the allowed count, see _apply_insert/delete)
        known = self.count() if request.where is MATCH_ALL else None
        slots, scores = self._index.search(request.vector, need + len(drop), allowed, known)
        listed = slots.tolist()
        if drop:
            keep = [i for i, s in enumerate(listed) if s not in drop][:need]
            listed, scores = [listed[i] for i in keep], scores[keep]
        off = request.offset
        return (listed[off:], scores[off:]) if off else (listed, scores)

    def search_docs(self, request: SearchRequest) -> tuple[list[str], Sequence[float], list[dict | None]]:
        """`search`, and the stored documents of its hits, in one call: where the vector alone
        ranks and every hit's document is kept (docs.py), they are found by the slots the
        search returned, read under the same hold of the lock (so each is the live record of
        its slot), without `Hit` objects or a lookup of each id's slot again. The documents
        are the caller's to read, not to change (docs.py `documents`: some are the cache's);
        the scores come as the index's float32 array (query/search.py `rounded`)."""
        if request.slot_scores is not None or request.boosts or request.group_by or self._store.read_only:
            return super().search_docs(request)  # type: ignore[misc]
        with self._rw.read():
            self._check_present()
            slots, scores = self._vector_slots(request)
            docs = self._docs.flat(slots)
            ids = self._slot_ids
            ids = [ids[s] for s in slots]
            kept = self._docs.lookup(slots) if None in docs else None
        if kept is None:  # every one kept and flat: the common case
            return ids, scores, docs  # type: ignore[return-value]
        if None in kept:  # some not kept yet: read as `get` reads them
            return ids, scores, self.get(ids)
        return ids, scores, documents(kept)  # type: ignore[arg-type]

    def search_many(self, vectors: np.ndarray, request: SearchRequest) -> list[list[Hit]]:
        """`search` for each row of `vectors`: one index call for the batch when nothing but a
        filter shapes the ranking (boosts, grouping, excluded ids: one search each)."""
        with self._rw.read():
            self._check_present()
            if request.boosts or request.group_by or request.exclude or request.slot_scores is not None:
                return [self._search(dataclasses.replace(request, vector=v)) for v in vectors]
            ids = self._slot_ids
            return [[Hit(ids[s], sc) for s, sc in zip(slots, scores.tolist())]
                    for slots, scores in self._many_slots(vectors, request)]

    def _many_slots(self, vectors: np.ndarray, request: SearchRequest) -> list[tuple[list[int], np.ndarray]]:
        """(slots, float32 scores) from the offset on per row of `vectors`: one index call (the
        read lock held)."""
        allowed = self._allowed(request.where, ())
        known = self.count() if request.where is MATCH_ALL else None
        off = request.offset
        return [(slots[off:].tolist(), scores[off:]) if off else (slots.tolist(), scores)
                for slots, scores in self._index.search_many(vectors, request.k + off, allowed, known)]

    def search_many_docs(self, vectors: np.ndarray, request: SearchRequest
                         ) -> list[tuple[list[str], Sequence[float], list[dict | None]]]:
        """`search_docs` for each row of `vectors`: one index call, documents by slot as there."""
        if request.boosts or request.group_by or request.exclude or request.slot_scores is not None \
                or self._store.read_only:
            return super().search_many_docs(vectors, request)  # type: ignore[misc]
        with self._rw.read():
            self._check_present()
            found = self._many_slots(vectors, request)
            flat, lookup, ids = self._docs.flat, self._docs.lookup, self._slot_ids
            rows = []
            for slots, scores in found:
                docs = flat(slots)  # every one kept and flat: the common case; else their entries
                rows.append(([ids[s] for s in slots], scores, docs, lookup(slots) if None in docs else None))
        return [(rids, scores, docs if kept is None else documents(kept) if None not in kept  # type: ignore[arg-type]
                 else self.get(rids)) for rids, scores, docs, kept in rows]

    def _precomputed(self, request: SearchRequest, allowed: np.ndarray) -> list[Hit]:
        """Rank by scores given per slot (colour, near-duplicates) with filters, boosts, grouping."""
        given = np.asarray(request.slot_scores, dtype=np.float32)
        n = min(len(allowed), len(given))
        slots = np.flatnonzero(allowed[:n] & np.isfinite(given[:n]))
        return self._ranked(slots, given[slots], request, len(allowed))

    def _ann_ranked(self, request: SearchRequest, allowed: np.ndarray, matching: int) -> list[Hit] | None:
        """Boosts/grouping over HNSW candidates, widening the pool until k hits (or groups) appear.

        Each positively boosted set gets its own filtered graph search, so a boosted record
        far below the plain top candidates is still considered. None: use exact search.
        """
        for pool in planning.candidate_pools(request.k + request.offset, matching):
            parts = [self._index.search(request.vector, pool, allowed, matching)]
            for node, weight in request.boosts:
                if weight > 0:
                    parts.append(self._index.search(request.vector, pool, allowed & self._fields.mask(node, len(allowed))))
            slots = np.concatenate([p[0] for p in parts])
            scores = np.concatenate([p[1] for p in parts])
            slots, first = np.unique(slots, return_index=True)
            hits = self._ranked(slots, scores[first], request, len(allowed))
            if not request.group_by or len(hits) >= request.k:
                return hits
        return None

    def _ranked(self, slots: np.ndarray, scores: np.ndarray, request: SearchRequest, n: int) -> list[Hit]:
        """The request's hits among scored candidate slots: boosted, then the best (per group)."""
        scores = add_boosts(scores, request.boosts, lambda node: self._fields.mask(node, n)[slots])
        if not request.group_by:
            return best_hits(self._slot_ids, slots, scores, request.k, request.offset)
        return self._grouped(slots, scores, request)

    def _grouped(self, slots: np.ndarray, scores: np.ndarray, request: SearchRequest) -> list[Hit]:
        """Best hit per group value: widen the candidate pool until enough groups appear."""
        need = request.k + request.offset
        first = self._fields.first_values(request.group_by, len(self._alive[: self.n_slots]))
        keys = group_keys(first[slots], slots)
        pool = need * 4
        while True:
            cand = top_k(scores, pool)
            _, firsts = np.unique(keys[cand], return_index=True)
            firsts.sort()
            if len(firsts) >= need or pool >= len(scores):
                break
            pool *= 4
        hits = []
        for pos in cand[firsts[:need]][request.offset:]:
            vid = int(first[slots[pos]])
            group = self._fields.value_of(request.group_by, vid) if vid >= 0 else None
            hits.append(Hit(self._slot_ids[slots[pos]], float(scores[pos]), group))
        return hits

    def hybrid_scores(self, vector: np.ndarray | None, text: np.ndarray | None, text_weight: float) -> np.ndarray:
        """Per slot: (1 - w) * visual + w * text similarity (one side alone when the other is None).
        NaN where a record has no text vector: such records are never text hits."""
        with self._reading():
            return self._hybrid_scores(vector, text, text_weight)

    def _hybrid_scores(self, vector: np.ndarray | None, text: np.ndarray | None, text_weight: float) -> np.ndarray:
        n = self.n_slots
        if text is None:
            return np.asarray(self._matrix[:n] @ np.asarray(vector, dtype=np.float32), dtype=np.float32)
        text_scores = self._text.scores(text, n)
        if vector is None:
            return text_scores
        visual = np.asarray(self._matrix[:n] @ np.asarray(vector, dtype=np.float32), dtype=np.float32)
        return (1 - text_weight) * visual + text_weight * np.nan_to_num(text_scores, nan=0.0)  # no text: looks only

    def text_vectors(self, ids: Sequence[str]) -> np.ndarray:
        """The text vectors of the ids that have one, stacked (0 rows if none)."""
        with self._reading():
            return self._text.get([self._slot_of[i] for i in ids if i in self._slot_of])

    def scores(self, vector: np.ndarray, ids: Sequence[str]) -> dict[str, float]:
        with self._reading():
            matrix = self._matrix
            known = [(i, self._slot_of[i]) for i in ids if i in self._slot_of]
            if not known:
                return {}
            sims = matrix[np.array([s for _, s in known])] @ np.asarray(vector, dtype=np.float32)
            return {i: float(s) for (i, _), s in zip(known, sims)}
