"""Which model names exist, and one loaded instance of each per process.

Built in: `efficientnet-lite0`, `-lite1`, `-lite2` (their weights packages must be
installed), each also as `...-gem`, `...-style` and `...-gem-style` (other pooling/features;
`efficientnet-lite0-style` is the default, chosen in docs/embeddings.md),
`none` (precomputed vectors only) and `torchscript:/path/model.pt` for a user-supplied model
(with `model.text.pt` beside it, a CLIP-like text tower for text-to-image search). `register_model` adds more (a plugin seam, as in Datasette).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from ..errors import BadRequest
from .base import ImageEncoder

#: Best P@5 on bench/relevance.py (0.897 against 0.857 for plain Lite0), see docs/embeddings.md.
DEFAULT_MODEL = "efficientnet-lite0-style"
#: Builds an encoder: `factory(name)`, or `factory(name, device=...)` when a device is asked for.
Factory = Callable[..., ImageEncoder]

_FACTORIES: dict[str, Factory] = {}
_VERSIONS: dict[str, str] = {}
_LOADED: dict[tuple[str, str | None], ImageEncoder] = {}
_LOCK = threading.Lock()


def register_model(name: str, factory: Factory, version: str = "") -> None:
    """Make `name` usable as a collection's `model`; `factory(name)` builds the encoder.

    `version` changes whenever the model computes different vectors for the same image: records
    embedded by another version are re-embedded on re-ingest instead of reported `unchanged`.
    """
    _FACTORIES[name] = factory
    _VERSIONS[name] = version


def model_version(name: str) -> str:
    """Cheap identity of what `name` computes (no model is loaded): see register_model."""
    if name.startswith("torchscript:"):
        try:  # the user's file: a new checkpoint at the same path is another model
            st = os.stat(name.split(":", 1)[1])
        except OSError:
            return ""
        return f"{st.st_size}-{st.st_mtime_ns}"
    return _VERSIONS.get(name, "")


def _efficientnet(name: str, device: str | None = None) -> ImageEncoder:
    from .efficientnet import EfficientNetLiteEncoder
    return EfficientNetLiteEncoder(name, device=device)


for _backbone in ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"):
    # Pooling/feature options (see efficientnet._embedder_module and bench/relevance.py):
    # -gem generalised-mean pooling, -style adds mid-layer channel statistics (pattern, material).
    for _suffix in ("", "-gem", "-style", "-gem-style"):
        # version "relu6": vectors from before the fix that kept Lite's ReLU6 (not Swish) are stale
        register_model(_backbone + _suffix, _efficientnet, version="relu6")


def known_model(name: str) -> bool:
    """True for names a collection may use (without loading the model)."""
    return name == "none" or name in _FACTORIES or name.startswith("torchscript:")


def check_model_name(name: str) -> None:
    if not isinstance(name, str) or not known_model(name):
        raise BadRequest(f"unknown model {name!r}; known: none, torchscript:PATH, {', '.join(sorted(_FACTORIES))}")


def confine_model(name: object, models_dir: str | Path | None) -> object:
    """The model a collection may use when set over HTTP: user models only from `models_dir`.

    `torchscript:PATH` names a file on the server; an admin request must not be able to probe the
    server's disk with it (whether a path exists, or loads). PATH is taken relative to the
    configured models folder (`lookalike serve --models DIR`) and must resolve inside it; the
    answer is the same for every path outside, existing or not. The result names the file by its
    absolute path, so the stored setting works from the CLI too. Other names pass unchanged.
    """
    if not isinstance(name, str) or not name.startswith("torchscript:"):
        return name
    if models_dir is None:
        raise BadRequest("user models ('torchscript:PATH') are refused over HTTP: start the server with "
                         "--models DIR to allow models from that folder (the CLI and Python API take any path)")
    root = Path(models_dir).resolve()
    given = name.split(":", 1)[1]
    outside = not given or "\0" in given
    path = root if outside else Path(os.path.realpath(root / given))  # an absolute `given` replaces root
    if outside or path == root or not path.is_relative_to(root):
        raise BadRequest(f"model path {given!r} is not inside the server's models folder: give a path "
                         "relative to the folder set by --models")
    if not path.is_file():
        raise BadRequest(f"no model file {given!r} in the server's models folder")
    return f"torchscript:{path}"


def get_encoder(name: str, device: str | None = None) -> ImageEncoder:
    """The loaded encoder for `name` on `device` (loaded once per process and device, thread-safe).

    `device`: "cpu", "cuda" or "cuda:N"; None is the model's default (built-in models:
    `$LOOKALIKE_DEVICE`, else CUDA when available, else CPU; user TorchScript models: CPU).
    """
    check_model_name(name)
    if name == "none":
        raise BadRequest("this collection has model 'none': give records a precomputed '_vector'")
    options = {} if device is None else {"device": device}
    with _LOCK:
        if (name, device) not in _LOADED:
            if name.startswith("torchscript:"):
                from .torchscript import TorchScriptEncoder
                _LOADED[name, device] = TorchScriptEncoder(name.split(":", 1)[1], **options)
            else:
                _LOADED[name, device] = _FACTORIES[name](name, **options)
        return _LOADED[name, device]
