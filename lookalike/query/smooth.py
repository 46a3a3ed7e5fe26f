"""Copies of smooth pictures (plain colours, gradients), which local features cannot verify.

A stored record with fewer than SMOOTH_STORED keypoints has no detail its 12 x 12 colour
grid (models/keypoints.py) misses, so the grid stands for the picture: the query (its small
CIELAB image) is resampled onto every window of the grid at least half as wide and half as
high (crops of 50-95 % of a side, anywhere) and shaped as the query, as is and mirrored, and
the window whose cells are nearest in colour wins. It is a copy when, with the SMOOTH_TRIM
share of the cells that differ most set aside (a caption, a logo, a rotation's corners), the
cells are within SMOOTH_DISTANCE of the stored ones; the query must be smooth itself
(SMOOTH_DETAIL). A coloured query found nowhere so is compared once more with its lightness
and chroma fitted to each window (`_relit`: a gradient brightened, darkened or faded), to
within RELIT_DISTANCE. Brightness or contrast edits of a plain colour make another plain
colour: those stay unfound (no test can tell them from a different colour). Measured with
bench/copybench.py (the set's flat and gradient items).

Cost: `match` verifies up to 28 candidates, and a smooth query's are mostly smooth records,
each searched as is and without its frame. The rotation search scores its 88 turns in one
batch (`_turn_cells`), and a stored grid too few of whose cells any query cell's colour can
reach (`_reachable`) costs no window or turn (the per-turn loop was the p99 of `match`:
bench/copybench.py --scale).
"""
from __future__ import annotations

import numpy as np

from ..models.keypoints import Features, _cv2
from .verify import Estimate, QueryLook, Verified, aligned_cells

#: Queries with fewer keypoints than this are featureless (`featureless`).
SMOOTH_KEYPOINTS = 20
#: Stored records with fewer keypoints than this are checked by their colour grid: a smooth
#: picture's few corners sit on its one outline, which copies' RANSAC fits do not reach
#: (bench/copyset.py: scikit-image's colour wheel 22, the ubuntu desert 22 and umang 33
#: keypoints, 23 of 73 misses; a city at dusk 36; the next fewest 57).
SMOOTH_STORED = 40
#: The query must be smooth too: its median lightness detail (`detail`, 8-bit CIELAB at 80 px)
#: at most this (copies of the bench set's flats: 0-0.8, with captions and JPEG blocks; a
#: crop of scikit-image's cell photo 2.7, which the grid alone took for a gradient's half).
SMOOTH_DETAIL = 1.5
#: A window is at least this share of the grid's side (crops keep half of each side).
MIN_WINDOW = 0.5
#: Share of the cells that may disagree (overlays up to a fifth, a 15 degree rotation's corners).
SMOOTH_TRIM = 0.35
#: The kept cells' largest colour distance (8-bit CIELAB; lightness alone for a grey query)
#: a copy stays within (JPEG at quality 10-15 moves a plain colour's cells by up to 8; the
#: bench set's stored flats are 10 or more apart, and the nearest ranks first).
SMOOTH_DISTANCE = 9.0
#: A smooth coloured query (`SMOOTH_DETAIL`) with keypoints is compared so with the detailed
#: records nearest it by embedding (query/match.py `verified`), its cells within
#: NEAREST_DISTANCE: a crop of a dark or hazy wallpaper, or of a photo's smooth half, whose
#: few corners the stored keypoints miss (bench/copyset.py: such copies 0.4-1.6, the non-copies
#: nearest 12.4 and more).
NEAREST_DISTANCE = 6.0


#: Relit comparison (`relit`): a gradient's brightness, contrast or saturation edit scales its
#: lightness (gain within RELIT_GAIN, any offset) and its chroma (gain within RELIT_CHROMA),
#: hues kept. Only for stored windows whose lightness varies by RELIT_MIN_STD (8-bit std): a
#: plain colour's edit is another plain colour, which no test can tell apart. A relit fit is a
#: copy within RELIT_DISTANCE (bench/copyset.py: a gradient's brightness edits came within 4;
#: at 9, as unrelit, another gradient's edits matched a wallpaper and another gradient).
RELIT_GAIN, RELIT_CHROMA, RELIT_MIN_STD = (0.4, 2.5), (0.3, 3.0), 3.0
RELIT_DISTANCE = 4.0


