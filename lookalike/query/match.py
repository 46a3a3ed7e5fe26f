"""`match`: the stored records an image (or a record) is a copy of, verified geometrically.

Candidates come from the perceptual fingerprints (query/duplicates.py `similarities`) and the
global embedding; each is verified with local features and RANSAC (query/verify.py), the
query's mirror included, then by the colours of the aligned region. Images without enough
keypoints (near-flat ones, smooth gradients) fall back to a strict whole-image fingerprint
match. Measured on bench/duplicates.py --real; notes in docs/duplicates.md.
"""
from __future__ import annotations

import time

import numpy as np

from ..errors import BadRequest, NotFound
from ..models.fingerprint import (FINGERPRINT, PIXEL_HASH, decode_fingerprint, pixel_hash, query_hashes,
                                  stored_query_hashes)
from ..models.images import open_image
from ..models.keypoints import KEYPOINTS, SIDE, Features, decode_features, features, lab_image, mirrored, reduced
from ..records import check_id, digest
from ..store.base import SearchRequest
from ..validation import check_int
from .duplicates import CROP_SCAN_MAX, _slots_with, check_threshold, similarities, stored_fingerprints
from .engine import IMAGE_KINDS, Searcher
from .search import MAX_K, check_query, project
from .verify import MIN_INLIERS, Verified, colours_agree, score_of, verify

#: Default score (query/verify.py `score_of`: MIN_INLIERS inliers give 0.5) a copy needs.
DEFAULT_MATCH_THRESHOLD = 0.5
#: Candidates verified: the best by fingerprint similarity and by embedding similarity.
FINGERPRINT_CANDIDATES, EMBEDDING_CANDIDATES = 12, 12
#: Fallback for pictures with too few keypoints to verify (flat colours, gradients): the
#: whole-image fingerprints must be this similar (of 1), and the colours agree.
FLAT_SIMILARITY = 0.7
#: Pictures local features cannot verify (repeated patterns defeat the ratio test) still match
#: on a fingerprint similarity this high (query/duplicates.py scores; 0.55 let look-alikes in).
FINGERPRINT_SIMILARITY = 0.78


def _candidate_ids(engine: Searcher, qhashes, vector: np.ndarray | None, exclude: list[str]) -> dict[str, float]:
    """Candidate id -> its fingerprint similarity (or -1 when it came from the embedding only)."""
    store = engine.store
    slots, hashes = stored_fingerprints(store)
    out: dict[str, float] = {}
    if len(slots):
        if len(slots) > CROP_SCAN_MAX:
            qhashes.crop = qhashes.crop[:0]
        sims = similarities(hashes, qhashes)
        top = np.argsort(-sims)[:FINGERPRINT_CANDIDATES + len(exclude)]
        scores = np.full(int(slots.max()) + 1, -np.inf, dtype=np.float32)
        scores[slots[top]] = sims[top]
        for hit in store.search(SearchRequest(vector=np.zeros(1, dtype=np.float32), k=FINGERPRINT_CANDIDATES,
                                              slot_scores=scores, exclude=exclude)):
            out[hit.id] = float(hit.score)
    if vector is not None:
        for hit in store.search(SearchRequest(vector=vector, k=EMBEDDING_CANDIDATES, exclude=exclude)):
            out.setdefault(hit.id, -1.0)
    return out


