"""`explain: true`: why each hit is where it is.

Every hit gets `_explain`: the parts its score is the sum of (looks, text, colour, negative
anchors, each boost rule that matched), the automatic labels and dominant colours it shares
with the query, and, when it is a near-duplicate of the query image, how it matched and where
(docs/search.md, "Explain"). The parts are recomputed for the few hits returned from what the
ranking used (`SearchParams.trace`, filled while the search ran), with the store's own
similarity and filter code, so they add up to `_score` (up to float rounding, and to the
approximation of an ANN index, reported as `other`).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..models.colors import dominant_colors, hex_to_rgb, srgb_to_lab
from ..models.fingerprint import FINGERPRINT, PIXEL_HASH, decode_fingerprint, full_width
from ..models.images import load_pixels, open_image
from ..models.keypoints import KEYPOINTS, SIDE, decode_features
from ..store.base import CollectionStore
from ..store.filters import And, Cond, Node, Not, Or
from .colors import SIGMA, ciede2000, parse_color
from .duplicates import _hamming, similarities
from .engine import IMAGE_KINDS, Searcher, anchor_ids
from .labels import LABEL_PATH
from .match import DEFAULT_MATCH_THRESHOLD, Query, image_query, kept_thumbnail, pixels_agree, record_query, verified
from .search import SearchParams

#: Two dominant colours are "shared" within this CIEDE2000 difference (about a just-noticeable
#: difference of 2 times over: what people call the same colour at a glance).
SHARED_DELTA = 12.0
#: Colours lighter than this share of an image are left out of the shared list.
MIN_COLOR_WEIGHT = 0.05
#: A part this far from what the ranking scored is reported as `other` (float32 sums differ by ~1e-7).
OTHER_TOLERANCE = 1e-4


# -- before the search: what the query is made of ------------------------------------------------
def prepare(engine: Searcher, params: SearchParams) -> None:
    """Record the query's labels, colours and what `match` compares of it in `params.trace`.

    An image query is decoded and embedded once here: its vector then replaces the image in the
    query (as `same_label` does), and `same_label` is applied from the labels found.
    """
    kind, value = next(iter(params.query.items()))
    trace = params.trace
    if kind in ("id", "ids"):
        ids = anchor_ids(kind, value)
        docs = [d for d in engine.store.get(ids) if d is not None]
        trace["labels"] = _merged_labels([d.get("_labels") or [] for d in docs])
        trace["colors"] = (docs[0].get("_colors") or []) if len(docs) == 1 else []
        if len(docs) == 1:
            trace["copy"] = record_query(docs[0], kept_thumbnail(engine.store, docs[0]["_id"], docs[0]))
    elif kind in IMAGE_KINDS:
        data = engine.image_bytes(kind, value)
        encoder = engine.encoder
        image = open_image(data, max_pixels=engine.max_pixels, draft_size=max(SIDE, encoder.input_size if encoder else 0))
        trace["colors"] = dominant_colors(image)
        trace["copy"] = image_query(image, data)  # as `match` would see it
        if encoder is not None:
            pixels = load_pixels(data, encoder.input_size, fit=encoder.fit, max_pixels=engine.max_pixels)
            emb = encoder.embed(pixels[None])
            trace["labels"] = list(emb.labels[0]) if emb.labels else []
            params.query = {"vector": emb.vectors[0].tolist()}
            if params.same_label and trace["labels"]:
                params.where = And((params.where, Cond(LABEL_PATH, "$in", [trace["labels"][0]["label"]])))
                params.same_label = False
    elif kind == "color":
        trace["colors"] = [{"color": value, "weight": 1.0}] if isinstance(value, str) else []


def _merged_labels(lists: Sequence[list]) -> list[dict]:
    """Labels of several anchors: each label once, with its best score, best first."""
    best: dict[str, float] = {}
    for labels in lists:
        for item in labels:
            best[item["label"]] = max(best.get(item["label"], 0.0), float(item["score"]))
    return [{"label": k, "score": v} for k, v in sorted(best.items(), key=lambda kv: -kv[1])]


# -- after the search: the parts of each hit's score ----------------------------------------------
def explain_hits(engine: Searcher, params: SearchParams, hits: list[dict], *, vector: np.ndarray,
                 slot_scores: np.ndarray | None, boosts: tuple[Sequence, Sequence, Sequence]) -> None:
    """Add `_explain` to each hit (in place)."""
    if not hits:
        return
    store, trace = engine.store, params.trace
    ids = [h["_id"] for h in hits]
    docs = dict(zip(ids, store.get(ids)))
    parts: dict[str, dict[str, float]] = {i: {} for i in ids}
    similarity: dict[str, dict[str, float]] = {i: {} for i in ids}
    kind = next(iter(params.query))
    if kind == "color":
        lab = parse_color(params.query["color"])
        for i in ids:
            parts[i]["color"] = _color_score(lab, (docs[i] or {}).get("_colors") or [])
    elif "text" in trace:  # text / hybrid / compound: scale * ((1 - h) * looks + h * text)
        h, scale = trace["hybrid"], trace.get("scale", 1.0)
        looks = store.scores(vector, ids) if np.any(vector) else {}
        texts = store.text_vector_map(ids) if trace["text"] is not None else {}
        for i in ids:
            if h < 1:
                similarity[i]["visual"] = looks.get(i, 0.0)
                parts[i]["visual"] = scale * (1 - h) * looks.get(i, 0.0)
            if i in texts:
                similarity[i]["text"] = float(texts[i] @ trace["text"])
                parts[i]["text"] = scale * h * similarity[i]["text"]
    else:
        name = "text" if kind == "text" else "visual"  # a text query through the model's text tower
        positive = trace.get("positive", vector)
        looks = store.scores(positive, ids)
        negative = trace.get("negative")
        away = store.scores(negative, ids) if negative is not None else {}
        for i in ids:
            parts[i][name] = looks.get(i, 0.0)
            if negative is not None:
                similarity[i]["negative"] = away.get(i, 0.0)
                parts[i]["negative"] = -params.negative_weight * away.get(i, 0.0)
    rules = _boost_effects(store, ids, boosts)
    query_labels = {x["label"]: x["score"] for x in trace.get("labels") or []}
    query_colors = [c for c in trace.get("colors") or [] if c.get("weight", 0) >= MIN_COLOR_WEIGHT]
    for hit in hits:
        i, doc = hit["_id"], docs[hit["_id"]] or {}
        own = {name: round(value, 6) for name, value in parts[i].items()}
        matched = [{**rule, "effect": rule["weight"]} for rule in rules if i in rule["ids"]]
        if matched:
            own["boosts"] = round(sum(r["weight"] for r in matched), 6)
        other = hit["_score"] - sum(own.values())
        if abs(other) > OTHER_TOLERANCE:
            own["other"] = round(other, 6)
        out: dict[str, Any] = {"score": hit["_score"], "parts": own,
                               "boosts": [{k: r[k] for k in ("source", "rule", "filter", "weight", "effect")}
                                          for r in matched]}
        if similarity[i]:
            out["similarity"] = {k: round(v, 6) for k, v in similarity[i].items()}
        out["labels"] = [{"label": x["label"], "query": round(query_labels[x["label"]], 4),
                          "hit": round(float(x["score"]), 4)}
                         for x in doc.get("_labels") or [] if x.get("label") in query_labels]
        out["colors"] = _shared_colors(query_colors, doc.get("_colors") or [])
        duplicate = _near_duplicate(trace, store, i, doc)
        if duplicate is not None:
            out["duplicate"] = duplicate
        hit["_explain"] = out


def _color_score(lab: np.ndarray, colors: list[dict]) -> float:
    """The colour search's score of a record (query/colors.py): weights of its colours near `lab`."""
    total = 0.0
    for c in colors:
        try:
            d = float(ciede2000(lab, srgb_to_lab(np.array(hex_to_rgb(c["color"]), dtype=np.float64))))
            total += float(c["weight"]) * float(np.exp(-((d / SIGMA) ** 2)))
        except (KeyError, TypeError, ValueError):
            continue
    return total


