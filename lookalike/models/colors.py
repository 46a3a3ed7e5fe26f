"""Dominant colours of an image: k-means in CIELAB, where distances match what people see.

A tiny NumPy k-means on a 48x48 thumbnail (2,304 pixels, k=5) takes well under a
millisecond; scikit-learn's KMeans costs more in set-up than the clustering itself here,
which is why this one is our own.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

_THUMB = 48


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..255 (any leading shape, last axis 3) -> CIELAB (D65)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124564, 0.3575761, 0.1804375],
                  [0.2126729, 0.7151522, 0.0721750],
                  [0.0193339, 0.1191920, 0.9503041]])
    xyz = c @ m.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 216 / 24389, np.cbrt(xyz), (24389 / 27 * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def hex_to_rgb(value: str) -> tuple[int, int, int]:
    """'#c0392b' or 'c0392b' or '#c32' -> (192, 57, 43); ValueError on anything else."""
    s = value.strip().lstrip("#")
    if len(s) == 3:
        s = "".join(ch * 2 for ch in s)
    if len(s) != 6 or any(ch not in "0123456789abcdefABCDEF" for ch in s):
        raise ValueError(f"not a colour: {value!r} (expected #rrggbb)")
    return int(s[0:2], 16), int(s[2:4], 16), int(s[4:6], 16)


def dominant_colors(im: Image.Image, k: int = 5, iterations: int = 12) -> list[dict]:
    """The image's k main colours as `[{"color": "#rrggbb", "weight": 0.42}, ...]`, heaviest first."""
    thumb = im.convert("RGB").resize((_THUMB, _THUMB), Image.Resampling.BILINEAR)
    rgb = np.asarray(thumb, dtype=np.float64).reshape(-1, 3)
    lab = srgb_to_lab(rgb)
    # Deterministic k-means++-like seeding: start from the pixel farthest from the mean, etc.
    centers = [lab[np.argmax(((lab - lab.mean(0)) ** 2).sum(1))]]
    for _ in range(1, k):
        d = np.min([((lab - c) ** 2).sum(1) for c in centers], axis=0)
        if d.max() < 1e-6:
            break
        centers.append(lab[np.argmax(d)])
    centers = np.array(centers)
    for _ in range(iterations):
        assign = np.argmin(((lab[:, None, :] - centers[None]) ** 2).sum(2), axis=1)
        new = np.array([lab[assign == j].mean(0) if np.any(assign == j) else centers[j] for j in range(len(centers))])
        if np.allclose(new, centers):
            break
        centers = new
    assign = np.argmin(((lab[:, None, :] - centers[None]) ** 2).sum(2), axis=1)
    out = []
    for j in range(len(centers)):
        members = assign == j
        if not members.any():
            continue
        r, g, b = np.clip(np.round(rgb[members].mean(0)), 0, 255).astype(int)
        out.append({"color": f"#{r:02x}{g:02x}{b:02x}", "weight": round(float(members.mean()), 4)})
    return sorted(out, key=lambda c: -c["weight"])
