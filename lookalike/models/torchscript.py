"""A user-supplied image model from a local TorchScript file (no download, any size).

Design notes (how it works and why): docs/embeddings.md, "Notes: `lookalike/models/torchscript.py`".
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import BadRequest
from .base import Embeddings, l2_normalize

_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def sidecar_config(path: str) -> dict:
    """`NAME.json` beside `NAME.pt` (empty when absent); BadRequest if it is not a JSON object."""
    conf = Path(path).with_suffix(".json")
    if not conf.is_file():
        return {}
    try:
        data = json.loads(conf.read_text())
    except (OSError, ValueError) as exc:
        raise BadRequest(f"cannot read model settings {conf}: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest(f"model settings {conf} must be a JSON object")
    return data


class TextTower:
    """A TorchScript text encoder and its tokenizer: texts -> unit vectors in the image space."""

    def __init__(self, path: Path, tokenizer: Path, context_length: int = 77, pad_id: int = 0,
                 device: str = "cpu") -> None:
        import torch
        from tokenizers import Tokenizer

        try:
            self._net = torch.jit.load(str(path), map_location=device).eval()
        except Exception as exc:
            raise BadRequest(f"cannot load TorchScript text tower {path}: {exc}") from None
        try:
            self._tok = Tokenizer.from_file(str(tokenizer))
        except Exception as exc:
            raise BadRequest(f"cannot load tokenizer {tokenizer}: {exc}") from None
        self._torch = torch
        self.context_length = int(context_length)
        self.pad_id = int(pad_id)
        self.device = torch.device(device)

    def tokens(self, texts: list[str]) -> np.ndarray:
        """N x context_length int64 ids, truncated (keeping the last, end-of-text token) and padded."""
        out = np.full((len(texts), self.context_length), self.pad_id, dtype=np.int64)
        for row, enc in enumerate(self._tok.encode_batch(texts)):
            ids = enc.ids
            if len(ids) > self.context_length:
                ids = ids[: self.context_length - 1] + ids[-1:]
            out[row, : len(ids)] = ids
        return out

    def embed(self, texts: list[str]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self._net(torch.from_numpy(self.tokens(texts)).to(self.device))
        return l2_normalize(out.float().reshape(len(texts), -1).cpu().numpy())


def find_text_tower(path: str, config: dict, device: str = "cpu") -> TextTower | None:
    """The text tower beside an image model file, or None when there is none."""
    model = Path(path)
    tower = model.with_suffix(".text.pt")
    if not tower.is_file():
        return None
    tokenizer = model.with_suffix(".tokenizer.json")
    if not tokenizer.is_file():
        tokenizer = model.with_name("tokenizer.json")
    if not tokenizer.is_file():
        raise BadRequest(f"text tower {tower} needs a tokenizer: {model.with_suffix('.tokenizer.json')} "
                         "in the Hugging Face tokenizers format")
    return TextTower(tower, tokenizer, context_length=config.get("context_length", 77),
                     pad_id=config.get("pad_id", 0), device=device)


class TorchScriptEncoder:
    """Embeddings from a TorchScript module on local disk; no labels; a text tower if one is beside it."""

    def __init__(self, path: str, input_size: int | None = None, mean: tuple | None = None, std: tuple | None = None,
                 fit: str | None = None, device: str = "cpu") -> None:
        import torch

        if not Path(path).is_file():
            raise BadRequest(f"model file not found: {path}")
        config = sidecar_config(path)
        input_size = int(input_size or config.get("input_size", 224))
        mean = tuple(mean or config.get("mean", _CLIP_MEAN))
        std = tuple(std or config.get("std", _CLIP_STD))
        fit = fit or config.get("fit", "crop")
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
        self.text_tower = find_text_tower(path, config, device)
        if self.text_tower is not None:
            width = self.text_tower.embed(["a photo"]).shape[1]
            if width != self.dim:
                raise BadRequest(f"text tower of {path} makes {width}-d vectors, the image tower {self.dim}-d")

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Texts embedded into the image space (CLIP-like models only)."""
        if self.text_tower is None:
            raise BadRequest(f"model {self.name} has no text tower ({Path(self.name[12:]).with_suffix('.text.pt')})")
        return self.text_tower.embed(texts)

    def embed(self, pixels: np.ndarray) -> Embeddings:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float()
            x = ((x - self._mean) / self._std).to(self.device)
            out = self._net(x)
            out = out.reshape(out.shape[0], -1) if out.ndim > 2 else out
        return Embeddings(vectors=l2_normalize(out.float().cpu().numpy()), labels=[[] for _ in range(len(pixels))])
