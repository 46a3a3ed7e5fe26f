"""`match`: the stored records an image (or a record) is a copy of, verified geometrically.

Candidates come from the perceptual fingerprints (query/duplicates.py `similarities`) and the
global embedding, taken in turns by rank; the first MAX_VERIFIED of them are verified with
local features and RANSAC (query/verify.py), the query's mirror only where the plain query
fails, then photometrically on the aligned region. Images without enough keypoints (near-flat
ones, smooth gradients) fall back to a strict whole-image fingerprint match. The cost per
query is bounded (a fixed number of candidates), whatever the collection's size, and spread
over the workers' pool (query/workers.py): the embedding and its nearest records beside the
keypoints and fingerprints, the candidates two at a time. Measured with bench/copybench.py and
bench/copyprofile.py; notes in docs/duplicates.md.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from ..errors import BadRequest, NotFound
from ..models.fingerprint import (FINGERPRINT, PIXEL_HASH, decode_fingerprint, full_width, pixel_hash,
                                  query_hashes, stored_query_hashes, trim_border)
from ..models.images import fit_square, open_image
from ..models.keypoints import (KEYPOINTS, SIDE, Features, _cv2, decode_features, features, lab_image, mirrored,
                               reduced)
from ..records import check_id, digest
from ..store.base import CollectionStore, SearchRequest
from ..store.filters import Cond
from ..validation import check_int
from .duplicates import CROP_SCAN_MAX, PerStore, check_threshold, similarities, stored_fingerprints
from .engine import IMAGE_KINDS, Searcher
from . import aligned, workers
from .search import MAX_K, check_query, project
from .smooth import NEAREST_DISTANCE, SMOOTH_DISTANCE, SMOOTH_STORED, featureless, smooth_match
from .verify import Estimate, QueryLook, Verified, check, score_of, verify

#: Default score (query/verify.py `score_of`: MIN_INLIERS inliers give 0.5) a copy needs.
DEFAULT_MATCH_THRESHOLD = 0.5
#: Candidates taken: the best by fingerprint similarity and by embedding similarity; at most
#: MAX_VERIFIED of them, alternating between the two lists, are verified.
FINGERPRINT_CANDIDATES, EMBEDDING_CANDIDATES, MAX_VERIFIED = 12, 12, 16
#: Collections with an embedding and more fingerprints than this skip the fingerprint scan.
FINGERPRINT_SCAN_MAX = 20_000
#: Fallback for pictures local features cannot verify (too few keypoints: flat colours,
#: gradients; repeated patterns defeat the ratio test; noise-like texture lost to JPEG): the
#: fingerprints (query/duplicates.py scores) must be this similar, and the images aligned as
#: they are must pass the photometric check with a correlation of FLAT_NCC.
FINGERPRINT_SIMILARITY, FLAT_NCC = 0.7, 0.8
#: ... or, the aligned lightness correlating to CLOSE_NCC, similar to CLOSE_SIMILARITY: JPEG at
#: quality 10-15 of a soft wallpaper moves its fingerprints most (bench/copyset.py: PastelHills'
#: 0.57-0.66, correlation 0.99-1.00 and hues 2-8 degrees off; no non-copy gained).
CLOSE_SIMILARITY, CLOSE_NCC = 0.6, 0.97
#: Second pass: the best DENSE_CANDIDATES records by embedding that the query's N_FEATURES
#: keypoints did not verify are tried again with QUERY_FEATURES of them (a crop or a rotated
#: copy keeps few of the stored keypoints, and more query keypoints give more of them a
#: partner), the inliers needing DENSE_RATIO of the matches (more query keypoints make more
#: matches that have no partner) and to number DENSE_INLIERS (bench/copybench.py set: copies
#: this pass verified had 11-71, 15 of 17 at least 12; non-copies it let through 10-11). ORB
#: costs about the same; matching 1.2 ms a candidate.
QUERY_FEATURES, DENSE_CANDIDATES, DENSE_RATIO, DENSE_INLIERS = 400, 4, 0.1, 12
#: Third pass, when nothing verified: the embedding of the query's centre (CENTRE_SHARE of each
#: side) names EMBEDDING_CANDIDATES more. A rotation with an expanded canvas (black or white
#: corners), bars or a border move the whole image's embedding away from the original's, its
#: centre's not (bench/copyset.py: of 21 missed copies whose item was not among the 12 nearest,
#: the centre's embedding ranked it first for 16). Its keypoint fits need DENSE_INLIERS, as the
#: dense pass's: more candidates tried, more chances for shared artwork to fit (copies it found
#: had 13-53 inliers, a held-out icon drawn inside a stored one 11).
CENTRE_SHARE = 0.5
#: Longest side of the query's CIELAB image warped for the photometric check.
LOOK_SIDE = 80
#: Decoded stored features kept per collection (about 7 KB each), most recently used first.
FEATURE_CACHE = 4096


class FeatureCache:
    """Decoded `_keypoints` of recently verified records, by id (checked against the stored
    string, so an upsert's new features are decoded again)."""

    def __init__(self, size: int = FEATURE_CACHE) -> None:
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[str, Features | None]] = OrderedDict()
        self._size = size

    def get(self, rid: str, value: object) -> Features | None:
        with self._lock:
            hit = self._items.get(rid)
            if hit is not None and hit[0] == value:
                self._items.move_to_end(rid)
                return hit[1]
        decoded = decode_features(value)
        with self._lock:
            self._items[rid] = (value if isinstance(value, str) else "", decoded)
            self._items.move_to_end(rid)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return decoded