def _boost_effects(store, ids: list[str], boosts: tuple[Sequence, Sequence, Sequence]) -> list[dict]:
    """Every boost rule the ranking applied, with the hits it matched (by the store's own filter code)."""
    out = []
    for source, rules in zip(("collection", "request", "attributes"), boosts):
        for n, (node, weight) in enumerate(rules, 1):
            if not weight:
                continue
            matched = set(store.ids_where(And((node, Cond("_id", "$in", ids)))))
            out.append({"source": source, "rule": n, "filter": node_spec(node), "weight": weight,
                        "ids": matched})
    return out


def node_spec(node: Node) -> Any:
    """A parsed filter back in the JSON form it was given in (for reading, not re-parsing)."""
    if isinstance(node, Cond):
        return {node.path: node.value if node.op == "$eq" else {node.op: node.value}}
    if isinstance(node, And):
        return {"$and": [node_spec(c) for c in node.children]}
    if isinstance(node, Or):
        return {"$or": [node_spec(c) for c in node.children]}
    if isinstance(node, Not):
        return {"$not": node_spec(node.child)}
    return None


def _shared_colors(query: list[dict], hit: list[dict]) -> list[dict]:
    """Query colours with a colour of the hit within SHARED_DELTA: `{"query", "hit", "delta"}`."""
    out = []
    try:
        hit = [c for c in hit if float(c["weight"]) >= MIN_COLOR_WEIGHT]
        if not query or not hit:
            return []
        labs = srgb_to_lab(np.array([hex_to_rgb(c["color"]) for c in hit], dtype=np.float64))
        for q in query:
            d = ciede2000(srgb_to_lab(np.array(hex_to_rgb(q["color"]), dtype=np.float64)), labs)
            best = int(np.argmin(d))
            if d[best] <= SHARED_DELTA:
                out.append({"query": q["color"], "hit": hit[best]["color"], "delta": round(float(d[best]), 2)})
    except (KeyError, TypeError, ValueError):
        return []
    return out


