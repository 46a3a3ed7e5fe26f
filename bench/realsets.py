"""Labelled sets of real pictures that ship with installed packages (no downloads, nothing drawn here).

`icons`: the same icon name drawn by several icon themes (Adwaita, Breeze, Oxygen, Papirus,
Tango) is one category: "send mail" drawn by five artists in five styles. One picture per
(name, theme), its largest PNG or its SVG rasterised at 160 px (cairosvg); names drawn by
fewer than 3 themes and `-symbolic` glyphs are left out. Embeddings are cached per encoder
under bench/.cache/ (gitignored): `load_embedded("icons", model)` -> (ids, categories, vectors).

    python bench/realsets.py [--model efficientnet-lite0-style] [--limit N]
"""
from __future__ import annotations

import argparse
import io
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path[0] = str(Path(__file__).resolve().parents[1])

ICON_ROOT = Path("/usr/share/icons")
THEMES = ("Adwaita", "breeze", "oxygen", "Papirus", "Tango")
CACHE = Path(__file__).resolve().parent / ".cache"
_SIZE = re.compile(r"/(\d+)x\d+(@\d+x)?/")


def _rank(path: str) -> tuple[int, int]:
    """Prefer big PNGs (a theme's own rendering), then SVGs from the biggest size folder."""
    m = _SIZE.search(path)
    size = int(m.group(1)) if m else (512 if "scalable" in path else 0)
    return (1 if path.endswith(".png") and size >= 64 else 0, size)


def icon_files(min_themes: int = 3) -> list[tuple[str, str, str]]:
    """(id, category, path) per (icon name, theme) for names that >= `min_themes` themes draw."""
    found: dict[str, dict[str, str]] = {}
    for theme in THEMES:
        for folder, _, files in os.walk(ICON_ROOT / theme):
            for f in files:
                if not f.endswith((".png", ".svg")):
                    continue
                name = f.rsplit(".", 1)[0]
                path = os.path.join(folder, f)
                if name.endswith("-symbolic") or os.path.islink(path):
                    continue
                best = found.setdefault(name, {}).get(theme)
                if best is None or _rank(path) > _rank(best):
                    found[name][theme] = path
    out = []
    for name in sorted(found):
        if len(found[name]) >= min_themes:
            out.extend((f"{theme}/{name}", name, path) for theme, path in sorted(found[name].items()))
    return out


def load_icon(path: str, size: int = 160) -> Image.Image:
    """The icon on white, RGB (SVGs rasterised with cairosvg)."""
    if path.endswith(".svg"):
        import cairosvg
        data = cairosvg.svg2png(url=path, output_width=size, output_height=size)
        im = Image.open(io.BytesIO(data))
    else:
        im = Image.open(path)
    im.load()
    from lookalike.models.images import to_rgb
    return to_rgb(im)


def load_embedded(name: str = "icons", model: str = "efficientnet-lite0-style",
                  limit: int | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, categories, L2-normalised vectors) of a set, embedding once and caching the vectors."""
    if name != "icons":
        raise ValueError(f"unknown set {name!r}")
    items = icon_files()
    if limit:
        cats = sorted({c for _, c, _ in items})[:limit]
        keep = set(cats)
        items = [it for it in items if it[1] in keep]
    cache = CACHE / f"{name}-{model}-{len(items)}.npz"
    ids, cats = [i for i, _, _ in items], [c for _, c, _ in items]
    if cache.exists():
        data = np.load(cache, allow_pickle=False)
        cat_of = dict(zip(ids, cats))
        cached = [str(i) for i in data["ids"]]
        if all(i in cat_of for i in cached):  # unreadable files were left out when it was made
            return cached, [cat_of[i] for i in cached], data["vectors"]
    from lookalike.models import get_encoder
    from lookalike.models.images import fit_square
    encoder = get_encoder(model)
    vectors, good = [], []
    start = time.perf_counter()
    for lo in range(0, len(items), 64):
        pixels, kept = [], []
        for j, (_, _, path) in enumerate(items[lo:lo + 64]):
            try:
                pixels.append(fit_square(load_icon(path), encoder.input_size, mode=encoder.fit))
                kept.append(lo + j)
            except Exception as exc:  # an unreadable file: left out of the set
                print(f"skip {path}: {exc}", file=sys.stderr)
        if pixels:
            vectors.append(encoder.embed(np.stack(pixels)).vectors)
            good.extend(kept)
        print(f"\r{lo + 64}/{len(items)} {time.perf_counter() - start:.0f}s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    matrix = np.concatenate(vectors).astype(np.float32)
    ids, cats = [ids[j] for j in good], [cats[j] for j in good]
    CACHE.mkdir(exist_ok=True)
    np.savez(cache, ids=np.array(ids), vectors=matrix)
    return ids, cats, matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="efficientnet-lite0-style")
    parser.add_argument("--limit", type=int, default=None, help="only the first N categories")
    args = parser.parse_args()
    ids, cats, vectors = load_embedded("icons", args.model, args.limit)
    print(f"{len(ids)} icons in {len(set(cats))} categories, {vectors.shape[1]}-d ({args.model})")


if __name__ == "__main__":
    main()
