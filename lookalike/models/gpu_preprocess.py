"""Resize, crop and normalise decoded images on the encoder's device, a batch at a time.

On a GPU the bicubic resize that `images.fit_square` does with Pillow on the CPU is the
largest CPU cost left after draft-mode JPEG decoding; here the decoded uint8 images
(a quarter of float32 to ship) go to the device as they are and are resized there with
`torch.nn.functional.interpolate(..., antialias=True)`, which filters like Pillow's
resampling. Same geometry as `fit_square` (`images.target_size`), so vectors match the
Pillow path closely (tests/test_ingest_decode.py). Runs on any torch device: tests use CPU.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .images import target_size

_WHITE = 255.0


def _check(image: np.ndarray, index: int) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 \
            or min(image.shape[:2]) < 1:
        shape = getattr(image, "shape", None)
        raise ValueError(f"image {index}: expected uint8 height x width x 3 pixels, got {shape}")


def fit_tensor(x, size: int, mode: str = "crop"):
    """N x 3 x H x W floats (0..255, one size) -> N x 3 x size x size, as `images.fit_square`."""
    import torch
    import torch.nn.functional as F

    height, width = int(x.shape[2]), int(x.shape[3])
    new_w, new_h = target_size(width, height, size, mode)
    if (new_h, new_w) != (height, width):
        # Bicubic overshoots at edges; Pillow clamps to 0..255 when it writes uint8, so do we.
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", antialias=True, align_corners=False).clamp_(0, 255)
    if mode == "pad":
        canvas = torch.full((x.shape[0], 3, size, size), _WHITE, dtype=x.dtype, device=x.device)
        top, left = (size - new_h) // 2, (size - new_w) // 2
        canvas[:, :, top:top + new_h, left:left + new_w] = x
        return canvas
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return x[:, :, top:top + size, left:left + size]


def prepare_batch(images: Sequence[np.ndarray], size: int, *, mode: str = "crop", device="cpu",
                  mean: float = 127.0, std: float = 128.0, dtype=None):
    """uint8 HxWx3 images of any sizes -> one N x 3 x size x size tensor on `device`, (x - mean) / std.

    Images of the same size travel and resize together (one copy, one kernel per size), so a
    catalogue of same-sized photos resizes in one call per batch. `dtype` (e.g. torch.float16)
    is applied after resizing, which runs in float32.
    """
    import torch

    device = torch.device(device)
    for i, image in enumerate(images):
        _check(image, i)
    out = torch.empty((len(images), 3, size, size), dtype=torch.float32, device=device)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, image in enumerate(images):
        groups.setdefault(image.shape[:2], []).append(i)
    for index in groups.values():
        host = torch.from_numpy(np.stack([images[i] for i in index]))
        x = host.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
        out[torch.tensor(index, device=device)] = fit_tensor(x, size, mode)
    out.sub_(mean).div_(std)
    return out if dtype is None else out.to(dtype)