_FEATURES = PerStore(FeatureCache)
_THUMBNAILS = PerStore(aligned.ThumbnailCache)


def _feature_cache(store: CollectionStore) -> FeatureCache:
    return _FEATURES.get(store)


@dataclass
class Query:
    """What `match` compares: hashes, features (and, for an image, its mirror's, made when
    first needed), colours, and what makes a record an exact copy."""

    hashes: object
    plain: Features
    look: QueryLook
    rgb: np.ndarray | None = None      # the reduced image, for the mirrored features
    pix: str | None = None
    source: str | None = None
    vector: np.ndarray | None = None
    #: the looks of the image (and of it without a uniform frame) with their sizes, for the
    #: fingerprint fallback's check of the unmoved images
    unmoved: list[tuple[QueryLook, tuple[int, int]]] | None = None
    image: Image.Image | None = None   # the decoded query, for its centre's embedding
    scanned: bool = True               # did the fingerprints of the whole collection get scanned?
    embedding_top: tuple[str, ...] = ()   # the best DENSE_CANDIDATES by embedding
    refuted: bool = False              # did the pixel check drop a keypoint-verified candidate?
    thumb: np.ndarray | None = None    # a record query's kept thumbnail (lightness), for the pixel check
    #: the mirror's features and the QUERY_FEATURES ones, made when first needed or started
    #: early (`prefetched`); the lock lets concurrent checks of candidates share them
    _jobs: dict[str, Future] = field(default_factory=dict, repr=False)
    _jobs_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _job(self, name: str, make) -> object:
        with self._jobs_lock:
            job = self._jobs.get(name)
            if job is None:
                job = self._jobs[name] = Future()
                try:
                    job.set_result(make())
                except BaseException as exc:  # raised again by result(), here and to any later caller
                    job.set_exception(exc)
        return job.result()

    def dense(self) -> tuple[Features, Features] | None:
        """The query's and its mirror's QUERY_FEATURES keypoints (made when first needed)."""
        if self.rgb is None:
            return None
        rgb = self.rgb
        return self._job("dense", lambda: dense_features(rgb))

    def grey(self, mirror: bool) -> np.ndarray | None:
        """The query's (or its mirror's) lightness at aligned.ALIGN_SIDE, for the pixel check:
        a record query's kept thumbnail, None without one."""
        if self.rgb is None:
            return mirrored(self.thumb) if mirror and self.thumb is not None else self.thumb
        rgb = self.rgb
        return self._job(f"grey {mirror}", lambda: aligned.query_grey(mirrored(rgb) if mirror else rgb))

    def mirror(self) -> tuple[Features | None, QueryLook | None]:
        if self.rgb is None:
            return None, None
        rgb = self.rgb
        return self._job("mirror", lambda: features(mirrored(rgb))), self._job("mirror look", self.look.mirrored)


def prefetched(rgb: np.ndarray) -> dict[str, Future]:
    """The mirror's and the dense pass's features started in the workers' pool
    (query/workers.py), beside the embedding and the plain features: nearly every query needs
    them (one candidate of MAX_VERIFIED failing the plain keypoints asks for the mirror's).
    None started without a pool (one core): then they are made when first needed."""
    if workers.pool() is None:
        return {}
    return {"mirror": workers.submit(lambda: features(mirrored(rgb))),
            "dense": workers.submit(lambda: dense_features(rgb))}


