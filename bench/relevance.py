"""Which embedding finds the right things? P@5, mAP@10 and nDCG@10 per encoder variant.

The labelled set is built from images that ship with installed packages, no downloads:
- `patterns`: drawn products (`lookalike.sample.draw_item`), 5 patterns x 6 colours x 3 shapes;
  category = pattern (colour and shape vary inside a category: "same look, other colour");
- `photos`: scikit-image's sample photos, each in 6 random variants (crop, flip, rotation,
  colour/contrast jitter, blur, JPEG); category = source photo (near-copy retrieval);
- `textures`: `lookalike.testing.photos.photo_like` scenes, 8 seeds x 5 variants; category = seed.
Every image queries the others (`{"id": ...}`); relevant = the rest of its category.

`--tune`: untuned against tuned (`col.tune`, issue 17) per variant on real pictures, the icon
set of bench/realsets.py (one icon name drawn by 3-5 themes = one category; embeddings cached).
The tune holds out a quarter of the categories; both rows are `lookalike eval --holdout`
scores (search by id over the whole collection, relevant = same icon name, only categories the
tune never saw).
Vectors go into `model: "none"` collections and are scored by `lookalike.query.evaluate`, so the
numbers are exactly what `lookalike eval` reports. `+pcaw` rows add PCA-whitening fitted
on the indexed vectors themselves (unsupervised, as a collection-level option would do).

    python bench/relevance.py [--variants efficientnet-lite0,efficientnet-lite0-gem] [--quick] [--tune]
"""
from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# The repository root instead of bench/ (whose http.py would shadow the standard library's).
sys.path[0] = str(Path(__file__).resolve().parents[1])

import lookalike  # noqa: E402
from lookalike.query.evaluate import evaluate  # noqa: E402
from lookalike.models import get_encoder  # noqa: E402
from lookalike.models.images import fit_square, to_rgb  # noqa: E402
from lookalike.sample import COLORS, PATTERNS, SHAPES, draw_item  # noqa: E402
from lookalike.testing.photos import photo_like  # noqa: E402

VARIANTS = ("efficientnet-lite0", "efficientnet-lite0-gem", "efficientnet-lite0-style", "efficientnet-lite0-gem-style",
            "efficientnet-lite2", "efficientnet-lite2-gem", "efficientnet-lite2-gem-style")
PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "horse",
          "hubble_deep_field", "immunohistochemistry", "retina", "rocket", "stereo_motorcycle", "page", "moon",
          "clock", "colorwheel")


def augment(image: Image.Image, rng: random.Random) -> Image.Image:
    """A random photographic variant: crop, flip, small rotation, colour jitter, blur, JPEG."""
    w, h = image.size
    scale = rng.uniform(0.6, 0.95)
    cw, ch = int(w * scale), int(h * scale)
    left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = image.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    out = out.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BILINEAR, expand=False, fillcolor=(255, 255, 255))
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.75, 1.25))
    out = ImageEnhance.Color(out).enhance(rng.uniform(0.7, 1.3))
    if rng.random() < 0.4:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    buf = io.BytesIO()
    out.save(buf, "JPEG", quality=rng.randint(60, 92))
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def labelled_set(quick: bool = False) -> list[tuple[str, str, Image.Image]]:
    """(id, category, image) triples of the three groups described in the module docstring."""
    items: list[tuple[str, str, Image.Image]] = []
    seed = 0
    for pattern in PATTERNS:
        for color in list(COLORS)[: 3 if quick else 6]:
            for shape in SHAPES:
                seed += 1
                items.append((f"{pattern}-{color}-{shape}", f"pattern:{pattern}",
                              draw_item(pattern, COLORS[color], seed=seed, size=256, shape=shape)))
    rng = random.Random(11)
    try:
        from skimage import data as skdata
        for name in PHOTOS[: 6 if quick else len(PHOTOS)]:
            pixels = getattr(skdata, name)()
            base = to_rgb(Image.fromarray(pixels[0] if isinstance(pixels, tuple) else pixels))
            for v in range(4 if quick else 6):
                items.append((f"{name}-{v}", f"photo:{name}", augment(base, rng)))
    except ImportError:
        print("scikit-image is not installed: the 'photos' group is left out", file=sys.stderr)
    for s in range(4 if quick else 8):
        base = photo_like(1000 + s, size=320)
        for v in range(5):
            items.append((f"texture{s}-{v}", f"texture:{s}", augment(base, rng)))
    return items


def embed_all(model: str, images: list[Image.Image], batch: int = 32) -> tuple[np.ndarray, float]:
    encoder = get_encoder(model)
    pixels = [fit_square(im, encoder.input_size, mode=encoder.fit) for im in images]
    start = time.perf_counter()
    out = [encoder.embed(np.stack(pixels[i:i + batch])).vectors for i in range(0, len(pixels), batch)]
    return np.concatenate(out), (time.perf_counter() - start) / len(images) * 1000


def pca_whiten(x: np.ndarray, dims: int = 128, shrink: float = 0.1) -> np.ndarray:
    """Project on the top principal axes and equalise their variances (shrunk towards 1)."""
    mean = x.mean(axis=0)
    u, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    dims = min(dims, len(s) - 1)
    var = s[:dims] ** 2 / len(x)
    scale = 1.0 / np.sqrt(var + shrink * var.mean())
    return ((x - mean) @ vt[:dims].T) * scale


