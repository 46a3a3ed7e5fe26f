"""Near-duplicate benchmark: recall@1 per copy transform, lookalike `match` vs imagehash.

Builds a collection of drawn originals (patterned products from `draw_item`, which look
alike on purpose, and smooth `photo_like` images), then queries with edited copies of some
of them (lookalike/testing/copies.py: crop to 60 %, rotate ±10°, mirror, greyscale, blur, JPEG
quality 10, downscale 5x, border, text). recall@1: the original is the first hit (for
`match`: and scores over the default threshold). Baselines rank every original by Hamming
distance of imagehash's pHash / dHash (a tie with another original counts as a miss), and
by the CNN embedding (`search`). `false` is the share of copies of images *not* in the
collection for which `match` still returned a hit. Then `duplicates` on a collection of
originals plus one copy of some of them and copies of outsiders: pairwise precision and
recall of its clusters, next to the whole-image-only clustering it replaced.

    python bench/duplicates.py [--originals 120] [--queries 40] [--model efficientnet-lite0]
"""
from __future__ import annotations

import os
import sys

# a script here named like a standard module would shadow the standard library's `http` (httpx needs http.client)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse  # noqa: E402
import base64
import itertools
import tempfile
import time

import imagehash
import numpy as np
from PIL import Image

import lookalike
from lookalike.testing.copies import TRANSFORMS, encode
from lookalike.sample import COLORS, PATTERNS, SHAPES, draw_item
from lookalike.testing.photos import photo_like


