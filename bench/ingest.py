"""Ingest throughput: `lookalike ingest` against a naive loop, plus the machine's limits.

Run: python bench/ingest.py [--images 128] [--size 512] [--batch 32] [--rounds 2] [--device auto|cpu|cuda]
                            [--only ingest,decode]

All rows use the same generated JPEGs (photo-like, --size px) in one run. Rows are measured in
rounds, interleaved, and each row keeps its best round, so a busy shared machine slows all alike:
- naive loop: PIL full decode + resize, one image after another, then torch per batch
- decode stage: what ingest does per image before the model (JPEG draft decode, colours,
  near-duplicate fingerprint, thumbnail, resize + crop), over all cores, in threads or processes
- model only: the encoder on random uint8 batches, no decode (the compute limit)
- lookalike ingest: the real pipeline (validate, hash, decode, embed, write to the store), with
  decoding in threads (the default) or in worker processes (`--decode processes`)
- options: resize with torch instead of Pillow (`--resize device`, the GPU path run on CPU),
  the model in eager torch or with int8 weights
- GPU rows (CUDA only, else skipped with a note): the model in fp16, ingest with the resize on the
  GPU (`--resize device`, the default there) and on the host.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lookalike  # noqa: E402
import lookalike.ingest.decode as decoding  # noqa: E402
from lookalike.ingest.pipeline import Ingestor  # noqa: E402
from lookalike.models.images import DEFAULT_MAX_PIXELS, load_pixels  # noqa: E402
from lookalike.models.registry import DEFAULT_MODEL  # noqa: E402
from lookalike.testing.photos import photo_like  # noqa: E402


def make_images(folder: Path, n: int, size: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = folder / f"img{i:05d}.jpg"
        if not p.exists():
            photo_like(i, size).save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


def naive(paths: list[Path], batch: int, model: str) -> float:
    """What a first script does: full decode, resize, stack, forward."""
    import torch
    from PIL import Image
    from lookalike.models.efficientnet import EfficientNetLiteEncoder
    net = EfficientNetLiteEncoder(model, backend="torch", device="cpu")._module.net  # the plain torch model
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


def decode_stage(paths: list[Path], mode: str, host_resize: bool = True) -> float:
    """Ingest's per-image work before the model (decode.decode_image), in threads or processes."""
    workers = max(2, len(os.sched_getaffinity(0)))  # as the Ingestor
    job = dict(size=224, fit="crop", max_pixels=DEFAULT_MAX_PIXELS, thumbnail=True, host_resize=host_resize)
    start = time.perf_counter()
    if mode == "processes":
        for future in [decoding.submit(workers, data=p.read_bytes(), **job) for p in paths]:
            future.result()
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda p: decoding.decode_image(p.read_bytes(), **job), paths))
    return len(paths) / (time.perf_counter() - start)


def warm_process_pool(paths: list[Path]) -> None:
    """Start the decode processes before timing (about a second each; a server pays it once)."""
    workers = max(2, len(os.sched_getaffinity(0)))
    for future in [decoding.submit(workers, data=p.read_bytes(), size=224, fit="crop",
                                   max_pixels=DEFAULT_MAX_PIXELS, thumbnail=False) for p in paths[:workers * 2]]:
        future.result()


def model_only(n: int, batch: int, enc) -> float:
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

    def __init__(self, base) -> None:
        import onnxruntime as ort
        from onnxruntime.quantization import QuantType, quantize_dynamic
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


def spinning_encoder(model: str):
    """The default encoder with ONNX Runtime's own default: idle threads spin-wait (ours sleep)."""
    from lookalike.models.efficientnet import EfficientNetLiteEncoder
    from lookalike.models.onnx_backend import OnnxRunner
    enc = EfficientNetLiteEncoder(model, device="cpu")
    enc.embed(np.zeros((2, 224, 224, 3), np.uint8))
    enc._onnx = OnnxRunner(enc._module, enc.input_size, model, spinning=True)
    return enc


def agreement(paths: list[Path], base, other) -> float:
    """Mean cosine between the default encoder's vectors and another encoder's, on real images."""
    px = np.stack([load_pixels(p.read_bytes(), 224) for p in paths[:32]])
    a = base.embed(px).vectors
    b = other.embed(px)
    b = b.vectors if hasattr(b, "vectors") else b
    return float(np.mean(np.sum(a * b, axis=1)))


