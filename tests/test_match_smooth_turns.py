"""The rotation search of smooth pictures (query/smooth.py `_rotated`) scores every turn in one
batch (`_turn_cells`, `_turn_scores`) and is screened by the query's colours (`_reachable`):
the batch gives the per-turn warps' cells (verify.py `aligned_cells`) and the same best turn as
scoring them one by one, the screen never drops a cell a turn brings within the limit, and a
candidate of other colours is rejected without a turn. Pictures: scikit-image's colour wheel,
ubuntu's umang background (where installed) and a two-way gradient."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike.models.images import open_image
from lookalike.models.keypoints import features, reduced
from lookalike.query import smooth
from lookalike.query.match import image_query
from lookalike.query.smooth import (RELIT_DISTANCE, ROTATED_CELLS, ROTATION_STEP, ROTATIONS, SMOOTH_DISTANCE,
                                    SMOOTH_TRIM, _kept, _reachable, _relit_cells, _rotated, _turn_cells, _turned,
                                    rotated_match)
from lookalike.query.verify import aligned_cells
from lookalike.testing.copies import encode, rotate_expand, rotate_same, tint
from lookalike.testing.photos import skimage_photo

pytest.importorskip("skimage.data")
UMANG = Path("/usr/share/backgrounds/umang_by_Abhishek_Mudgal.jpg")


def gradient(w: int = 360, h: int = 240, hue: tuple[float, float, float] = (1.0, 0.2, 0.9)) -> Image.Image:
    """Red to the right, blue downwards (`hue` weighs the channels): no corner for a keypoint."""
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    rgb = np.stack([40 + 200 * x * hue[0], 60 + 120 * (x + y) / 2 * hue[1], 40 + 200 * y * hue[2]], axis=-1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def pictures() -> dict[str, Image.Image]:
    out = {"wheel": skimage_photo("colorwheel", 400), "gradient": gradient()}
    if UMANG.exists():
        im = Image.open(UMANG).convert("RGB")
        im.thumbnail((640, 640))
        out["umang"] = im
    return out


def look_of(im: Image.Image):
    data = encode(im, quality=92)
    return image_query(open_image(data), data).look


def stored_of(im: Image.Image):
    return features(reduced(im))


def reference_rotated(look, stored):
    """The search scored turn by turn with `aligned_cells` (what the batch stands for)."""
    grid = stored.colours.astype(np.float32)
    g = grid.shape[0]
    qw, qh = look.lab.shape[1] / look.factor, look.lab.shape[0] / look.factor
    sw, sh = stored.size
    looks = {False: look, True: look.mirrored()}
    best = [None, None]

    def score(angle, scale, mirrored):
        e = _turned(look, stored, angle, scale, mirrored)
        cells, inside = aligned_cells(e, looks[mirrored], stored)
        n = int(inside.sum())
        if n < ROTATED_CELLS * g * g:
            return
        q, t = cells[inside], grid[inside]
        kth = min(n - 1, int((1 - SMOOTH_TRIM) * n))
        for kind in range(1 if look.grey else 2):
            d = (np.abs(q[:, 0] - t[:, 0]) if look.grey else np.linalg.norm(q - t, axis=1)) if kind == 0 \
                else _relit_cells(q, t)
            robust = float(np.partition(d, kth)[kth])
            if best[kind] is None or robust < best[kind][0]:
                best[kind] = (robust, e)

    for angle in ROTATIONS:
        c, s = abs(np.cos(np.radians(angle))), abs(np.sin(np.radians(angle)))
        same = (sw / qw + sh / qh) / 2
        grown = (sw * c + sh * s) / qw / 2 + (sw * s + sh * c) / qh / 2
        for mirrored in (False, True):
            for scale in (same, grown):
                score(float(angle), scale, mirrored)
    for found in [b for b in best if b is not None]:
        for delta in (-ROTATION_STEP / 2, ROTATION_STEP / 2):
            score(found[1].angle + delta, 1 / found[1].scale, found[1].mirrored)
    return best


def pairs():
    """(query look, stored features, name) of rotated copies and of other pictures and tints."""
    pics = pictures()
    out = []
    for sname, sim in pics.items():
        stored = stored_of(sim)
        for qname, qim in pics.items():
            for edit in (rotate_expand, rotate_same):
                out.append((look_of(edit(qim, 1)), stored, f"{edit.__name__}({qname}) on {sname}"))
        out.append((look_of(rotate_expand(tint(sim, 120), 0)), stored, f"tinted {sname}"))
        out.append((look_of(rotate_expand(sim.convert("L").convert("RGB"), 2)), stored, f"grey {sname}"))
    return out


@pytest.fixture(scope="module")
def cases():
    return pairs()


def test_the_batched_cells_are_the_per_turn_warps(cases):
    look, stored, _ = cases[0]
    turns = [(a, s, m) for a in (-27.0, -9.0, 0.0, 4.5, 15.0) for s in (0.8, 1.0, 1.3) for m in (False, True)]
    cells, inside = _turn_cells(look, stored, np.array(turns, dtype=np.float64))
    for i, (angle, scale, mirrored) in enumerate(turns):
        ref, ref_inside = aligned_cells(_turned(look, stored, angle, scale, mirrored),
                                        look.mirrored() if mirrored else look, stored)
        assert (inside[i] != ref_inside).sum() <= 1, (angle, scale, mirrored)
        both = inside[i] & ref_inside
        assert both.sum() > 30 and np.abs(cells[i][both] - ref[both]).max() < 0.5, (angle, scale, mirrored)


def test_the_batch_finds_the_turn_by_turn_best(cases):
    for look, stored, name in cases:
        got, want = _rotated(look, stored), reference_rotated(look, stored)
        for g, w in zip(got, want):
            assert (g is None) == (w is None), name
            if w is not None:
                assert g[0] == pytest.approx(w[0], abs=0.02) or g[0] == w[0], name
                assert (g[1].angle, g[1].mirrored) == (w[1].angle, w[1].mirrored), name


def test_the_colour_screen_keeps_every_cell_a_turn_brings_within_the_limit(cases):
    narrowed = 0
    for look, stored, name in cases:
        grid = stored.colours.astype(np.float32)
        plain, relit = _reachable(look, grid, False, SMOOTH_DISTANCE), _reachable(look, grid, True, RELIT_DISTANCE)
        narrowed += plain.sum() < plain.size
        for angle in ROTATIONS[::2]:
            for scale in (0.9, 1.0, 1.2):
                for mirrored in (False, True):
                    cells, inside = aligned_cells(_turned(look, stored, float(angle), scale, mirrored),
                                                  look.mirrored() if mirrored else look, stored)
                    q, t = cells[inside], grid[inside]
                    d = np.abs(q[:, 0] - t[:, 0]) if look.grey else np.linalg.norm(q - t, axis=1)
                    assert plain[inside][d <= SMOOTH_DISTANCE].all(), (name, angle, scale, mirrored)
                    if not look.grey and len(q) > 1:
                        near = _relit_cells(q, t) <= RELIT_DISTANCE
                        assert relit[inside][near].all(), (name, angle, scale, mirrored)
    assert narrowed >= 5  # the screen is not vacuous: other pictures' cells are set aside


def test_a_rotated_copy_of_a_gradient_is_found_at_its_angle():
    im = gradient()
    for seed in range(3):
        copy = rotate_expand(im, seed)
        v = rotated_match(look_of(copy), stored_of(im))
        assert v is not None and v.distance <= SMOOTH_DISTANCE, seed
        rng_angle = abs(v.estimate.angle)
        assert 2 <= rng_angle <= 16 and not v.estimate.mirrored, v.estimate


def blend(first: tuple[int, int, int], second: tuple[int, int, int], w: int = 360, h: int = 240) -> Image.Image:
    """`first` in the top left corner to `second` in the bottom right."""
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    t = ((2 * x + y) / 3)[..., None]
    return Image.fromarray((np.array(first) * (1 - t) + np.array(second) * t).astype(np.uint8))


@pytest.mark.parametrize("edit", [rotate_expand, rotate_same])
def test_a_gradient_of_other_colours_costs_no_turn(monkeypatch, edit):
    """A warm query (turned, black or white corners) against a blue gradient: no stored cell
    within reach of its colours, as is or relit."""
    stored = stored_of(blend((10, 60, 160), (40, 120, 250)))
    query = look_of(edit(blend((200, 100, 10), (255, 170, 40)), 0))

    def no_turn(*_):
        raise AssertionError("the rotation search ran")
    monkeypatch.setattr(smooth, "_rotated", no_turn)
    assert rotated_match(query, stored) is None
    assert _reachable(query, stored.colours, True, RELIT_DISTANCE).sum() < _kept(72)