def dense_features(rgb: np.ndarray) -> tuple[Features, Features]:
    """The image's and its mirror's QUERY_FEATURES keypoints (the dense pass)."""
    return features(rgb, QUERY_FEATURES), features(mirrored(rgb), QUERY_FEATURES)


#: A stored record's look is its colour grid drawn at this many pixels a cell along its longer side.
LOOK_CELL = 8


def grid_look(stored: Features, long: int, interpolation: int) -> QueryLook:
    """A stored record's colour grid drawn as an image `long` pixels on its picture's longer
    side, in its picture's shape (the grid is square whatever the aspect ratio; the look's
    scale is one factor for both axes), by OpenCV's `interpolation`."""
    w, h = stored.size
    size = (max(1, round(long * w / max(w, h))), max(1, round(long * h / max(w, h))))
    return QueryLook.of(_cv2().resize(stored.colours, size, interpolation=interpolation), stored.size)


def look_of(stored: Features) -> QueryLook:
    """A stored record's look, for comparing it as a query: its colour grid (no pixels kept),
    each cell drawn as a block (LOOK_CELL)."""
    return grid_look(stored, stored.colours.shape[1] * LOOK_CELL, _cv2().INTER_NEAREST)


def _candidates(engine: Searcher, query: Query, exclude: list[str]) -> dict[str, float]:
    """Candidate id -> its fingerprint similarity (-1 when it came from the embedding only),
    in the order to verify them: fingerprint and embedding ranks taken in turns. Collections
    past FINGERPRINT_SCAN_MAX with an embedding take the embedding's alone (`query.scanned`
    False): the scan grows with the collection, and found 10 of 1,517 verified copies the
    embedding's candidates did not (bench/copybench.py set)."""
    store = engine.store
    by_print: list[tuple[str, float]] = []
    # past FINGERPRINT_SCAN_MAX live records the slots are too (the fingerprints not read)
    too_many = query.vector is not None and store.count() > FINGERPRINT_SCAN_MAX
    slots, hashes = (np.empty(0, dtype=np.int64), None) if too_many else stored_fingerprints(store)
    query.scanned = not too_many and (len(slots) <= FINGERPRINT_SCAN_MAX or query.vector is None)
    if len(slots) and query.scanned:
        qhashes = query.hashes
        if len(slots) > CROP_SCAN_MAX:
            qhashes.crop = qhashes.crop[:0]
        wanted = FINGERPRINT_CANDIDATES + len(exclude)
        sims = similarities(hashes, qhashes, top=wanted)
        top = np.argpartition(-sims, min(len(sims), wanted) - 1)[:wanted]
        scores = np.full(int(slots.max()) + 1, -np.inf, dtype=np.float32)
        scores[slots[top]] = sims[top]
        by_print = [(hit.id, float(hit.score)) for hit in store.search(SearchRequest(
            vector=np.zeros(1, dtype=np.float32), k=FINGERPRINT_CANDIDATES, slot_scores=scores, exclude=exclude))]
    by_vector: list[str] = []
    if query.vector is not None:
        nearest = query._jobs.get("nearest")  # searched by the worker that made the embedding
        by_vector = nearest.result() if nearest is not None and not exclude else _nearest(store, query.vector, exclude)
    query.embedding_top = tuple(by_vector[:DENSE_CANDIDATES])
    prints = dict(by_print)
    out: dict[str, float] = {}
    for n in range(max(len(by_print), len(by_vector))):
        for rid in ([by_print[n][0]] if n < len(by_print) else []) + ([by_vector[n]] if n < len(by_vector) else []):
            out.setdefault(rid, prints.get(rid, -1.0))
    return out


def _flat_match(query: Query, stored: Features, similarity: float, close: bool = False) -> Verified | None:
    """The fingerprint fallback: the whole images aligned as they are, checked photometrically
    (FINGERPRINT_SIMILARITY and FLAT_NCC, or, `close`, CLOSE_SIMILARITY and CLOSE_NCC)."""
    if similarity < FINGERPRINT_SIMILARITY and (similarity < CLOSE_SIMILARITY or not close):
        return None
    need = FLAT_NCC if similarity >= FINGERPRINT_SIMILARITY else CLOSE_NCC
    for look, size in query.unmoved or [(query.look, query.plain.size)]:
        sx, sy = stored.size[0] / size[0], stored.size[1] / size[1]
        e = Estimate(0, 0, np.array([[sx, 0, 0], [0, sy, 0]], dtype=np.float64), False, 0.0, 1.0,
                     [0.0, 0.0, 1.0, 1.0], 1.0, 1.0)
        v = check(e, look, stored, geometry=False)
        if v is not None and v.ncc >= need:
            return Verified(e, v.ncc, round(similarity, 6), v.distance)
    return None


