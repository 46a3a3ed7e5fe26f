"""Ingest throughput: `lookalike ingest` against a naive loop, plus the machine's limits.

Run: python bench/ingest.py [--images 256] [--size 512] [--batch 32]

All rows use the same generated 512-px JPEGs in one run:
- naive loop: PIL full decode + resize, one image after another, then torch per batch
- decode only: our decode path (JPEG draft + resize + crop) over all cores, no model
- model only: the encoder on random uint8 batches, no decode (the compute limit)
- lookalike ingest: the real pipeline (validate, hash, decode, embed, write to the store)
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lookalike  # noqa: E402
from lookalike.models import get_encoder  # noqa: E402
from lookalike.models.images import load_pixels  # noqa: E402
from lookalike.sample import photo_like  # noqa: E402


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = folder / f"img{i:05d}.jpg"
        if not p.exists():
            photo_like(i, size).save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


def naive(paths: list[Path], batch: int) -> float:
    """What a first script does: full decode, resize, stack, forward."""
    import torch
    from PIL import Image
    from lookalike.models.efficientnet import EfficientNetLiteEncoder
    net = EfficientNetLiteEncoder(backend="torch")._module.net  # the plain torch model
    start = time.perf_counter()
    for i in range(0, len(paths), batch):
        arrs = []
        for p in paths[i:i + batch]:
            im = Image.open(p).convert("RGB").resize((224, 224), Image.Resampling.BICUBIC)
            arrs.append(np.asarray(im, dtype=np.float32))
        x = torch.from_numpy((np.stack(arrs) - 127.0) / 128.0).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            net.extract_features(x).mean(dim=(2, 3))
    return len(paths) / (time.perf_counter() - start)


def decode_only(paths: list[Path]) -> float:
    workers = len(os.sched_getaffinity(0))
    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda p: load_pixels(p.read_bytes(), 224), paths))
    return len(paths) / (time.perf_counter() - start)


def model_only(n: int, batch: int, enc=None) -> float:
    enc = enc or get_encoder("efficientnet-lite0")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (batch, 224, 224, 3), dtype=np.uint8)
    enc.embed(x[:2])
    start = time.perf_counter()
    done = 0
    while done < n:
        enc.embed(x)
        done += batch
    return done / (time.perf_counter() - start)


class Int8Encoder:
    """The ONNX graph with int8 weights (onnxruntime dynamic quantisation), for comparison."""

    def __init__(self) -> None:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
        base = get_encoder("efficientnet-lite0")
        src = base._onnx.path
        dst = src.with_name(src.stem + "-int8.onnx")
        if not dst.exists():
            quantize_dynamic(str(src), str(dst), weight_type=QuantType.QUInt8)
        self._session = ort.InferenceSession(str(dst), providers=["CPUExecutionProvider"])
        self._base = base

    def embed(self, pixels: np.ndarray):
        from lookalike.models.base import l2_normalize
        vec, _ = self._session.run(None, {"x": self._base._normalise(pixels)})
        return l2_normalize(vec)


def agreement(paths: list[Path], other) -> float:
    """Mean cosine between the fp32 encoder's vectors and another encoder's, on real images."""
    base = get_encoder("efficientnet-lite0")
    px = np.stack([load_pixels(p.read_bytes(), 224) for p in paths[:32]])
    a = base.embed(px).vectors
    b = other.embed(px)
    b = b.vectors if hasattr(b, "vectors") else b
    return float(np.mean(np.sum(a * b, axis=1)))


def ingest(paths: list[Path], batch: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        with lookalike.connect(tmp) as db:
            col = db.collection("bench", create=True)
            start = time.perf_counter()
            res = col.upsert(({"_id": p.stem, "_file": str(p)} for p in paths), batch_size=batch)
            elapsed = time.perf_counter() - start
            assert all(r["status"] == "inserted" for r in res), res[:3]
    return len(paths) / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lookalike-bench-images"))
    args = ap.parse_args()
    folder = Path(args.cache) / f"{args.size}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = make_images(folder, args.images, args.size)
    get_encoder("efficientnet-lite0").embed(np.zeros((2, 224, 224, 3), np.uint8))  # load + warm up
    from lookalike.models.efficientnet import EfficientNetLiteEncoder
    torch_enc = EfficientNetLiteEncoder(backend="torch")
    int8 = Int8Encoder()
    rows = [
        ("naive loop (full decode, per-batch torch)", naive(paths, args.batch)),
        ("decode only (draft decode, all cores)", decode_only(paths)),
        ("model only (onnxruntime, the default)", model_only(args.images, args.batch)),
        ("lookalike ingest", ingest(paths, args.batch)),
        ("option: model only, torch eager", model_only(args.images, args.batch, torch_enc)),
        ("option: model only, onnxruntime int8", model_only(args.images, args.batch, int8)),
    ]
    print(f"\nagreement with fp32 vectors (mean cosine): torch {agreement(paths, torch_enc):.5f}, "
          f"int8 {agreement(paths, int8):.5f}")
    base = rows[0][1]
    limit = min(rows[1][1], rows[2][1])  # decode-only and model-only: the machine's limits
    print(f"\n{args.images} JPEGs of {args.size}px, batch {args.batch}, {len(os.sched_getaffinity(0))} cores\n")
    print(f"| {'path':<44} | {'images/s':>9} | {'vs naive':>8} | {'vs limit':>8} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 10}|{'-' * 10}|")
    for name, rate in rows:
        print(f"| {name:<44} | {rate:>9.1f} | {rate / base:>7.2f}x | {rate / limit:>7.2f}x |")


if __name__ == "__main__":
    main()
