"""Milvus search: candidates widened until grouping and boosts are exact, and scans that give
this backend slots for text, hybrid and colour scores (see docs/milvus.md)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ...errors import BadRequest, LookalikeError
from ...index.exact import top_k
from ...records import COMPUTED
from ..base import Hit, SearchRequest
from ..ranking import add_boosts, group_keys
from ..field_index import FieldIndex
from ..filters import MATCH_ALL
from .filters import to_expression
from . import names
from .names import FIELDS, MAX_WINDOW, SCAN_REUSE_S, scan_batch, stored_view, text_collection_name


class MilvusSearch:
    """Search and scans of a MilvusCollection (a mixin: it uses the collection's client and reads)."""

    # -- scans: text, hybrid and colour scores -------------------------------------------
    def _take_scan(self, fields: set[str]) -> "_Scan":
        """A fresh pass over the live records, in write order (as the embedded store's slots, so
        equal scores rank alike), made this thread's current scan."""
        rows = list(self._iterate("", ["id", "updated", *sorted(fields)], batch=scan_batch(128 + 2048 * len(fields))))
        rows.sort(key=lambda r: (r["updated"], r["id"]))
        scan = _Scan([r["id"] for r in rows], rows, frozenset(fields), time.monotonic(), self._store.writes(self.name))
        self._local.scan = scan
        return scan

    def _drop_scan(self) -> "_Scan | None":
        scan, self._local.scan = getattr(self._local, "scan", None), None
        return scan

    def postings(self, path: str) -> tuple[np.ndarray, np.ndarray, list]:
        """Postings of one field path over a scan's slots (see `_Scan`).

        A scan serves each path once: the paths one query reads (colour and weight) share a
        scan, the next query's first path takes a fresh one.
        """
        top = path.split(".", 1)[0]
        fields = {"computed"} if top in COMPUTED else set(FIELDS)
        scan = getattr(self._local, "scan", None)
        if (scan is None or path in scan.served or not fields <= scan.fields
                or time.monotonic() - scan.used > SCAN_REUSE_S or scan.writes != self._store.writes(self.name)):
            scan = self._take_scan(fields)
        scan.served.add(path)
        scan.used = time.monotonic()
        post = scan.index(top).paths.get(path)
        if post is None:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32), []
        return post.rows.view(), post.vids.view(), post.keys

    def hybrid_scores(self, vector: np.ndarray | None, text: np.ndarray | None, text_weight: float) -> np.ndarray:
        """Per scan slot: (1 - w) * visual + w * text similarity, as the embedded store computes it
        (NaN text score where a record has no text vector: never a text-only hit)."""
        scan = self._take_scan(set())
        visual = None
        if vector is not None:
            visual = self._similarities(scan, self._mname, np.asarray(vector, dtype=np.float32), self.settings.dim)
        if text is None:
            return visual
        query = np.asarray(text, dtype=np.float32)
        dim = self._store.text_dim(self.name)
        if dim is None or len(query) != dim:
            text_scores = np.full(len(scan.ids), np.nan, dtype=np.float32)
        else:
            text_scores = self._similarities(scan, text_collection_name(self.name), query, dim)
        if visual is None:
            return text_scores
        return (1 - text_weight) * visual + text_weight * np.nan_to_num(text_scores, nan=0.0)  # no text: looks only

    def _similarities(self, scan: "_Scan", mname: str, query: np.ndarray, dim: int) -> np.ndarray:
        """Inner product of `query` with the vector of each scan slot in a Milvus collection (NaN
        where it has none; rows of records not in the scan are ignored).

        One search for every row (ids and scores come back, no vectors: several times faster
        than reading the vectors) when the collection fits in Milvus's window, else a scan.
        """
        out = np.full(len(scan.ids), np.nan, dtype=np.float32)
        position = {rid: i for i, rid in enumerate(scan.ids)}
        result = self._store.call(self._client.search, mname, data=[query.tolist()], anns_field="vector",
                                  limit=names.SCORE_WINDOW, output_fields=["id"],
                                  search_params={"metric_type": "IP", "params": {}})[0]
        if len(result) < names.SCORE_WINDOW:  # every row came back
            pairs = [(position.get(h["id"]), h["distance"]) for h in result]
            slots = np.array([s for s, _ in pairs if s is not None], dtype=np.int64)
            out[slots] = np.array([d for s, d in pairs if s is not None], dtype=np.float32)
            return out
        slots, vecs = [], []
        for row in self._iterate("", ["id", "vector"], batch=scan_batch(128 + 4 * dim), mname=mname):
            slot = position.get(row["id"])
            if slot is not None:
                slots.append(slot)
                vecs.append(row["vector"])
        if slots:
            out[np.array(slots)] = np.asarray(vecs, dtype=np.float32) @ query
        return out

    # -- search --------------------------------------------------------------------------
    def _nearest(self, vector: np.ndarray, limit: int, expr: str, with_docs: bool) -> list["_Candidate"]:
        fields = list(FIELDS) if with_docs else ["id"]
        result = self._store.call(self._client.search, self._mname, data=[np.asarray(vector, np.float32).tolist()],
                                  anns_field="vector", limit=limit, filter=expr, output_fields=fields,
                                  search_params={"metric_type": "IP", "params": {}})
        return [_Candidate(h["id"], float(h["distance"]), stored_view(h["entity"]) if with_docs else None)
                for h in result[0]]

    def search(self, request: SearchRequest) -> list[Hit]:
        if request.slot_scores is not None:
            return self._search_scores(request)
        need = request.k + request.offset
        excluded = set(request.exclude)
        if need + len(excluded) > MAX_WINDOW:
            raise BadRequest(f"k + offset is {need}; the Milvus store pages through at most "
                             f"{MAX_WINDOW - len(excluded)} hits of one query")
        expr = to_expression(request.where)
        plain = not request.boosts and not request.group_by
        headroom = sum(max(0.0, float(w)) for _, w in request.boosts)  # the most boosts can add
        pool = need + len(excluded) if plain else min(MAX_WINDOW, max(64, 4 * need) + len(excluded))
        while True:
            fetched = self._nearest(request.vector, pool, expr, with_docs=not plain)
            exhausted = len(fetched) < pool
            cands = [c for c in fetched if c.id not in excluded]
            if plain:
                return [Hit(c.id, c.score) for c in cands[request.offset:need]]
            # Unfetched records score at most the last fetched raw score plus every positive boost:
            # candidates above that bound are in their final order, the rest may still be overtaken.
            floor = -np.inf if exhausted or not fetched else fetched[-1].score + headroom
            hits, certain = self._rank(cands, request, floor)
            if certain >= need or exhausted or pool >= MAX_WINDOW:
                return hits[request.offset:need]
            pool = min(MAX_WINDOW, pool * 4)

    def _search_scores(self, request: SearchRequest) -> list[Hit]:
        """Rank by scores per slot of this thread's scan (text, hybrid, colour), with the filter
        (run in Milvus), exclusions, boosts and grouping, as the embedded store ranks them."""
        scan = self._drop_scan()
        if scan is None:
            raise LookalikeError("scores by slot need a scan of this collection first "
                                 "(postings or hybrid_scores, in the same thread)")
        given = np.asarray(request.slot_scores, dtype=np.float32)
        n = min(len(scan.ids), len(given))
        allowed = np.isfinite(given[:n])
        if request.where is not MATCH_ALL:
            matching = set(self.ids_where(request.where))
            allowed &= np.fromiter((rid in matching for rid in scan.ids[:n]), dtype=bool, count=n)
        if request.exclude:
            excluded = set(request.exclude)
            allowed &= np.fromiter((rid not in excluded for rid in scan.ids[:n]), dtype=bool, count=n)
        slots = np.flatnonzero(allowed)
        scores = given[slots]
        need = request.k + request.offset
        if not request.boosts and not request.group_by:
            return [Hit(scan.ids[slots[b]], float(scores[b])) for b in top_k(scores, need)[request.offset:]]
        order = top_k(scores, len(scores))
        headroom = sum(max(0.0, float(w)) for _, w in request.boosts)
        pool = min(len(order), max(64, 4 * need))
        while True:
            best = order[:pool]
            ids = [scan.ids[slots[b]] for b in best]
            cands = [_Candidate(rid, float(scores[b]), doc)
                     for rid, b, doc in zip(ids, best, self.get(ids)) if doc is not None]  # None: deleted since
            exhausted = pool >= len(order)
            floor = -np.inf if exhausted else float(scores[order[pool]]) + headroom
            hits, certain = self._rank(cands, request, floor)
            if certain >= need or exhausted:
                return hits[request.offset:need]
            pool = min(len(order), pool * 4)

    def _rank(self, cands: list["_Candidate"], request: SearchRequest, floor: float) -> tuple[list[Hit], int]:
        """Boosted, grouped hits of the candidates, and how many of them are certainly final."""
        n = len(cands)
        fields = FieldIndex()
        fields.add(list(range(n)), [c.doc or {} for c in cands])
        scores = add_boosts(np.array([c.score for c in cands], dtype=np.float32), request.boosts,
                            lambda node: fields.mask(node, n))
        order = top_k(scores, n)
        certain_rows = int(np.sum(scores >= floor))
        if not request.group_by:
            return [Hit(cands[i].id, float(scores[i])) for i in order], certain_rows
        first = fields.first_values(request.group_by, n)
        keys = group_keys(first, np.arange(n)).tolist()
        seen: set = set()
        hits: list[Hit] = []
        certain = 0
        for rank, i in enumerate(order):
            vid = int(first[i])
            if keys[i] in seen:
                continue
            seen.add(keys[i])
            group = fields.value_of(request.group_by, vid) if vid >= 0 else None
            hits.append(Hit(cands[i].id, float(scores[i]), group))
            if rank < certain_rows:
                certain += 1
        return hits, certain