def _query(engine: Searcher, kind: str, value: object) -> tuple[Query, list[str]]:
    """The query's hashes, features and colours, and the ids to leave out of its hits."""
    store = engine.store
    if kind == "id":
        check_id(value, "'id'")
        doc = store.get([value])[0]
        if doc is None:
            raise NotFound(f"record {value!r} not found in collection {engine.name!r}")
        q = record_query(doc, kept_thumbnail(store, value, doc))
        if q is None:
            raise BadRequest(f"record {value!r} has no image fingerprint or features (a '_vector' record, or ingested "
                             "before they existed: upsert its image again)")
        q.vector = engine.anchor_vector({"id": value})[0] if engine.encoder is not None else None
        return q, [value]
    if kind in IMAGE_KINDS:
        data = engine.image_bytes(kind, value)
        encoder = engine.encoder
        image = open_image(data, max_pixels=engine.max_pixels, draft_size=max(SIDE, encoder.input_size if encoder else 0))
        # the embedding from the same decode (one decode a query; JPEGs drafted to SIDE), made
        # by a worker beside the keypoints (query/workers.py)
        found = None if encoder is None else workers.submit(lambda: _embedding_and_nearest(engine, image))
        q = image_query(image, data, keep_image=encoder is not None, prefetch=True)
        if found is not None:
            q.vector = found.result()[0]
            q._jobs["nearest"] = workers.done(found.result()[1])
        return q, []
    raise BadRequest(f"match takes an image (url, base64, file) or a record id, not '{kind}'")


def _nearest(store: CollectionStore, vector: np.ndarray, exclude: list[str]) -> list[str]:
    """The EMBEDDING_CANDIDATES records nearest the vector."""
    return [hit.id for hit in store.search(SearchRequest(vector=vector, k=EMBEDDING_CANDIDATES, exclude=exclude))]


def _embedding_and_nearest(engine: Searcher, image: Image.Image) -> tuple[np.ndarray, list[str]]:
    """The image's embedding and the records nearest it: one worker's task, the search (an
    HNSW beam of thousands where the calibration asks for it) beside the keypoints and
    fingerprints of the query made meanwhile."""
    vector = _embedding(engine, image)
    return vector, _nearest(engine.store, vector, [])


def _embedding(engine: Searcher, image: Image.Image) -> np.ndarray:
    """The image's embedding, mapped into the collection's tuned space (where its stored
    vectors are searched)."""
    encoder = engine.encoder
    return engine.to_space(encoder.embed(fit_square(image, encoder.input_size, mode=encoder.fit)[None]).vectors[0])


def image_query(image, data: bytes, vector: np.ndarray | None = None, keep_image: bool = False,
                prefetch: bool = False) -> Query:
    """What `match` compares of a decoded query image (`data`: its file's bytes); `keep_image`
    keeps the decoded image for the embedding of its centre (when nothing verifies);
    `prefetch` starts the mirror's and the dense pass's features at once (`prefetched`)."""
    rgb = reduced(image)
    jobs = prefetched(rgb) if prefetch else {}
    plain = features(rgb)
    look = QueryLook.of(lab_image(rgb, LOOK_SIDE), plain.size)
    unmoved = [(look, plain.size)]
    raw = image.tobytes()  # once: hashed, and searched for a frame
    trimmed = trim_border(image, data=raw)
    if trimmed is not None:
        small = reduced(trimmed)
        size = (small.shape[1], small.shape[0])
        unmoved.append((QueryLook.of(lab_image(small, LOOK_SIDE), size), size))
    return Query(query_hashes(image, trimmed), plain, look, rgb, pixel_hash(image, raw), digest(data), vector, unmoved,
                 image if keep_image else None, _jobs=jobs)


