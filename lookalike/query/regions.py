"""Search a region: a `box` beside an image or id anchor, and `regions` proposed from the encoder.

`{"id": "sku-1", "box": [x0, y0, x1, y1]}` (fractions of width and height, origin top left)
searches with the embedding of that part of the picture only. An image anchor's pixels are its
own; a stored id's come from its `_file` (when that path can be read here), else its `_url`,
else the thumbnail the store kept; a record with none of them is a 400. The record itself
stays out of the hits, as in any id search.

`regions: N` proposes up to N object regions of the query picture without a detector: the
encoder's last feature map (one 1280-d cell per 32 pixels) is clustered by k-means on the
cells' unit features plus their position, for 2..N+1 clusters; each cluster's connected
pieces are candidate boxes, scored by how strongly the network fires in them (the summed
norm of their cells), near-copies (IoU > 0.6), slivers and boxes covering almost everything
dropped. Each proposal is then searched like a `box`. Design notes: docs/search.md, "Search a region".
"""
from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

from ..errors import BadRequest, LookalikeError, NotFound, NotImplementedYet
from ..models.images import decoded
from ..store.filters import And, Cond, Not
from .engine import Searcher, anchor_ids
from .search import SearchParams

#: A box narrower or lower than this fraction of the picture is refused (too few pixels to say anything).
MIN_BOX = 0.05
DEFAULT_REGIONS, MAX_REGIONS = 4, 8
#: Proposals are computed on the picture scaled so its shorter side is this many pixels (longer side capped at 2x).
PROPOSAL_SIDE = 320
POSITION_WEIGHT = 0.5  # how much a cell's place counts against its features when clustering
MAX_OVERLAP = 0.6
MAX_COVER = 0.9  # a proposal covering more of the picture than this is the whole query again


def check_box(box: Any) -> tuple[float, float, float, float]:
    """`[x0, y0, x1, y1]` fractions in [0, 1], x0 < x1, y0 < y1, at least MIN_BOX wide and high."""
    if (not isinstance(box, (list, tuple)) or len(box) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box)):
        raise BadRequest("'box' must be 4 numbers [x0, y0, x1, y1], fractions of the picture's width and height")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in (x0, y0, x1, y1)):
        raise BadRequest("'box' values must be fractions from 0 to 1 (x0, y0 top left; x1, y1 bottom right)")
    if not (x0 < x1 and y0 < y1):
        raise BadRequest("'box' needs x0 < x1 and y0 < y1 ([left, top, right, bottom])")
    if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
        raise BadRequest(f"'box' must be at least {MIN_BOX:g} of the picture wide and high")
    return x0, y0, x1, y1


def check_regions(value: Any) -> int:
    """`regions`: false/None (off), true (DEFAULT_REGIONS) or a count 1..MAX_REGIONS."""
    if value is None or value is False:
        return 0
    if value is True:
        return DEFAULT_REGIONS
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_REGIONS:
        raise BadRequest(f"'regions' must be true, false or a number of regions from 1 to {MAX_REGIONS}")
    return value


# -- pixels ----------------------------------------------------------------------------------
def stored_pixels(engine: Searcher, rid: str, read_stored: Callable[[Path], bytes] | None) -> bytes:
    """A stored record's picture: its `_file`, else its `_url`, else its kept thumbnail."""
    doc = engine.store.get([rid])[0]
    if doc is None:
        raise NotFound(f"record {rid!r} not found in collection {engine.name!r}")
    tried = []
    path = doc.get("_file")
    if isinstance(path, str) and read_stored is not None:
        try:
            return read_stored(Path(path))
        except LookalikeError as exc:
            tried.append(f"its _file ({exc.message})")
    url = doc.get("_url")
    if isinstance(url, str):
        try:
            return engine.fetch_url(url)
        except LookalikeError as exc:
            tried.append(f"its _url ({exc.message})")
    if engine.store.capabilities.thumbnails:
        thumb = engine.store.thumbnail(rid)
        if thumb:
            return thumb
    reason = "; ".join(tried) if tried else "it has no _file, _url or kept thumbnail"
    raise BadRequest(f"record {rid!r} has no picture to cut a box from: {reason}")


def anchor_pixels(engine: Searcher, query: dict, read_stored: Callable[[Path], bytes] | None) -> tuple[bytes, str | None]:
    """The anchor's image bytes, and the stored id it names (None for an image)."""
    kind, value = next(iter(query.items()))
    if kind == "id":
        rid = anchor_ids(kind, value)[0]
        return stored_pixels(engine, rid, read_stored), rid
    if kind not in ("url", "base64", "file", "image"):
        raise BadRequest("a box or regions need an image anchor: id, url, base64, file or image")
    return engine.image_bytes(kind, value), None