def _flat_match(query: Features, stored: Features, similarity: float, lab: np.ndarray,
                minimum: float) -> Verified | None:
    """The fingerprint fallback (identity alignment for the colour check)."""
    if similarity < minimum:
        return None
    sx, sy = stored.size[0] / query.size[0], stored.size[1] / query.size[1]
    v = Verified(0, np.array([[sx, 0, 0], [0, sy, 0]], dtype=np.float64), False, 0.0, 1.0, [0.0, 0.0, 1.0, 1.0],
                 round(similarity, 6))
    return v if colours_agree(v, lab, query.size, stored) else None


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
    exclude: list[str] = []
    source = None
    vector = None
    if kind == "id":
        check_id(value, "'id'")
        doc = store.get([value])[0]
        if doc is None:
            raise NotFound(f"record {value!r} not found in collection {engine.name!r}")
        fp = decode_fingerprint(doc.get(FINGERPRINT, ""))
        own = decode_features(doc.get(KEYPOINTS))
        if fp is None or own is None:
            raise BadRequest(f"record {value!r} has no image fingerprint or features (a '_vector' record, or ingested "
                             "before they existed: upsert its image again)")
        qhashes, pix, exclude = stored_query_hashes(fp), doc.get(PIXEL_HASH), [value]
        versions, lab = [(own, False)], own.colours
        vector = engine.anchor_vector({"id": value})[0] if engine.encoder is not None else None
    elif kind in IMAGE_KINDS:
        data = engine.image_bytes(kind, value)
        encoder = engine.encoder
        draft = max(SIDE, encoder.input_size if encoder else 0)
        image = open_image(data, max_pixels=engine.max_pixels, draft_size=draft)
        qhashes, pix, source = query_hashes(image), pixel_hash(image), digest(data)
        rgb = reduced(image)
        plain, flipped = features(rgb), features(mirrored(rgb))
        versions, lab = [(plain, False), (flipped, True)], lab_image(rgb)
        vector = engine.embed_image(data) if encoder is not None else None
    else:
        raise BadRequest(f"match takes an image (url, base64, file) or a record id, not '{kind}'")
    candidates = _candidate_ids(engine, qhashes, vector, exclude)
    exact: set[str] = set()
    exact_slots = _slots_with(store, PIXEL_HASH, pix) if pix else np.empty(0, dtype=np.int64)
    if len(exact_slots):  # records with the very same pixels, found through their slots
        scores = np.full(int(exact_slots.max()) + 1, -np.inf, dtype=np.float32)
        scores[exact_slots] = 1.0
        exact = {h.id for h in store.search(SearchRequest(vector=np.zeros(1, dtype=np.float32), k=MAX_K,
                                                          slot_scores=scores, exclude=exclude))}
    ids = [i for i in dict.fromkeys([*exact, *candidates]) if i not in exclude]
    docs = store.get(ids)
    sources = store.hashes(ids) if source else {}
    out = []
    few = len(versions[0][0].points) < 2 * MIN_INLIERS
    for rid, doc in zip(ids, docs):
        if doc is None:
            continue
        same = rid in exact and doc.get(PIXEL_HASH) == pix or (
            source is not None and sources.get(rid, ("", ""))[1] == source)
        if same:
            out.append((rid, 1.0, {"kind": "exact"}, doc))
            continue
        stored = decode_features(doc.get(KEYPOINTS))
        if stored is None:
            continue
        v = verify(versions, lab, stored)
        if v is None:  # keypoint-poor or repetitive pictures: the fingerprints, strictly
            poor = few or len(stored.points) < 2 * MIN_INLIERS
            v = _flat_match(versions[0][0], stored, candidates.get(rid, -1.0), lab,
                            FLAT_SIMILARITY if poor else FINGERPRINT_SIMILARITY)
        if v is None or v.score < limit:
            continue
        out.append((rid, v.score, {"kind": "near", "box": v.box, "angle": v.angle, "scale": v.scale,
                                   "mirrored": v.mirrored, "inliers": v.inliers}, doc))
    out.sort(key=lambda h: (h[2]["kind"] != "exact", -h[1], h[0]))
    hits = [{"_id": rid, "_score": round(score, 6), "_match": info, **project(doc, fields)}
            for rid, score, info, doc in out[:k]]
    return {"hits": hits, "took_ms": round((time.perf_counter() - start) * 1000, 3)}


__all__ = ["match", "DEFAULT_MATCH_THRESHOLD", "score_of"]
