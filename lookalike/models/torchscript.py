"""A user-supplied image model from a local TorchScript file (no download, any size).

Any network exported with `torch.jit.save` that maps a float batch N x 3 x S x S (RGB
scaled to 0..1, then normalised with the given mean/std) to N x D embeddings works: an
OpenCLIP visual tower, a fine-tuned ResNet, a distilled in-house model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import BadRequest
from .base import Embeddings, l2_normalize

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class TorchScriptEncoder:
    """Embeddings from a TorchScript module on local disk; no labels."""

    def __init__(self, path: str, input_size: int = 224, mean: tuple = _CLIP_MEAN, std: tuple = _CLIP_STD,
                 fit: str = "crop", device: str = "cpu") -> None:
        import torch

        if not Path(path).is_file():
            raise BadRequest(f"model file not found: {path}")
        try:
            self._net = torch.jit.load(path, map_location=device).eval()
        except Exception as exc:  # torch raises RuntimeError and friends for non-TorchScript files
            raise BadRequest(f"cannot load TorchScript model {path}: {exc}") from None
        self._torch = torch
        self.name = f"torchscript:{path}"
        self.input_size = input_size
        self.fit = fit
        self.device = torch.device(device)
        self._mean = torch.tensor(mean).view(1, 3, 1, 1) * 255.0
        self._std = torch.tensor(std).view(1, 3, 1, 1) * 255.0
        probe = self.embed(np.zeros((1, input_size, input_size, 3), dtype=np.uint8)).vectors
        if probe.ndim != 2:
            raise BadRequest(f"model {path} must return N x D embeddings, got shape {probe.shape}")
        self.dim = int(probe.shape[1])

    def embed(self, pixels: np.ndarray) -> Embeddings:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
            x = ((x - self._mean) / self._std).to(self.device)
            out = self._net(x)
            out = out.reshape(out.shape[0], -1) if out.ndim > 2 else out
        return Embeddings(vectors=l2_normalize(out.float().cpu().numpy()), labels=[[] for _ in range(len(pixels))])
