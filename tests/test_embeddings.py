"""Embedding variants of EfficientNet-Lite: the right activations, GeM and style features, quality."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import BadRequest
from lookalike.query.evaluate import score_rankings
from lookalike.models import get_encoder
from lookalike.models.efficientnet import (_MEAN, _STD, _STYLE_BLOCKS, GEM_P, STYLE_WEIGHT, _embedder_module,
                                           parse_variant, shipped_weights)
from lookalike.models.images import fit_square
from lookalike.models.onnx_backend import weights_key
from lookalike.models.registry import check_model_name
from lookalike.sample import COLORS, draw_item

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def net():
    from efficientnet_lite_pytorch import EfficientNet
    model = EfficientNet.from_name("efficientnet-lite0", num_classes=1000)
    model.load_state_dict(torch.load(shipped_weights("efficientnet-lite0"), map_location="cpu", weights_only=True))
    return model.eval()


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    """3 patterns x 4 colours x 2 shapes: 'same pattern' is the category."""
    out = []
    for p, pattern in enumerate(("stripes", "dots", "checks")):
        for c, color in enumerate(("red", "blue", "green", "black")):
            for s, shape in enumerate(("square", "circle")):
                out.append(draw_item(pattern, COLORS[color], seed=100 + p * 10 + c * 2 + s, size=224, shape=shape))
    return out


def pixels(images: list[Image.Image], size: int = 224) -> np.ndarray:
    return np.stack([fit_square(im, size) for im in images])


@pytest.mark.parametrize("name, expected", [
    ("efficientnet-lite0", ("efficientnet-lite0", "gap", False)),
    ("efficientnet-lite2-gem", ("efficientnet-lite2", "gem", False)),
    ("efficientnet-lite0-style", ("efficientnet-lite0", "gap", True)),
    ("efficientnet-lite1-gem-style", ("efficientnet-lite1", "gem", True)),
])
def test_variant_names(name, expected):
    assert parse_variant(name) == expected
    check_model_name(name)  # registered


@pytest.mark.parametrize("name", ["efficientnet-lite0-style-gem", "efficientnet-lite0-gem-gem",
                                  "efficientnet-lite9", "efficientnet-lite0-max"])
def test_bad_variant_names(name):
    with pytest.raises(BadRequest):
        parse_variant(name)
    with pytest.raises(BadRequest, match="unknown model"):
        check_model_name(name)


def test_encoder_keeps_relu6(net):
    """Lite models use ReLU6; replacing it (efficientnet's set_swish does) computes another network."""
    module = get_encoder("efficientnet-lite0")._module
    kinds = {type(m).__name__ for m in module.modules()}
    assert "ReLU6" in kinds and not kinds & {"Swish", "MemoryEfficientSwish"}
    # the ONNX export cache tells the two graphs apart even though their weights are equal
    swish = _embedder_module(type(net).from_name("efficientnet-lite0", num_classes=1000))
    swish.net.load_state_dict(net.state_dict())
    swish.net.set_swish(memory_efficient=False)
    assert weights_key(module, 224, "t") != weights_key(swish, 224, "t")


def test_labels_of_a_photo_are_right():
    skdata = pytest.importorskip("skimage.data")
    encoder = get_encoder("efficientnet-lite0")
    labels = encoder.embed(pixels([Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee())])).labels
    assert labels[0][0]["label"] in ("tabby", "tiger cat", "Egyptian cat")
    assert labels[1][0]["label"] == "espresso" and labels[1][0]["score"] > 0.5


def _reference(net, px: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Final feature map and the output of the style block, computed step by step."""
    with torch.inference_mode():
        x = (torch.from_numpy(px.astype(np.float32)).permute(0, 3, 1, 2) - _MEAN) / _STD
        x = net._swish(net._bn0(net._conv_stem(x)))
        style = None
        for idx, block in enumerate(net._blocks):
            x = block(x)
            if idx == _STYLE_BLOCKS["efficientnet-lite0"][0]:
                style = x.clone()
        return net._swish(net._bn1(net._conv_head(x))), style


def test_gem_and_style_vectors_match_their_definition(net, images):
    px = pixels(images[:4])
    fmap, block = _reference(net, px)
    gem = fmap.clamp(min=1e-6).pow(GEM_P).mean(dim=(2, 3)).pow(1 / GEM_P).numpy()
    gem /= np.linalg.norm(gem, axis=1, keepdims=True)
    got = get_encoder("efficientnet-lite0-gem").embed(px).vectors
    assert got.shape == (4, 1280) and np.allclose(got, gem, atol=2e-4)

    style_enc = get_encoder("efficientnet-lite0-style")
    assert style_enc.dim == 1280 + 2 * 112
    got = style_enc.embed(px).vectors
    content = fmap.mean(dim=(2, 3)).numpy()
    flat = block.flatten(2)
    stats = torch.cat([flat.mean(2), flat.std(2)], dim=1).numpy()
    expected = np.hstack([content / np.linalg.norm(content, axis=1, keepdims=True),
                          STYLE_WEIGHT * stats / np.linalg.norm(stats, axis=1, keepdims=True)])
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(got, expected, atol=2e-4)
    # labels do not depend on the variant: they come from the average-pooled features
    plain = get_encoder("efficientnet-lite0").embed(px).labels
    assert [x[0]["label"] for x in style_enc.embed(px).labels] == [x[0]["label"] for x in plain]


def precision_at(vectors: np.ndarray, cats: list[str], k: int) -> float:
    sims = vectors @ vectors.T
    np.fill_diagonal(sims, -np.inf)
    ids = [str(i) for i in range(len(cats))]
    rankings = [[ids[j] for j in np.argsort(-row)[:k]] for row in sims]
    truths = [{ids[j]: 1.0 for j in range(len(cats)) if cats[j] == c and j != i} for i, c in enumerate(cats)]
    return score_rankings(rankings, truths, k)[f"precision@{k}"]


def test_style_variant_finds_same_pattern_better(images):
    cats = [p for p in ("stripes", "dots", "checks") for _ in range(8)]
    px = pixels(images)
    plain = precision_at(get_encoder("efficientnet-lite0").embed(px).vectors, cats, 5)
    style = precision_at(get_encoder("efficientnet-lite0-style").embed(px).vectors, cats, 5)
    assert plain > 0.6  # far above chance (7 of 23)
    assert style >= plain
