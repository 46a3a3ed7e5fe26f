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
from ..models.fingerprint import (BITS, CENTRE, CROP_GRID, CROP_QUERY_GRID, CROP_SCALE, CROP_WINDOW, CANVAS,
                                  FINGERPRINT, FIRST_CROP, N_STORED, PIXEL_HASH, QueryHashes, boxes,
                                  decode_fingerprint, full_width, pixel_hash, query_hashes, stored_query_hashes)
from ..models.images import load_pixels, open_image
from ..store.filters import And, Cond, Node, Not, Or
from .colors import SIGMA, ciede2000, parse_color
from .duplicates import (ALIGNED_PENALTY, ALIGNED_TOP, CROP_PENALTY, DEFAULT_MATCH_THRESHOLD, ROTATED_PENALTY,
                         _hamming, _signs, refine_crops, similarities)
from .engine import IMAGE_KINDS, Searcher, anchor_ids
from .labels import LABEL_PATH
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
    """Record the query's labels, colours and near-duplicate hashes in `params.trace`.

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
            fp = decode_fingerprint(docs[0].get(FINGERPRINT) or "")
            if fp is not None:
                trace["hashes"], trace["pixel_hash"] = stored_query_hashes(fp), docs[0].get(PIXEL_HASH)
    elif kind in IMAGE_KINDS:
        data = engine.image_bytes(kind, value)
        encoder = engine.encoder
        image = open_image(data, max_pixels=engine.max_pixels, draft_size=encoder.input_size if encoder else None)
        trace["colors"] = dominant_colors(image)
        trace["hashes"], trace["pixel_hash"] = query_hashes(image), pixel_hash(image)
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
        duplicate = _near_duplicate(trace, doc)
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
def _near_duplicate(trace: dict, doc: dict) -> dict | None:
    """How the hit copies the query image (`match` rules, query/duplicates.py), or None.

    `how`: `exact` (the same pixels), `whole` (resized, recompressed, edited), `mirrored`,
    `rotated`, `window` (the query is a part of the hit) or `crop`; `region`: where the query's
    picture lies in the hit, `[x0, y0, x1, y1]` as fractions of its width and height.
    """
    hashes: QueryHashes | None = trace.get("hashes")
    if hashes is None:
        return None
    if trace.get("pixel_hash") and doc.get(PIXEL_HASH) == trace["pixel_hash"]:
        return {"match": "exact", "score": 1.0, "how": "exact", "region": [0.0, 0.0, 1.0, 1.0]}
    fp = decode_fingerprint(doc.get(FINGERPRINT) or "")
    if fp is None:
        return None
    stored = full_width(fp)[None]
    score = float(similarities(stored, hashes)[0])
    if hashes.canvas is not None and len(hashes.crop):
        score = max(score, float(refine_crops(stored, hashes)[0]))
    if score < DEFAULT_MATCH_THRESHOLD:
        return None
    how, region = _how(stored[0], hashes)
    return {"match": "near", "score": round(score, 6), "how": how, "region": [round(v, 4) for v in region]}


def _how(hit: np.ndarray, q: QueryHashes) -> tuple[str, list[float]]:
    """The comparison that scores best (as `similarities` scores them) and the region it implies."""
    fractions = [(x0 / CANVAS, y0 / CANVAS, x1 / CANVAS, y1 / CANVAS) for x0, y0, x1, y1
                 in [(0, 0, CANVAS, CANVAS)] + boxes()]
    dist = _hamming(hit[:FIRST_CROP, None, :], q.plain[None])              # (10 stored, P versions)
    where, version = np.unravel_index(int(dist.argmin()), dist.shape)
    tries = [(1.0 - 2.0 * dist.min() / BITS, "mirrored" if version % 2 else ("whole" if where == 0 else "window"),
              list(fractions[where]))]
    if len(q.rotated):
        rotated = _hamming(hit[CENTRE:CENTRE + 1, None, :], q.rotated[None]).min()
        tries.append((1.0 - 2.0 * rotated / BITS - ROTATED_PENALTY, "rotated", [0.0, 0.0, 1.0, 1.0]))
    if len(q.aligned):
        small = _hamming(hit[None, FIRST_CROP:N_STORED], q.aligned)
        top = np.sort(small, axis=1)[:, :ALIGNED_TOP].mean(axis=1).min()
        tries.append((1.0 - (top + dist[0].min()) / BITS - ALIGNED_PENALTY, "whole", [0.0, 0.0, 1.0, 1.0]))
    if len(q.crop):
        dots = _signs(hit[FIRST_CROP:N_STORED]) @ _signs(q.crop).T           # (25 stored windows, C query windows)
        w, c = np.unravel_index(int(dots.argmax()), dots.shape)
        tries.append((float(dots.max()) / BITS - CROP_PENALTY, "crop", _crop_region(int(w), int(c))))
    _, how, region = max(tries, key=lambda t: t[0])
    return how, region


def _crop_region(window: int, sub: int) -> list[float]:
    """Where a query that is a crop of the hit lies in it: the query's sub-window `sub` (of its
    CROP_QUERY_GRID grid) is the hit's small window `window`; the query spans CROP_SCALE of the hit."""
    small = boxes(CROP_WINDOW, CROP_GRID)[window]
    grid = boxes(CROP_WINDOW / CROP_SCALE, CROP_QUERY_GRID)  # a stored record's copy side uses the same grid
    qx, qy = grid[sub % len(grid)][:2]
    x0 = small[0] / CANVAS - qx / CANVAS * CROP_SCALE
    y0 = small[1] / CANVAS - qy / CANVAS * CROP_SCALE
    x0, y0 = min(max(x0, 0.0), 1 - CROP_SCALE), min(max(y0, 0.0), 1 - CROP_SCALE)
    return [x0, y0, x0 + CROP_SCALE, y0 + CROP_SCALE]