def record_query(doc: dict, thumb: np.ndarray | None = None) -> Query | None:
    """What `match` compares of a stored record (`{"id": ...}`; `thumb`: its kept thumbnail's
    lightness, for the pixel check), None without fingerprint or features."""
    fp = decode_fingerprint(doc.get(FINGERPRINT, ""))
    own = decode_features(doc.get(KEYPOINTS))
    if fp is None or own is None:
        return None
    return Query(stored_query_hashes(fp), own, look_of(own), pix=doc.get(PIXEL_HASH), thumb=thumb)


def _centre_candidates(engine: Searcher, query: Query, exclude: list[str]) -> list[str]:
    """The EMBEDDING_CANDIDATES records nearest the embedding of the query's centre (none for a
    record query or a collection without an encoder)."""
    encoder, image = engine.encoder, query.image
    if encoder is None or image is None:
        return []
    w, h = image.size
    box = (round(w * (1 - CENTRE_SHARE) / 2), round(h * (1 - CENTRE_SHARE) / 2),
           round(w * (1 + CENTRE_SHARE) / 2), round(h * (1 + CENTRE_SHARE) / 2))
    centre = image.crop(box)
    vector = engine.to_space(encoder.embed(fit_square(centre, encoder.input_size, mode=encoder.fit)[None]).vectors[0])
    return [hit.id for hit in engine.store.search(SearchRequest(vector=vector, k=EMBEDDING_CANDIDATES,
                                                               exclude=exclude))]


def _exact_ids(store: CollectionStore, pix: str | None, exclude: list[str]) -> set[str]:
    """Records with the very same pixels (at most MAX_K), through the field index: one lookup
    of the value, where reading the postings (`_slots_with`) walks every distinct value (a
    pixel hash is one a record: 3 ms a query at 100k records)."""
    if not pix:
        return set()
    left_out = set(exclude)
    return set([rid for rid in store.ids_where(Cond(PIXEL_HASH, "$eq", pix)) if rid not in left_out][:MAX_K])


def verified(query: Query, stored: Features, similarity: float, dense: bool = False) -> Verified | None:
    """The query verified against one stored record: keypoints (plain, then mirrored; `dense`:
    then with more query keypoints), else the fingerprints and the photometric check of the
    unmoved images, else (a smooth stored picture, or a featureless coloured query; `dense`,
    one of the records nearest by embedding: a smooth coloured query) the colour grid
    (query/smooth.py)."""
    v = verify(query.plain, query.look, stored, query.mirror)
    if v is None and dense and (more := query.dense()) is not None:
        v = verify(more[0], query.look, stored, lambda: (more[1], query.look.mirrored()), DENSE_RATIO)
        if v is not None and v.estimate.inliers < DENSE_INLIERS:
            v = None
    detailed = len(stored.points) >= SMOOTH_STORED
    if v is None:
        v = _flat_match(query, stored, similarity, close=detailed)
    if v is None and (not detailed or featureless(len(query.plain.points), query.look)):
        v = _grid_match(query, stored, detailed)
    elif v is None and dense and not query.look.grey:  # one of the nearest by embedding: a smooth query's crop
        v = _grid_match(query, stored, True, NEAREST_DISTANCE)
    if v is None and not detailed:  # after the grid: a turned smooth picture correlates unmoved too
        v = _flat_match(query, stored, similarity, close=True)
    return v


def _grid_match(query: Query, stored: Features, detailed: bool, limit: float = SMOOTH_DISTANCE) -> Verified | None:
    """The query (as is, or without its uniform frame) verified by the stored colour grid
    (query/smooth.py `smooth_match`)."""
    for look, _ in query.unmoved or [(query.look, query.plain.size)]:
        v = smooth_match(look, stored, detailed, limit)
        if v is not None:
            return v
    return None


