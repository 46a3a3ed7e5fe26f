"""Run a torch encoder through ONNX Runtime: same numbers, several times faster on CPU.

Measured in `bench/ingest.py`: on 2 CPU cores ONNX Runtime runs EfficientNet-Lite0 about 3x
faster than eager PyTorch (fused convolutions and activations, better threading), with
outputs equal to 1e-4. The exported graph is cached per model on disk (export takes
seconds, loading milliseconds); any failure falls back to torch.
"""
from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return os.environ.get("LOOKALIKE_BACKEND", "onnx") != "torch"


def cache_dir() -> Path:
    base = os.environ.get("LOOKALIKE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "lookalike")
    return Path(base) / "onnx"


def weights_key(module, input_size: int, tag: str) -> str:
    """A short digest of the module's weights, so a changed model never reuses an old export."""
    h = hashlib.sha256(f"{tag}:{input_size}".encode())
    h.update(repr(module).encode())  # the layer structure (activations included), not only the weights
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes()[:4096])
    return h.hexdigest()[:16]


class OnnxRunner:
    """Holds an ONNX Runtime session for a torch module mapping N x 3 x S x S floats to outputs."""

    def __init__(self, module, input_size: int, tag: str, threads: int | None = None,
                 spinning: bool = False) -> None:
        import onnxruntime as ort
        import torch

        path = cache_dir() / f"{tag}-{weights_key(module, input_size, tag)}.onnx"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            example = torch.zeros(2, 3, input_size, input_size)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the exporter's tracer warnings are not for users
                torch.onnx.export(module, (example,), str(tmp), input_names=["x"], output_names=["vector", "probs"],
                                  dynamic_axes={"x": {0: "n"}}, opset_version=17, dynamo=False)
            os.replace(tmp, path)  # atomic: concurrent processes never read a half-written file
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or max(1, len(os.sched_getaffinity(0)))
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle intra-op threads sleep instead of spinning (ONNX Runtime's default is to spin), so the
        # decode workers and a server's other requests get those cycles. bench/ingest.py, 2 cores, side
        # by side: on a quiet machine the same throughput (ingest 104.3 vs 104.5 images/s) for 0.7 ms less
        # CPU per image (18.1 vs 18.8); under load (another benchmark running) 54.2 vs 48.3 images/s.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vector, probs = self.session.run(None, {"x": np.ascontiguousarray(x, dtype=np.float32)})
        return vector, probs
