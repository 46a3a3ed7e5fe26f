"""Benchmark data: synthetic clustered unit vectors, and embeddings of generated images.

Real embeddings: `--real N` draws N images with `lookalike.sample.draw_item` (patterns,
colours, shapes, seeds), embeds them with the default EfficientNet-Lite0 encoder (1280-d),
reduces them to the benchmark dimension with PCA and, to reach 100k-1M rows without
encoding a million images on a laptop CPU, jitters each real embedding with small Gaussian
noise in that space (cached in ~/.cache/lookalike-bench so reruns are quick).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CACHE = Path.home() / ".cache" / "lookalike-bench"


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, n_queries: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around n/500 random centres with uneven spread; queries from the same law."""
    rng = np.random.default_rng(seed)
    n_centers = max(8, n // 500)
    centers = rng.standard_normal((n_centers, dim)).astype(np.float32)
    spread = rng.uniform(0.4, 1.0, n_centers).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), dtype=np.float32)
        for start in range(0, m, 100_000):
            size = min(100_000, m - start)
            which = rng.integers(0, n_centers, size)
            noise = rng.standard_normal((size, dim), dtype=np.float32)
            out[start:start + size] = _unit(centers[which] + spread[which, None] * noise)
        return out

    return draw(n), draw(n_queries)


def image_embeddings(n_images: int) -> np.ndarray:
    """1280-d EfficientNet-Lite0 vectors of `n_images` drawn catalogue images (cached)."""
    path = CACHE / f"images-{n_images}.npy"
    if path.exists():
        return np.load(path)
    from lookalike.models import get_encoder
    from lookalike.models.images import load_pixels
    from lookalike.sample import COLORS, PATTERNS, SHAPES, draw_item
    import io
    encoder = get_encoder("efficientnet-lite0")
    colors = list(COLORS.values())
    rows, batch = [], []
    for i in range(n_images):
        img = draw_item(PATTERNS[i % len(PATTERNS)], colors[(i // 5) % len(colors)], seed=1000 + i,
                        size=160, shape=SHAPES[(i // 30) % len(SHAPES)])
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        batch.append(load_pixels(buf.getvalue(), encoder.input_size, fit=encoder.fit))
        if len(batch) == 32 or i == n_images - 1:
            rows.append(encoder.embed(np.stack(batch)).vectors)
            batch = []
    out = np.concatenate(rows).astype(np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def real(n: int, dim: int, n_queries: int, *, n_images: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` vectors (and queries) derived from real image embeddings, PCA-reduced to `dim`."""
    base = image_embeddings(n_images)
    centered = base - base.mean(axis=0)
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    reduced = centered @ vt[:dim].T
    rng = np.random.default_rng(seed)
    scale = 0.35 * reduced.std(axis=0)  # jitter per component, proportional to its spread

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), dtype=np.float32)
        for start in range(0, m, 100_000):
            size = min(100_000, m - start)
            which = rng.integers(0, len(reduced), size)
            out[start:start + size] = _unit(reduced[which] + scale * rng.standard_normal((size, dim)))
        return out

    return draw(n), draw(n_queries)