def ingest(paths: list[Path], batch: int, model: str, encoder, **options) -> float:
    """The real pipeline into a fresh store; `options` are the Ingestor's decode/resize."""
    with tempfile.TemporaryDirectory() as tmp:
        with lookalike.connect(tmp) as db:
            col = db.collection("bench", create=True, model=model)
            ingestor = Ingestor(col._store, encoder, batch_size=batch, max_pixels=col.max_pixels, **options)
            start = time.perf_counter()
            res = list(ingestor.run({"_id": p.stem, "_file": str(p)} for p in paths))
            elapsed = time.perf_counter() - start
            assert all(r["status"] == "inserted" for r in res), res[:3]
    return len(paths) / elapsed


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of the live decode worker processes."""
    times = os.times()
    total = times.user + times.system
    tick = os.sysconf("SC_CLK_TCK")
    for pool in list(decoding._POOLS.values()):
        for pid in list(getattr(pool, "_processes", None) or {}):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def _ratio(rate: float, base: float) -> str:
    return f"{rate / base:>7.2f}x" if base > 0 else f"{'-':>8}"  # nan or 0: not measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=128)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds; each row keeps its best")
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--batch-sweep", default="8,64", type=lambda v: [int(x) for x in v.split(",") if x],
                    help="other batch sizes measured as options (model only and ingest)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="GPU rows: auto = when CUDA is available, cuda = required, cpu = skip them")
    ap.add_argument("--only", help="comma-separated substrings: measure only rows whose name has one "
                    "(the limit rows are always measured)")
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "lookalike-bench-images"))
    args = ap.parse_args()
    import torch
    from lookalike.models.efficientnet import EfficientNetLiteEncoder, check_device
    if args.device == "cuda":
        check_device("cuda")  # a clear error when there is no GPU
    gpu = args.device != "cpu" and torch.cuda.is_available()

    folder = Path(args.cache) / f"{args.size}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = make_images(folder, args.images, args.size)
    n, b, model = args.images, args.batch, args.model
    enc = EfficientNetLiteEncoder(model, device="cpu")  # the CPU default: ONNX Runtime
    enc.embed(np.zeros((2, 224, 224, 3), np.uint8))  # load + warm up
    torch_enc = EfficientNetLiteEncoder(model, backend="torch", device="cpu")
    int8 = Int8Encoder(enc)
    spin_enc = spinning_encoder(model)
    warm_process_pool(paths)

    rows: list[tuple[str, Callable[[], float]]] = [
        ("naive loop (full decode, per-batch torch)", lambda: naive(paths, b, model)),
        ("decode stage, threads (all cores)", lambda: decode_stage(paths, "threads")),
        ("decode stage, processes (all cores)", lambda: decode_stage(paths, "processes")),
        ("decode stage, threads, no resize (for GPU)", lambda: decode_stage(paths, "threads", host_resize=False)),
        ("model only (onnxruntime, the default)", lambda: model_only(n, b, enc)),
        ("lookalike ingest (decode in threads)", lambda: ingest(paths, b, model, enc, decode="threads")),
        ("lookalike ingest, decode in processes", lambda: ingest(paths, b, model, enc, decode="processes")),
        ("option: ingest, resize in torch (CPU)", lambda: ingest(paths, b, model, enc, resize="device")),
        ("option: ingest, processes + resize in torch", lambda: ingest(paths, b, model, enc, decode="processes",
                                                                     resize="device")),
        ("option: ingest, processes, ORT spin-waits", lambda: ingest(paths, b, model, spin_enc,
                                                                      decode="processes")),
        ("option: model only, ORT spin-waits", lambda: model_only(n, b, spin_enc)),
        *[(f"option: model only, batch {size}", lambda size=size: model_only(max(n, 2 * size), size, enc))
          for size in args.batch_sweep],
        *[(f"option: ingest, processes, batch {size}", lambda size=size: ingest(paths, size, model, enc,
                                                                                decode="processes"))
          for size in args.batch_sweep],
        ("option: model only, torch eager", lambda: model_only(n, b, torch_enc)),
        ("option: model only, onnxruntime int8", lambda: model_only(n, b, int8)),
    ]
    gpu_note = ""
    if gpu:
        gpu_enc = EfficientNetLiteEncoder(model, device="cuda")
        gpu_enc.embed(np.zeros((2, 224, 224, 3), np.uint8))
        rows += [
            ("GPU: model only, fp16", lambda: model_only(max(n, 4 * b), b, gpu_enc)),
            ("GPU: ingest, resize on GPU (fp16)", lambda: ingest(paths, b, model, gpu_enc, resize="device")),
            ("GPU: ingest, resize on host (fp16)", lambda: ingest(paths, b, model, gpu_enc, resize="host")),
            ("GPU: ingest, decode in processes, resize on GPU", lambda: ingest(paths, b, model, gpu_enc,
                                                                               decode="processes", resize="device")),
            ("GPU: ingest, decode in processes, resize on host", lambda: ingest(paths, b, model, gpu_enc,
                                                                                decode="processes", resize="host")),
        ]
    else:
        gpu_note = ("GPU rows skipped: torch sees no CUDA device here (torch "
                    f"{torch.__version__}); run `python bench/ingest.py --device cuda` on a GPU machine.")

    if args.only:
        keep = [w.strip() for w in args.only.split(",") if w.strip()] + ["decode stage, threads (", "model only (onnx"]
        rows = [r for r in rows if any(w in r[0] for w in keep)]
    best: dict[str, float] = {}
    cpu_ms: dict[str, float] = {}  # CPU per image, all threads and decode processes: robust to a busy machine
    for _ in range(max(1, args.rounds)):
        for name, measure in rows:
            cpu = cpu_seconds()
            best[name] = max(best.get(name, 0.0), measure())
            cpu_ms[name] = min(cpu_ms.get(name, float("inf")), (cpu_seconds() - cpu) * 1000 / n)
    if not any(name.startswith("naive") for name, _ in rows):
        rows.insert(0, ("naive loop (not measured: --only)", lambda: float("nan")))
        best[rows[0][0]] = cpu_ms[rows[0][0]] = float("nan")
    print(f"\nagreement with the default vectors (mean cosine): torch {agreement(paths, enc, torch_enc):.5f}, "
          f"int8 {agreement(paths, enc, int8):.5f}")
    base = best[rows[0][0]]
    # Ingest can never beat the slower of its two stages, each alone on the machine: min(). On CPU both
    # stages share the cores, so the reachable rate is lower (about 1 / (1/decode + 1/model)).
    decode, model_rate = best["decode stage, threads (all cores)"], best["model only (onnxruntime, the default)"]
    limit = min(decode, model_rate)
    gpu_model = best.get("GPU: model only, fp16", float("nan"))
    gpu_limits = {"GPU: model only, fp16": gpu_model, "GPU: ingest, resize on host (fp16)": min(decode, gpu_model),
                  "GPU: ingest, resize on GPU (fp16)": min(best.get("decode stage, threads, no resize (for GPU)",
                                                                     decode), gpu_model)}
    print(f"\n{n} JPEGs of {args.size}px, {model}, batch {b}, {len(os.sched_getaffinity(0))} cores, "
          f"best of {args.rounds} interleaved rounds\n")
    print(f"| {'path':<44} | {'images/s':>9} | {'vs naive':>8} | {'vs limit':>8} | {'CPU ms/img':>10} |")
    print(f"|{'-' * 46}|{'-' * 11}|{'-' * 10}|{'-' * 10}|{'-' * 12}|")
    for name, _ in rows:
        rate = best[name]
        lim = gpu_limits.get(name, limit)
        print(f"| {name:<44} | {rate:>9.1f} | {_ratio(rate, base)} | {_ratio(rate, lim)} | {cpu_ms[name]:>10.1f} |")
    print("\nCPU ms/img: CPU time of all threads and decode processes per image (lowest round; includes"
          " torch's spin-waiting threads)")
    print(f"limit: min(decode stage, model only), each alone; CPU rows {limit:.1f}/s (both stages share the cores:"
          f" 1/(1/decode + 1/model) = {1 / (1 / decode + 1 / model_rate):.1f}/s), GPU rows min(decode stage"
          " (without resize when the GPU resizes), GPU model only)")
    if gpu_note:
        print(gpu_note)


if __name__ == "__main__":
    main()