# -- near-duplicates: how and where ----------------------------------------------------------------
#: A verified copy turned by at least this many degrees is `rotated` (fits of unturned copies
#: come out within a few tenths of a degree; the copies of issue 16 turn by 3 to 15) ...
ROTATED_ANGLE = 2.0
#: ... and one covering less than this share of the hit's area is a `crop` of it.
CROP_AREA = 0.9


def _near_duplicate(trace: dict, store: CollectionStore, rid: str, doc: dict) -> dict | None:
    """How the hit `rid` copies the query image, verified as `match` verifies it (query/match.py
    `verified`: keypoints and RANSAC, the mirror, the fingerprint fallback, colours; then
    `pixels_agree` with its kept thumbnail), or None.

    `how`: `exact` (the same pixels), `whole` (resized, recompressed, edited), `mirrored`,
    `rotated` or `crop` (the query is a part of the hit); `region`: where the query's picture
    lies in the hit, `[x0, y0, x1, y1]` as fractions of its width and height.
    """
    query: Query | None = trace.get("copy")
    if query is None:
        return None
    if query.pix and doc.get(PIXEL_HASH) == query.pix:
        return {"match": "exact", "score": 1.0, "how": "exact", "region": [0.0, 0.0, 1.0, 1.0]}
    fp = decode_fingerprint(doc.get(FINGERPRINT) or "")
    stored = decode_features(doc.get(KEYPOINTS))
    if fp is None or stored is None:
        return None
    v = verified(query, stored, float(similarities(full_width(fp)[None], query.hashes)[0]), dense=True)
    if v is None or v.score < DEFAULT_MATCH_THRESHOLD:
        return None
    if not pixels_agree(store, rid, doc, query, stored, v):
        return None
    e = v.estimate
    area = (e.box[2] - e.box[0]) * (e.box[3] - e.box[1])
    # the fingerprint fallback (no keypoint fit) aligns the images as they are: a mirror shows
    # in which of the query's whole-image hashes, plain or mirrored, is nearer
    mirrored = e.mirrored or e.inliers == 0 and int(_hamming(full_width(fp)[0], query.hashes.plain).argmin()) % 2
    how = ("mirrored" if mirrored else "rotated" if abs(e.angle) >= ROTATED_ANGLE
           else "crop" if area < CROP_AREA else "whole")
    return {"match": "near", "score": round(v.ranked, 6), "how": how, "region": [round(x, 4) for x in e.box]}