def score(vectors: np.ndarray, ids: list[str], cats: list[str], folder: Path, name: str) -> dict[str, float]:
    """P@5 (k=5) and mAP@10/nDCG@10 (k=10) through a `model: none` collection and lookalike.query.evaluate."""
    by_cat: dict[str, list[str]] = {}
    for i, c in zip(ids, cats):
        by_cat.setdefault(c, []).append(i)
    truth = [{"query": {"id": i}, "relevant": by_cat[c]} for i, c in zip(ids, cats)]
    with lookalike.connect(folder) as db:
        col = db.collection(name, create=True, model="none", dim=int(vectors.shape[1]))
        col.upsert([{"_id": i, "_vector": v.tolist()} for i, v in zip(ids, vectors)])
        at5 = evaluate(col, truth, k=5)["metrics"]
        at10 = evaluate(col, truth, k=10)["metrics"]
    return {"P@5": at5["precision@5"], "mAP@10": at10["map@10"], "nDCG@10": at10["ndcg@10"]}


def tune_rows(variants: list[str], limit: int | None, which: str = "icons", seeds: tuple[int, ...] = (17,)) -> None:
    """Per variant (and hold-out seed): P@5 / mAP@10 on the tune's held-out categories, untuned and tuned."""
    from bench.realsets import load_embedded
    from lookalike.query import tune as tune_module
    from lookalike.query.tune import holdout_truth
    print(f"{which}\n{'variant':<34} {'seed':>4} {'dim':>5} {'P@5':>6} {'tuned':>6} {'gain':>6} {'mAP@10':>7} "
          f"{'tuned':>6} {'tune s':>7} learner")
    runs = [(model, seed) for model in variants for seed in seeds]
    with tempfile.TemporaryDirectory() as tmp, lookalike.connect(tmp) as db:
        for n, (model, seed) in enumerate(runs):
            tune_module.HOLDOUT_SEED = seed  # which quarter of the categories the tune holds out
            ids, cats, vectors = load_embedded(which, model, limit)
            col = db.collection(f"t{n}", create=True, model="none", dim=int(vectors.shape[1]))
            col.upsert([{"_id": i, "_vector": v.tolist(), "icon": c} for i, c, v in zip(ids, cats, vectors)])
            start = time.perf_counter()
            out = col.tune(field="icon")
            took = time.perf_counter() - start
            truth = holdout_truth(col._store) if out["applied"] else None
            if truth is None:
                print(f"{model:<34} not applied: {out['before']} -> {out['after']}")
                continue
            tuned = {k: evaluate(col, truth, k=k)["metrics"] for k in (5, 10)}
            col.tune(reset=True)
            plain = {k: evaluate(col, truth, k=k)["metrics"] for k in (5, 10)}
            p0, p1 = plain[5]["precision@5"], tuned[5]["precision@5"]
            print(f"{model:<34} {seed:>4} {vectors.shape[1]:>5} {p0:>6.3f} {p1:>6.3f} {p1 - p0:>+6.3f} "
                  f"{plain[10]['map@10']:>7.3f} {tuned[10]['map@10']:>6.3f} {took:>7.1f} {out['method']}", flush=True)
    print(f"\n{len(ids)} pictures in {len(set(cats))} categories (last variant); scores over the held-out "
          "categories' records, searching the whole collection")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="a smaller set (for a smoke run)")
    parser.add_argument("--tune", action="store_true", help="untuned vs tuned on the real icon set")
    parser.add_argument("--limit", type=int, default=None, help="with --tune: the first N icon names only")
    parser.add_argument("--set", default="icons", help="with --tune: icons or icon-families (bench/realsets.py)")
    parser.add_argument("--seeds", default="17", help="with --tune: hold-out seeds, comma-separated (tune's own: 17)")
    args = parser.parse_args()
    if args.tune:
        return tune_rows(args.variants.split(","), args.limit, args.set, tuple(int(s) for s in args.seeds.split(",")))
    items = labelled_set(args.quick)
    ids, cats, images = [i for i, _, _ in items], [c for _, c, _ in items], [im for _, _, im in items]
    groups = sorted({c.split(":")[0] for c in cats})
    print(f"{len(items)} images in {len(set(cats))} categories ({', '.join(groups)})\n")
    header = f"{'variant':<34} {'dim':>5} {'P@5':>6} {'mAP@10':>7} {'nDCG@10':>8}  " + \
             " ".join(f"{'P@5 ' + g:>13}" for g in groups) + f" {'ms/img':>7}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory() as tmp:
        for n, model in enumerate(args.variants.split(",")):
            vectors, ms = embed_all(model, images)
            rows = [(model, vectors)]
            rows.append((model + "+pcaw", lookalike.models.l2_normalize(pca_whiten(vectors))))
            for m, (label, vecs) in enumerate(rows):
                overall = score(vecs, ids, cats, Path(tmp), f"v{n}-{m}")
                per_group = []
                for g in groups:
                    keep = [j for j, c in enumerate(cats) if c.startswith(g + ":")]
                    sub = score(vecs[keep], [ids[j] for j in keep], [cats[j] for j in keep], Path(tmp), f"v{n}-{m}-{g}")
                    per_group.append(sub["P@5"])
                print(f"{label:<34} {vecs.shape[1]:>5} {overall['P@5']:>6.3f} {overall['mAP@10']:>7.3f} "
                      f"{overall['nDCG@10']:>8.3f}  " + " ".join(f"{p:>13.3f}" for p in per_group) +
                      f" {ms if m == 0 else 0:>7.1f}", flush=True)


if __name__ == "__main__":
    main()