def _verify_all(store: CollectionStore, q: Query, ids: list[str], candidates: dict[str, float], exact: set[str],
                limit: float, min_inliers: int = 0) -> list[tuple[str, float, dict, dict]]:
    """(id, score, `_match`, doc) of the records among `ids` that are exact or verified copies
    (keypoint fits with at least `min_inliers`), in the order of `ids`; the candidates are
    checked by the workers' pool (query/workers.py), each independently of the others."""
    docs = store.get(ids)
    sources = store.hashes(ids) if q.source else {}
    cache = _feature_cache(store)

    def one(pair: tuple[str, dict | None]) -> tuple[str, float, dict, dict] | None:
        rid, doc = pair
        if doc is None:
            return None
        if rid in exact and doc.get(PIXEL_HASH) == q.pix or (
                q.source is not None and sources.get(rid, ("", ""))[1] == q.source):
            return rid, 1.0, {"kind": "exact"}, doc
        stored = cache.get(rid, doc.get(KEYPOINTS))
        if stored is None:
            return None
        similarity = candidates.get(rid, -1.0)
        if not q.scanned or rid not in candidates:  # not scanned: the fingerprint of just this one
            fp = decode_fingerprint(doc.get(FINGERPRINT, ""))
            similarity = float(similarities(full_width(fp)[None], q.hashes)[0]) if fp is not None else -1.0
        v = verified(q, stored, similarity, dense=rid in q.embedding_top)
        if v is None or v.score < limit or 0 < v.estimate.inliers < min_inliers:
            return None
        if not pixels_agree(store, rid, doc, q, stored, v):
            q.refuted = True
            return None
        return rid, v.ranked, v.info(), doc

    return [hit for hit in workers.run_all(one, zip(ids, docs)) if hit is not None]


def kept_thumbnail(store: CollectionStore, rid: str, doc: dict) -> np.ndarray | None:
    """A record's kept thumbnail's lightness (cached), None where the store or the record keeps none."""
    if not store.capabilities.thumbnails:
        return None
    return _THUMBNAILS.get(store).get(rid, doc.get(KEYPOINTS), lambda: store.thumbnail(rid))


def pixels_agree(store: CollectionStore, rid: str, doc: dict, q: Query, stored: Features, v: Verified) -> bool:
    """Does a keypoint-verified copy agree pixel by pixel with the record's kept thumbnail
    (query/aligned.py `agrees`)? True when it cannot be told: a keypoint fit is needed (the
    fallbacks align nothing to check), a store (and record) that keeps a thumbnail, and an
    image query or a record query that keeps one too."""
    e = v.estimate
    grey = q.grey(e.mirrored) if e.inliers and store.capabilities.thumbnails else None
    thumb = None if grey is None else kept_thumbnail(store, rid, doc)
    if thumb is None:
        return True
    return aligned.agrees(aligned.compare(grey, q.plain.size, thumb, stored.size, e.matrix))


def match(engine: Searcher, query: dict, threshold: float | None = None, k: int = 10,
          fields: list[str] | None = None) -> dict:
    """Records that are copies of the query image (or of a stored record, `{"id": ...}`).

    Each hit's `_match` says `kind` ("exact": the same pixels or source bytes; "near": a
    verified copy) and, for near copies, the `box` of the stored image the query covers
    ([x0, y0, x1, y1] fractions), the `angle` (degrees) and `scale` of the copy against the
    stored image, whether it is `mirrored`, and the keypoint `inliers` that verified it."""
    start = time.perf_counter()
    check_query(query)
    limit = check_threshold(threshold, DEFAULT_MATCH_THRESHOLD)
    k = check_int("k", k, 1, MAX_K)
    kind, value = next(iter(query.items()))
    store = engine.store
    q, exclude = _query(engine, kind, value)
    candidates = _candidates(engine, q, exclude)
    exact = _exact_ids(store, q.pix, exclude)
    ids = [i for i in dict.fromkeys([*exact, *list(candidates)[:MAX_VERIFIED]]) if i not in exclude]
    out = _verify_all(store, q, ids, candidates, exact, limit)
    # the centre pass looks for copies whose whole-image embedding moved away; a query whose
    # candidates fit by keypoints and differ in pixels is another drawing sharing artwork with
    # them, and the centre's candidates only offer it more of the same (bench/copyset.py: the
    # globe in a browser window, refuted, then found the bare globe and a repository icon)
    if not out and not q.refuted:
        tried = set(ids)
        more = [i for i in _centre_candidates(engine, q, exclude) if i not in tried]
        q.embedding_top = tuple(more[:DENSE_CANDIDATES])
        out = _verify_all(store, q, more, candidates, set(), limit, DENSE_INLIERS)
    out.sort(key=lambda h: (h[2]["kind"] != "exact", -h[1], h[0]))
    hits = [{"_id": rid, "_score": round(score, 6), "_match": info, **project(doc, fields)}
            for rid, score, info, doc in out[:k]]
    return {"hits": hits, "took_ms": round((time.perf_counter() - start) * 1000, 3)}


__all__ = ["match", "DEFAULT_MATCH_THRESHOLD", "score_of"]