def _relit(windows: np.ndarray, small: np.ndarray) -> np.ndarray:
    """Per-cell CIELAB distances (Y, X, h * w) of grid windows (Y, X, 3, h, w) to the query
    cells `small` (h, w, 3) once the query's lightness gain and offset and chroma gain are
    fitted to each window (least squares, gains clipped to RELIT_GAIN and RELIT_CHROMA);
    infinite where the window's lightness hardly varies (RELIT_MIN_STD)."""
    n = small.shape[0] * small.shape[1]
    q = small.reshape(n, 3)
    s = windows.reshape(*windows.shape[:2], 3, n)
    ql, sl = q[:, 0], s[:, :, 0]
    qc, sc = ql - ql.mean(), sl - sl.mean(axis=-1, keepdims=True)
    var = float((qc * qc).sum())
    gain = (sc * qc).sum(axis=-1) / var if var > 1e-6 else np.ones(sl.shape[:2], np.float32)
    gain = np.clip(gain, *RELIT_GAIN)
    light = gain[..., None] * qc + sl.mean(axis=-1, keepdims=True)
    qab, sab = q[:, 1:].T - 128, s[:, :, 1:] - 128                      # (2, n), (Y, X, 2, n)
    power = float((qab * qab).sum())
    chroma = (sab * qab).sum(axis=(-2, -1)) / power if power > 1e-6 else np.ones(sl.shape[:2], np.float32)
    chroma = np.clip(chroma, *RELIT_CHROMA)
    d = np.sqrt((light - sl) ** 2 + ((chroma[..., None, None] * qab - sab) ** 2).sum(axis=-2))
    d[sl.std(axis=-1) < RELIT_MIN_STD] = np.inf
    return d


#: A covered cell (`aligned_cells`) has more than this share of its area inside the query.
COVERED = 0.95
#: Steps of the relit chroma gain's range (RELIT_CHROMA) in the colour screen (`_reachable`).
CHROMA_STEPS = 24


def _reachable(look: QueryLook, grid: np.ndarray, relit: bool, limit: float) -> np.ndarray:
    """Which cells of the stored `grid` (g, g, 3) could come within `limit` of a query cell (bool (g, g)),
    whatever the window, turn or mirror: a query cell is a mean of the query's pixels (its
    colours' box, per channel) with less than 1 - COVERED of black (a turn's corner) mixed in,
    and a cell farther than `limit` from every such mean is farther from the one it is compared
    with. `relit` (`_relit`): only the chroma is bounded (lightness takes any gain and offset),
    the query's ab box scaled by every chroma gain (RELIT_CHROMA, in CHROMA_STEPS intervals,
    each bounded by its ends' boxes). A search needs at least its kept cells' count to be
    reachable (`_kept`), so a candidate of other colours costs no window or turn, and a window
    with too few reachable cells is not compared (`_best_window`)."""
    lab = look.lab.reshape(-1, 3)
    lo, hi = lab.min(axis=0) * COVERED, lab.max(axis=0)
    s = grid.reshape(-1, 3).astype(np.float32)
    if not relit:
        gap = np.maximum(lo - s, 0) + np.maximum(s - hi, 0)
        d = gap[:, 0] if look.grey else np.sqrt((gap * gap).sum(axis=1))
    else:
        gains = np.geomspace(*RELIT_CHROMA, CHROMA_STEPS + 1)[:, None]
        lo_ab, hi_ab = lo[1:] - 128, hi[1:] - 128
        low = np.minimum(gains[:-1] * lo_ab, gains[1:] * lo_ab)          # (CHROMA_STEPS, 2)
        high = np.maximum(gains[:-1] * hi_ab, gains[1:] * hi_ab)
        sab = s[:, None, 1:] - 128                                       # (g * g, 1, 2)
        gap = np.maximum(low - sab, 0) + np.maximum(sab - high, 0)
        d = np.sqrt((gap * gap).sum(axis=2)).min(axis=1)
    return (d <= limit + 1e-3).reshape(grid.shape[:2])