@dataclass
class _Candidate:
    id: str
    score: float
    doc: dict | None  # metadata plus computed fields (what filters and grouping see)


@dataclass
class _Scan:
    """One pass over a collection's live records; record i of `ids` is slot i.

    Milvus has no slots, and the store interface speaks of them between calls (`postings` or
    `hybrid_scores`, then `search` with `slot_scores`), so a scan is kept per thread from the
    call that made it to the search that uses it (which drops it, as do writes and deletes).
    Operations without a search (`duplicates`) leave theirs behind: a later `postings` call
    reuses it only for a path it has not served yet, within SCAN_REUSE_S of its last use, and
    if no write or delete went through this process since (other processes' writes may be
    missed for those seconds).
    """

    ids: list[str]
    rows: list[dict]
    fields: frozenset
    used: float  # time.monotonic() when made or last served postings
    writes: int  # the store's count of writes to the collection when made (MilvusStore.writes)
    served: set = field(default_factory=set)  # paths whose postings it gave
    indexes: dict = field(default_factory=dict)  # top-level key -> FieldIndex of that key alone

    def index(self, top: str) -> FieldIndex:
        """A field index of one top-level key of the records (what `postings` reads)."""
        index = self.indexes.get(top)
        if index is None:
            index = self.indexes[top] = FieldIndex()
            views = [stored_view(r) for r in self.rows]
            index.add(list(range(len(views))), [{top: v[top]} if top in v else {} for v in views])
        return index