def originals(n: int, offset: int = 0) -> list[Image.Image]:
    """Half drawn products (all patterns x colours x shapes), half photo-like images."""
    combos = list(itertools.product(PATTERNS, COLORS, SHAPES))
    out = []
    for i in range(n):
        seed = offset + i
        if i % 2 == 0:
            pattern, colour, shape = combos[(seed // 2) % len(combos)]
            out.append(draw_item(pattern, COLORS[colour], seed=seed, size=320, shape=shape))
        else:
            out.append(photo_like(10_000 + seed, size=320))
    return out


def b64(im: Image.Image) -> str:
    return base64.b64encode(encode(im)).decode()


def hash_recall(fn, stored: list, queries: list[tuple[int, Image.Image]]) -> float:
    hashes = [fn(im) for im in stored]
    ok = 0
    for want, q in queries:
        h = fn(q)
        d = np.array([h - s for s in hashes])
        ok += d[want] < np.delete(d, want).min()
    return ok / len(queries)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--originals", type=int, default=120)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--model", default=None, help="collection model (default: the collection default)")
    ap.add_argument("--pairs", type=int, default=0,
                    help="only time the whole-image pair search of big collections at this many hashes")
    args = ap.parse_args()
    if args.pairs:
        pair_search_speed(args.pairs)
        return
    images = originals(args.originals)
    outsiders = originals(args.queries, offset=50_000)
    with tempfile.TemporaryDirectory() as tmp, lookalike.connect(tmp) as db:
        col = db.collection("dups", create=True, **({"model": args.model} if args.model else {}))
        print(f"model {col.settings.model}")
        t = time.perf_counter()
        col.upsert([{"_id": f"o{i}", "_base64": b64(im)} for i, im in enumerate(images)])
        print(f"ingested {len(images)} originals in {time.perf_counter() - t:.1f} s")
        step = max(1, args.originals // args.queries)
        picked = list(range(0, args.originals, step))[: args.queries]
        print(f"\n{len(picked)} queries per transform; collection of {len(images)} originals\n")
        print("| transform | lookalike match | false | CNN search | pHash | dHash | match ms |")
        print("|---|---|---|---|---|---|---|")
        totals = []
        for name, tf in TRANSFORMS.items():
            queries = [(i, tf(images[i], i)) for i in picked]
            ok = cnn = 0
            ms = []
            for want, q in queries:
                res = col.match({"base64": b64(q)})
                ms.append(res["took_ms"])
                ok += bool(res["hits"]) and res["hits"][0]["_id"] == f"o{want}"
                top = col.search({"base64": b64(q)}, k=1)["hits"]
                cnn += top[0]["_id"] == f"o{want}"
            false = sum(bool(col.match({"base64": b64(tf(im, j))})["hits"]) for j, im in enumerate(outsiders))
            row = (ok / len(queries), false / len(outsiders), cnn / len(queries),
                   hash_recall(imagehash.phash, images, queries), hash_recall(imagehash.dhash, images, queries))
            totals.append(row)
            print(f"| {name} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} | {row[3]:.2f} | {row[4]:.2f} "
                  f"| {np.median(ms):.1f} |")
        mean = np.mean(totals, axis=0)
        print(f"| **mean** | {mean[0]:.2f} | {mean[1]:.2f} | {mean[2]:.2f} | {mean[3]:.2f} | {mean[4]:.2f} | |")

        # duplicates: add one copy of every original, transform cycling through the list,
        # and as many copies of outsiders (whose originals are not in the collection: any pair
        # with one of them is a false pair)
        names = list(TRANSFORMS)
        truth = set()
        copies = []
        for i in range(len(images)):
            name = names[i % len(names)]
            copies.append({"_id": f"c{i}-{name}", "_base64": b64(TRANSFORMS[name](images[i], i))})
            truth.add(tuple(sorted((f"o{i}", f"c{i}-{name}"))))
        for j, im in enumerate(outsiders):
            name = names[j % len(names)]
            copies.append({"_id": f"x{j}-{name}", "_base64": b64(TRANSFORMS[name](im, j))})
        col.upsert(copies)
        print(f"\nduplicates over {col.count()} records ({len(images)} copies of originals and "
              f"{len(outsiders)} of outsiders, transforms cycling):\n")
        print("| clustering | clusters | pairwise precision | recall | " + " | ".join(names) + " | ms |")
        print("|---|---|---|---|" + "---|" * len(names) + "---|")
        for label, run in (("whole-image hashes only (before)", lambda: whole_only(col)),
                           ("copy side + crops (`duplicates`)", lambda: col.duplicates()["clusters"])):
            t = time.perf_counter()
            clusters = run()
            took = (time.perf_counter() - t) * 1000
            pred = {tuple(sorted(p)) for c in clusters for p in itertools.combinations(c, 2)}
            hit = len(pred & truth)
            found = {p[0] if p[0].startswith("c") else p[1] for p in pred & truth}
            by = [np.mean([c["_id"] in found for c in copies[:len(images)] if c["_id"].endswith("-" + name)])
                  for name in names]
            print(f"| {label} | {len(clusters)} | {hit / max(1, len(pred)):.2f} | {hit / len(truth):.2f} | "
                  + " | ".join(f"{r:.2f}" for r in by) + f" | {took:.0f} |")


def pair_search_speed(n: int) -> None:
    """Seconds for `duplicates`' whole-image pairs at n random hashes with 5 % planted near copies
    (a third mirrored): FAISS binary range search against the matrix products (`pairs_by_products`, used without FAISS)."""
    from lookalike.models import fingerprint as fp
    from lookalike.query import duplicates as dup

    rng = np.random.default_rng(0)
    bits = rng.random((n, fp.BITS)) < 0.5
    copies = n // 20
    sources = rng.choice(n - copies, copies, replace=False)
    for c, source in enumerate(sources):
        row = bits[source] ^ (rng.random(fp.BITS) < rng.uniform(0.02, 0.18))
        bits[n - copies + c] = row ^ fp.MIRROR if c % 3 == 0 else row
    words = np.packbits(bits, axis=1).view(">u8").astype(np.uint64)
    t = time.perf_counter()
    rows, cols = dup.similar_pairs(words, dup.DEFAULT_DUPLICATE_THRESHOLD)
    new = time.perf_counter() - t
    t = time.perf_counter()
    old_rows, old_cols = dup.pairs_by_products(words, dup.DEFAULT_DUPLICATE_THRESHOLD)
    old_s = time.perf_counter() - t
    same = set(zip(rows.tolist(), cols.tolist())) == set(zip(old_rows.tolist(), old_cols.tolist()))
    print("| hashes | pairs | binary range search s | matrix products s | speed-up | same pairs |")
    print("|---|---|---|---|---|---|")
    print(f"| {n:,} | {len(rows):,} | {new:.1f} | {old_s:.1f} | {old_s / new:.1f}x | {same} |")


def whole_only(col) -> list[list[str]]:
    """The clustering `duplicates` did before the copy side: whole-image hashes (and mirrors) only."""
    from lookalike.models import fingerprint as fp
    from lookalike.query import duplicates as dup

    ids, _ = col._store.all_vectors()
    docs = col._store.get(ids)
    keep = [(rid, fp.decode_fingerprint(d[fp.FINGERPRINT])) for rid, d in zip(ids, docs)
            if d and fp.FINGERPRINT in d]
    words = np.stack([fp[0] for _, fp in keep])
    rows, cols = dup.similar_pairs(words, dup.DEFAULT_DUPLICATE_THRESHOLD)
    return [[keep[i][0] for i in g] for g in dup.clusters(len(keep), rows, cols)]


if __name__ == "__main__":
    main()