def _kept(cells: int) -> int:
    """Cells a robust distance (the SMOOTH_TRIM share set aside) of `cells` compared ones rests on."""
    return min(cells - 1, int((1 - SMOOTH_TRIM) * cells)) + 1


def _best_window(lab: np.ndarray, grid: np.ndarray, grey: bool, aspect: float, relit: bool = False,
                 reach: np.ndarray | None = None) -> tuple[float, tuple[int, int, int, int]]:
    """(robust distance, (x0, y0, w, h) in cells) of the grid window nearest the query image,
    among windows whose shape (`aspect`: the stored picture's width over height) is the
    query's to within half a cell (a crop keeps the content's proportions); `relit`: with the
    query's lightness and chroma fitted to each window (`_relit`; a coloured query). `reach`
    (`_reachable` within a limit): window sizes none of whose places holds `_kept` reachable
    cells are passed over, as farther than that limit."""
    cv2 = _cv2()
    g = grid.shape[0]
    best = (np.inf, (0, 0, g, g))
    channels = slice(0, 1) if grey else slice(0, 3)
    smallest = max(1, int(np.ceil(MIN_WINDOW * g)))
    query_aspect = lab.shape[1] / lab.shape[0]
    summed = None if reach is None else np.pad(reach.astype(np.int32).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    for h in range(smallest, g + 1):
        for w in range(smallest, g + 1):
            if abs(np.log(w / h * aspect / query_aspect)) > np.log(1 + 0.5 / w + 0.5 / h):
                continue
            if summed is not None and (summed[h:, w:] - summed[h:, :-w] - summed[:-h, w:]
                                       + summed[:-h, :-w]).max() < _kept(h * w):
                continue
            small = cv2.resize(lab, (w, h), interpolation=cv2.INTER_AREA)[..., channels]
            windows = np.lib.stride_tricks.sliding_window_view(grid[..., channels], (h, w), axis=(0, 1))
            # windows: (g-h+1, g-w+1, channels, h, w)
            if relit:
                d = _relit(windows, small)
            else:
                d = np.sqrt(((windows - np.moveaxis(small, -1, 0)) ** 2).sum(axis=2)).reshape(*windows.shape[:2], -1)
            kth = min(d.shape[-1] - 1, int((1 - SMOOTH_TRIM) * d.shape[-1]))
            robust = np.partition(d, kth, axis=-1)[..., kth]
            y, x = np.unravel_index(int(np.argmin(robust)), robust.shape)
            if robust[y, x] < best[0]:
                best = (float(robust[y, x]), (int(x), int(y), w, h))
    return best


def featureless(points: int, look: QueryLook) -> bool:
    """Is a query (`points`: its keypoints) one that only the colour grid can verify against a
    detailed stored picture? Fewer than SMOOTH_KEYPOINTS keypoints, and coloured: a grey one
    compares lightness alone, which the smooth parts of unrelated photos share (bench/copyset.py:
    grey copies of gradients came out copies of a desert and of grass; coloured ones matched no
    wrong picture, and a crop of a dark wallpaper with no keypoint at all found it)."""
    return points < SMOOTH_KEYPOINTS and not look.grey


def detail(lab: np.ndarray) -> float:
    """Median absolute lightness detail of a small CIELAB image (lightness less its blur)."""
    light = lab[..., 0].astype(np.float32)
    return float(np.median(np.abs(light - _cv2().GaussianBlur(light, (0, 0), 2.0))))


#: A crop rarely ends on the grid's cell lines, and a picture whose colours change fast (a
#: colour wheel) then misses every whole-cell window: the best one (`_best_window`), when within
#: REFINE_REACH times the limit, is refined (`_refined`) by REFINE_STEP of a cell in place and
#: width, up to half a cell either way, the query's mean over each stored cell compared
#: (`_window_cells`). bench/copyset.py: scikit-image's colour wheel cropped to 61 x 80 %, 17.1 on
#: whole cells, 6.9 refined.
REFINE_STEP, REFINE_REACH = 0.25, 2.5

Window = tuple[float, float, float, float]   # x0, y0, w, h in grid cells


def _cell_distances(q: np.ndarray, s: np.ndarray, grey: bool, relit: bool) -> np.ndarray:
    """Per-cell distances of aligned query cells `q` (n, 3) to stored cells `s` (n, 3): lightness
    alone for a grey query, relit (`_relit_cells`) or as they are."""
    if relit:
        return _relit_cells(q, s)
    if grey:
        return np.abs(q[:, 0] - s[:, 0])
    return np.sqrt(((q - s) ** 2).sum(axis=1))


def _sampled_cells(look: QueryLook, g: int, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The query's mean CIELAB over each cell of N stored frames (float32 (N, g, g, 3)) and which
    cells it covers whole (bool (N, g, g)), from the look pixels `x`, `y` (float32 (N * 4g, 4g))
    each frame pixel reads (4 x 4 pixels a cell, sampled as warpAffine samples, zero outside the
    query): one OpenCV remap, then INTER_AREA at a quarter, each 4 x 4 block's mean with no block
    straddling two frames."""
    cv2 = _cv2()
    lh, lw = look.lab.shape[:2]
    n = len(x) // (g * 4)
    src = np.dstack([look.lab, np.ones((lh, lw), np.float32)])
    warped = cv2.remap(src, x, y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
    cells = cv2.resize(warped, (g, g * n), interpolation=cv2.INTER_AREA).reshape(n, g, g, 4)
    return np.ascontiguousarray(cells[..., :3]), cells[..., 3] > 0.95


def _window_cells(look: QueryLook, stored: Features, windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`aligned_cells` of many windows at once (`windows`: rows of x0, y0, w, h in grid cells,
    the query scaled onto each): the query's mean CIELAB over each stored cell (float32
    (N, g, g, 3)) and which cells it covers whole (bool (N, g, g)), by one OpenCV remap as
    `_turn_cells` (`_sampled_cells`; a loop of warps cost 7-17 ms a refinement)."""
    g = stored.colours.shape[0]
    out = g * 4
    qw, qh = look.lab.shape[1] / look.factor, look.lab.shape[0] / look.factor
    sw, sh = stored.size
    pixel = np.arange(out, dtype=np.float32) / out
    left, top, width, height = (windows[:, k:k + 1].astype(np.float32) for k in range(4))
    sx, sy = width / g * sw / qw, height / g * sh / qh                  # stored pixels per query pixel
    x = (pixel * sw - left / g * sw) / sx * look.factor                 # (N, out): look pixels of each column
    y = (pixel * sh - top / g * sh) / sy * look.factor                  # (N, out): ... of each row
    n = len(windows)
    map_x = np.ascontiguousarray(np.broadcast_to(x[:, None, :], (n, out, out)).reshape(-1, out))
    map_y = np.ascontiguousarray(np.broadcast_to(y[:, :, None], (n, out, out)).reshape(-1, out))
    return _sampled_cells(look, g, map_x, map_y)


def _refined(look: QueryLook, stored: Features, window: Window, relit: bool) -> tuple[float, Window]:
    """(robust distance, window) of the best of `window`'s shifts and resizes by REFINE_STEP of a
    cell (up to half a cell either way, the query's proportions kept, inside the grid), each
    compared cell by cell (`_window_cells`: the query's mean over every stored cell it covers whole)."""
    grid = stored.colours.astype(np.float32)
    g = grid.shape[0]
    qw, qh = look.lab.shape[1] / look.factor, look.lab.shape[0] / look.factor
    sw, sh = stored.size
    x0, y0, w, _ = window
    steps = np.arange(-0.5, 0.5 + 1e-6, REFINE_STEP)
    width, left, top = (a.ravel() for a in np.meshgrid(w + steps, x0 + steps, y0 + steps, indexing="ij"))
    height = width * qh * sw / (qw * sh)
    ok = ((np.minimum(width, height) >= MIN_WINDOW * g - 1e-6) & (np.maximum(width, height) <= g + 1e-6)
          & (left >= 0) & (top >= 0) & (left + width <= g + 1e-6) & (top + height <= g + 1e-6))
    windows = np.stack([left, top, width, height], axis=1)[ok]
    if not len(windows):
        return np.inf, window
    cells, covered = _window_cells(look, stored, windows)
    best: tuple[float, Window] = (np.inf, window)
    for k in range(len(windows)):
        n = int(covered[k].sum())
        if n < 4:
            continue
        d = _cell_distances(cells[k][covered[k]], grid[covered[k]], look.grey, relit)
        robust = float(np.partition(d, _kept(n) - 1)[_kept(n) - 1])
        if robust < best[0]:
            best = (robust, tuple(float(v) for v in windows[k]))
    return best


def _window_match(look: QueryLook, grid: np.ndarray, aspect: float, relit: bool, limit: float,
                  stored: Features | None = None) -> tuple[float, bool, Window] | None:
    """(distance, mirrored, window) of the nearer of the query's and its mirror's best windows
    (`_best_window`; `stored` given: `_refined` when near the limit) within `limit`, or None (at
    once where too few cells are `_reachable` for the smallest window)."""
    smallest = int(np.ceil(MIN_WINDOW * grid.shape[0]))
    reach = _reachable(look, grid, relit, limit)
    if reach.sum() < _kept(smallest * smallest):
        return None
    found = None
    for mirrored, side in ((False, look), (True, look.mirrored())):
        distance, cells = _best_window(side.lab, grid, look.grey, aspect, relit=relit, reach=reach)
        if stored is not None and limit < distance <= REFINE_REACH * limit:
            distance, cells = _refined(side, stored, cells, relit)
        if distance <= limit and (found is None or distance < found[0]):
            found = (distance, mirrored, cells)
    return found


#: Rotated copies (`_rotated`): the query turned back about its centre onto the whole stored
#: picture, scaled as a rotation inside the same canvas or with the canvas grown to hold it
#: (black or white corners), by up to 30 degrees (two 15 degree edits): every ROTATION_STEP,
#: then half a step either side of the best (a quarter step turns a 12-cell grid's edge by a
#: tenth of a cell). At least ROTATED_CELLS of the grid's cells must be covered.
ROTATION_STEP = 3.0
ROTATIONS = np.arange(-30.0, 30.0 + 1e-6, ROTATION_STEP)
ROTATED_CELLS = 0.5
#: Rotation fills a query's corners (and resamples its edges), so its `detail` runs higher:
#: the rotated fit takes queries up to ROTATED_DETAIL (bench/copyset.py: rotated copies of
#: the smooth pictures 1.7-2.7).
ROTATED_DETAIL = 3.0


def _relit_cells(q: np.ndarray, s: np.ndarray) -> np.ndarray:
    """`_relit` of aligned cells: per-cell distances of the query cells q (n, 3) to the stored
    cells s (n, 3) once the query's lightness and chroma gains are fitted."""
    ql, sl = q[:, 0], s[:, 0]
    if sl.std() < RELIT_MIN_STD:
        return np.full(len(q), np.inf, np.float32)
    qc = ql - ql.mean()
    var = float(qc @ qc)
    gain = float(np.clip((sl - sl.mean()) @ qc / var, *RELIT_GAIN)) if var > 1e-6 else 1.0
    qab, sab = q[:, 1:] - 128, s[:, 1:] - 128
    power = float((qab * qab).sum())
    chroma = float(np.clip((sab * qab).sum() / power, *RELIT_CHROMA)) if power > 1e-6 else 1.0
    return np.sqrt((gain * qc + sl.mean() - sl) ** 2 + ((chroma * qab - sab) ** 2).sum(axis=1))


def _turned(look: QueryLook, stored: Features, angle: float, scale: float, mirrored: bool) -> Estimate:
    """The fit of the query (`mirrored`) turned by `angle` degrees and scaled by `scale`
    (stored pixels per query pixel) about its centre onto the stored picture's centre."""
    qw, qh = look.lab.shape[1] / look.factor, look.lab.shape[0] / look.factor
    sw, sh = stored.size
    c, s = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    rot = np.array([[c, -s], [s, c]]) * scale
    shift = np.array([sw / 2, sh / 2]) - rot @ np.array([qw / 2, qh / 2])
    return Estimate(0, 0, np.hstack([rot, shift[:, None]]), mirrored, round(float(angle), 2),
                    round(float(1 / scale), 4), [0.0, 0.0, 1.0, 1.0], 1.0, 1.0)


def _turn_cells(look: QueryLook, stored: Features, turns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`aligned_cells` of many turns at once (`_turned`'s fits; `turns`: rows of angle, scale,
    mirrored): the query's mean CIELAB over each cell of the stored grid (float32 (T, g, g, 3))
    and which cells it covers whole (bool (T, g, g)). One OpenCV remap of every turn's stored
    frame (4 x 4 pixels a cell, sampled as warpAffine samples it, zero outside the query; a
    mirrored turn samples the query flipped), averaged over each cell: a Python loop of warps
    cost 0.14 ms a turn, most of a smooth candidate's rotation search (`_sampled_cells`)."""
    g = stored.colours.shape[0]
    out = g * 4
    lh, lw = look.lab.shape[:2]
    qw, qh = lw / look.factor, lh / look.factor
    sw, sh = stored.size
    pixel = np.arange(out, dtype=np.float32) / out
    dx, dy = pixel * sw - sw / 2, pixel * sh - sh / 2               # stored pixels about its centre
    rad = np.radians(turns[:, 0])
    cos = (look.factor / turns[:, 1] * np.cos(rad)).astype(np.float32)
    sin = (look.factor / turns[:, 1] * np.sin(rad)).astype(np.float32)
    flip = np.where(turns[:, 2] > 0, -1, 1).astype(np.float32)    # a mirrored turn reads x from the right
    x0 = np.where(flip > 0, qw / 2 * look.factor, lw - 1 - qw / 2 * look.factor).astype(np.float32)
    # the turn undone: query look pixels of each (turn, row, column) of the stored frame
    x = (flip * cos)[:, None, None] * dx + ((flip * sin)[:, None] * dy + x0[:, None])[:, :, None]
    y = (cos[:, None] * dy + np.float32(qh / 2 * look.factor))[:, :, None] - sin[:, None, None] * dx
    return _sampled_cells(look, g, np.ascontiguousarray(x.reshape(-1, out)), np.ascontiguousarray(y.reshape(-1, out)))


def _turn_scores(look: QueryLook, stored: Features, turns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(covers ROTATED_CELLS, robust distance, robust relit distance) of each turn (`_turn_cells`):
    the SMOOTH_TRIM-trimmed cell distance over the covered cells, as is (lightness alone for a
    grey query) and (a coloured query; infinite for a grey one) with lightness and chroma
    gains fitted (`_relit_cells`, every turn at once)."""
    cells, inside = _turn_cells(look, stored, turns)
    grid = stored.colours.astype(np.float32)
    g = grid.shape[0]
    q, t, w = cells.reshape(len(turns), g * g, 3), grid.reshape(1, g * g, 3), inside.reshape(len(turns), g * g)
    n = w.sum(axis=1)
    enough = n >= ROTATED_CELLS * g * g
    kth = np.clip(np.minimum(n - 1, ((1 - SMOOTH_TRIM) * n).astype(int)), 0, g * g - 1)
    rows = np.arange(len(turns))

    def robust(d: np.ndarray) -> np.ndarray:
        return np.sort(np.where(w, d, np.inf), axis=1)[rows, kth]

    plain = robust(np.abs(q[..., 0] - t[..., 0]) if look.grey else np.linalg.norm(q - t, axis=2))
    if look.grey:
        return enough, plain, np.full(len(turns), np.inf)
    count = np.maximum(n, 1)[:, None]
    ql, sl = q[..., 0], t[..., 0]
    s_mean = (w * sl).sum(axis=1, keepdims=True) / count
    s_std = np.sqrt((w * (sl - s_mean) ** 2).sum(axis=1) / count[:, 0])
    qc = ql - (w * ql).sum(axis=1, keepdims=True) / count
    var = (w * qc * qc).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        gain = np.where(var > 1e-6, np.clip((w * (sl - s_mean) * qc).sum(axis=1) / var, *RELIT_GAIN), 1.0)
        qab, sab = q[..., 1:] - 128, t[..., 1:] - 128
        power = (w[..., None] * qab * qab).sum(axis=(1, 2))
        chroma = np.where(power > 1e-6, np.clip((w[..., None] * sab * qab).sum(axis=(1, 2)) / power,
                                               *RELIT_CHROMA), 1.0)
    d = np.sqrt((gain[:, None] * qc + s_mean - sl) ** 2
                + ((chroma[:, None, None] * qab - sab) ** 2).sum(axis=2))
    relit = robust(d)
    relit[s_std < RELIT_MIN_STD] = np.inf
    return enough, plain, relit


def _rotated(look: QueryLook, stored: Features) -> list[tuple[float, Estimate] | None]:
    """[as is, relit]: the (robust distance, fit) of the query turned back onto the whole stored
    picture by the best rotation (as is and mirrored; scaled as the same canvas or a grown one),
    or None where no turn covers ROTATED_CELLS of the grid; relit (`_relit_cells`) only for a
    coloured query. The first of equal distances wins, turns taken by angle, then mirrored,
    then scale; each best is refined half a step either side."""
    qw, qh = look.lab.shape[1] / look.factor, look.lab.shape[0] / look.factor
    sw, sh = stored.size
    kinds = 1 if look.grey else 2
    best: list[tuple[float, Estimate] | None] = [None, None]

    def score(turns: list[tuple[float, float, bool]]) -> None:
        enough, *robust = _turn_scores(look, stored, np.array(turns, dtype=np.float64))
        covered = np.flatnonzero(enough)
        for kind in range(kinds if len(covered) else 0):
            i = int(covered[np.argmin(robust[kind][covered])])
            if best[kind] is None or robust[kind][i] < best[kind][0]:
                best[kind] = (float(robust[kind][i]), _turned(look, stored, *turns[i]))

    coarse = []
    for angle in ROTATIONS:
        c, s = abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle)))
        same = (sw / qw + sh / qh) / 2                                  # stored px per query px
        grown = (sw * c + sh * s) / qw / 2 + (sw * s + sh * c) / qh / 2
        coarse += [(float(angle), scale, mirrored) for mirrored in (False, True) for scale in (same, grown)]
    score(coarse)
    fine = [(e.angle + delta, 1 / e.scale, e.mirrored) for e in [b[1] for b in best if b is not None]
            for delta in (-ROTATION_STEP / 2, ROTATION_STEP / 2)]
    if fine:
        score(fine)
    return best


#: A window whose colours vary (its covered cells' spread at least FOLLOW_SPREAD, 8-bit CIELAB;
#: lightness alone for a grey query) is a copy's only where the query varies with it: over the
#: cells the distance keeps, their deviations along the window's main colour axis correlate by
#: FOLLOW_CORRELATION. A crop keeps its gradient; a plain colour otherwise passed for half of a
#: faint gradient (bench/copyset.py: a held-out flat against a stored gradient's tint, seed 3,
#: five of its six edits; no copy of the four draws' smooth originals lost).
FOLLOW_SPREAD, FOLLOW_CORRELATION = 4.0, 0.5


def _follows(look: QueryLook, stored: Features, e: Estimate) -> bool:
    """Does the query vary with the stored window it was placed on (`FOLLOW_SPREAD`)?"""
    side = look.mirrored() if e.mirrored else look
    cells, covered = aligned_cells(e, side, stored)
    channels = slice(0, 1) if look.grey else slice(0, 3)
    q, s = cells[covered][:, channels], stored.colours.astype(np.float32)[covered][:, channels]
    if len(q) < 4:
        return True
    deviation = s - s.mean(axis=0)
    if np.sqrt((deviation ** 2).sum(axis=1).mean()) < FOLLOW_SPREAD:
        return True
    axis = np.linalg.svd(deviation, full_matrices=False)[2][0]
    kept = np.argsort(np.sqrt(((q - s) ** 2).sum(axis=1)))[:_kept(len(q))]
    a, b = (s[kept] - s[kept].mean(axis=0)) @ axis, (q[kept] - q[kept].mean(axis=0)) @ axis
    norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return norm > 1e-6 and float((a * b).sum()) / norm >= FOLLOW_CORRELATION


def smooth_match(look: QueryLook, stored: Features, detailed: bool = False,
                 limit: float = SMOOTH_DISTANCE) -> Verified | None:
    """The query verified as a copy of a smooth stored picture by its colour grid (its cells
    within `limit`), or None; `detailed`: of any stored picture (a featureless query,
    `featureless`, may be a crop of a smooth region of a detailed one: a sky, a dark
    wallpaper's empty half)."""
    if len(stored.points) >= SMOOTH_STORED and not detailed:
        return None
    if detail(look.lab) > SMOOTH_DETAIL:
        return None if detailed else rotated_match(look, stored)
    grid = stored.colours.astype(np.float32)
    g = grid.shape[0]
    aspect = stored.size[0] / stored.size[1]
    found = _window_match(look, grid, aspect, False, limit, stored)
    if found is None and not (detailed or look.grey):  # a gradient relit (brightness, contrast, saturation)
        found = _window_match(look, grid, aspect, True, RELIT_DISTANCE, stored)
    if found is None:
        return None if detailed else rotated_match(look, stored)
    distance, mirrored, (x0, y0, w, h) = found
    qw, qh = look.lab.shape[1] / look.factor, look.lab.shape[0] / look.factor
    sw, sh = stored.size
    sx, sy = w / g * sw / qw, h / g * sh / qh
    matrix = np.array([[sx, 0, x0 / g * sw], [0, sy, y0 / g * sh]], dtype=np.float64)
    box = [round(x0 / g, 4), round(y0 / g, 4), round((x0 + w) / g, 4), round((y0 + h) / g, 4)]
    cover = w * h / (g * g)
    e = Estimate(0, 0, matrix, mirrored, 0.0, round(float(np.sqrt(1 / (sx * sy))), 4), box, cover, 1.0)
    if not _follows(look, stored, e):
        return None if detailed else rotated_match(look, stored)
    return Verified(e, 1.0, round(1.0 - 0.5 * distance / SMOOTH_DISTANCE, 6), distance)


def rotated_match(look: QueryLook, stored: Features) -> Verified | None:
    """The query verified as a rotated copy (`_rotated`) of a smooth stored picture, or None:
    within SMOOTH_DISTANCE as is, or (a coloured query) RELIT_DISTANCE relit."""
    if detail(look.lab) > ROTATED_DETAIL:
        return None
    g = stored.colours.shape[0]
    need = _kept(int(np.ceil(ROTATED_CELLS * g * g)))
    if _reachable(look, stored.colours, False, SMOOTH_DISTANCE).sum() < need and (
            look.grey or _reachable(look, stored.colours, True, RELIT_DISTANCE).sum() < need):
        return None
    plain, relit = _rotated(look, stored)
    found = plain if plain is not None and plain[0] <= SMOOTH_DISTANCE else \
        relit if relit is not None and relit[0] <= RELIT_DISTANCE else None
    if found is None or not _follows(look, stored, found[1]):
        return None
    distance, e = found
    return Verified(e, 1.0, round(1.0 - 0.5 * distance / SMOOTH_DISTANCE, 6), distance)