def _crop(engine: Searcher, data: bytes, box: tuple[float, float, float, float]) -> bytes:
    """PNG bytes of the box's part of the picture, shrunk to twice the model's input at most."""
    size = engine.encoder.input_size if engine.encoder is not None else 224
    with decoded(data, max_pixels=engine.max_pixels) as im:
        w, h = im.size
        left, top = int(box[0] * w), int(box[1] * h)
        right, bottom = max(left + 1, math.ceil(box[2] * w)), max(top + 1, math.ceil(box[3] * h))
        part = im.crop((left, top, right, bottom))
    part.thumbnail((4 * size, 4 * size), Image.Resampling.BICUBIC)
    if min(part.size) > 2 * size:
        scale = 2 * size / min(part.size)
        part = part.resize((max(1, round(part.width * scale)), max(1, round(part.height * scale))),
                           Image.Resampling.BICUBIC)
    out = io.BytesIO()
    part.save(out, "PNG")
    return out.getvalue()


def boxed_params(engine: Searcher, params: SearchParams, box: tuple[float, float, float, float],
                 data: bytes, rid: str | None) -> SearchParams:
    """`params` searching by the box's pixels; a stored anchor stays out of the hits."""
    if engine.encoder is None:
        raise BadRequest(f"collection {engine.name!r} has model 'none': a box needs a model to embed pixels")
    where = params.where if rid is None else And((params.where, Not(Cond("_id", "$eq", rid))))
    return dataclasses.replace(params, query={"image": _crop(engine, data, box)}, where=where)


def apply_box(engine: Searcher, params: SearchParams, box: Any,
              read_stored: Callable[[Path], bytes] | None) -> SearchParams:
    """Check the box, fetch the anchor's pixels, and search by that part of them."""
    box = check_box(box)
    data, rid = anchor_pixels(engine, params.query, read_stored)
    return boxed_params(engine, params, box, data, rid)


# -- proposals -------------------------------------------------------------------------------
def feature_map(engine: Searcher, data: bytes) -> np.ndarray:
    """The encoder's feature map (C x h x w) of the whole picture, its shorter side PROPOSAL_SIDE."""
    encoder = engine.encoder
    if encoder is None or not hasattr(encoder, "feature_map"):
        raise NotImplementedYet(f"region proposals need an EfficientNet-Lite model's feature maps; collection "
                                f"{engine.name!r} uses {engine.settings.model!r}: give a 'box' instead")
    with decoded(data, max_pixels=engine.max_pixels) as im:
        w, h = im.size
        scale = PROPOSAL_SIDE / min(w, h)
        size = (max(32, min(2 * PROPOSAL_SIDE, round(w * scale))), max(32, min(2 * PROPOSAL_SIDE, round(h * scale))))
        pixels = np.asarray(im.resize(size, Image.Resampling.BICUBIC))
    return encoder.feature_map(pixels)


def _iou(a: tuple, b: tuple) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def propose_boxes(fmap: np.ndarray, n: int, seed: int = 0) -> list[tuple[float, float, float, float]]:
    """Up to `n` object boxes (fractions) from a C x h x w feature map, most salient first."""
    from scipy import ndimage
    from scipy.cluster.vq import kmeans2

    c, h, w = fmap.shape
    cells = fmap.reshape(c, -1).T.astype(np.float64)
    energy = np.linalg.norm(cells, axis=1)
    unit = cells / np.maximum(energy[:, None], 1e-9)
    ys, xs = np.divmod(np.arange(h * w), w)
    position = np.stack([xs / max(1, w - 1), ys / max(1, h - 1)], axis=1) * POSITION_WEIGHT
    points = np.hstack([unit, position])
    candidates: list[tuple[float, tuple]] = []
    for k in range(2, min(n + 1, h * w - 1) + 1):
        _, labels = kmeans2(points, k, minit="++", seed=seed, missing="warn")
        for cluster in range(k):
            pieces, count = ndimage.label((labels == cluster).reshape(h, w))
            for piece in range(1, count + 1):
                rows, cols = np.nonzero(pieces == piece)
                if len(rows) < max(2, 0.03 * h * w):
                    continue
                box = (cols.min() / w, rows.min() / h, (cols.max() + 1) / w, (rows.max() + 1) / h)
                if (box[2] - box[0]) * (box[3] - box[1]) > MAX_COVER or min(box[2] - box[0], box[3] - box[1]) < MIN_BOX:
                    continue
                candidates.append((float(energy[rows * w + cols].sum()), box))
    chosen: list[tuple[float, float, float, float]] = []
    for _, box in sorted(candidates, key=lambda item: -item[0]):
        if all(_iou(box, other) <= MAX_OVERLAP for other in chosen):
            chosen.append(tuple(round(float(v), 4) for v in box))
        if len(chosen) == n:
            break
    return chosen


def region_hits(engine: Searcher, params: SearchParams, n: int, read_stored: Callable[[Path], bytes] | None,
                search: Callable[[SearchParams], list[dict]]) -> list[dict]:
    """`[{"box": [...], "hits": [...]}]` for up to `n` regions proposed in the query's picture."""
    data, rid = anchor_pixels(engine, params.query, read_stored)
    boxes = propose_boxes(feature_map(engine, data), n)
    return [{"box": list(box), "hits": search(boxed_params(engine, params, box, data, rid))} for box in boxes]
