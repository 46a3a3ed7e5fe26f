"""Text search: sentence vectors of text_fields + labels, hybrid ranking, a CLIP-like text tower."""
from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

import lookalike
from lookalike.errors import BadRequest
from lookalike.models.text import get_text_encoder, record_text
from lookalike.sample import COLORS, draw_item

torch = pytest.importorskip("torch")

TITLES = {
    "boots": "brown leather hiking boots",
    "dress": "red silk evening dress",
    "mug": "ceramic coffee mug with a handle",
    "lamp": "brass desk lamp for reading",
    "bike": "mountain bicycle with disc brakes",
}


@pytest.fixture(scope="module")
def encoder():
    return get_text_encoder()


def b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return base64.b64encode(buf.getvalue()).decode()


def test_record_text_reads_fields_and_labels():
    doc = {"title": "Red shirt", "attrs": {"material": "cotton", "sizes": ["S", "M"]}, "on_sale": True, "n": 3}
    computed = {"_labels": [{"label": "jersey", "score": 0.8}, {"label": "sweatshirt", "score": 0.1}]}
    text = record_text(doc, computed, ["title", "attrs.material", "attrs.sizes", "on_sale", "missing", "n"])
    assert text == "Red shirt. cotton. S. M. 3. jersey, sweatshirt"
    assert record_text({}, {}, ["title"]) == ""


def test_sentence_vectors_are_semantic(encoder):
    v = encoder.embed(["red silk dress", "crimson evening gown", "hash index of a database", ""])
    assert v.shape == (4, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v[:3], axis=1), 1, atol=1e-5)
    assert not v[3].any()  # an empty text is a zero vector: it matches nothing
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3


# -- text vectors in a collection ---------------------------------------------------------------
@pytest.fixture
def shop(db):
    """Precomputed visual vectors (model none) so only the text side costs time."""
    col = db.collection("shop", create=True, model="none", dim=4, text_fields=["title", "brand"])
    rng = np.random.default_rng(0)
    results = col.upsert([{"_id": rid, "_vector": rng.normal(size=4).tolist(), "title": title,
                           "kind": "wear" if rid in ("boots", "dress") else "home"} for rid, title in TITLES.items()])
    assert all(r["status"] == "inserted" for r in results)
    return col


def top(result: dict) -> list[str]:
    return [h["_id"] for h in result["hits"]]


@pytest.mark.parametrize("query, best", [("footwear for trekking", "boots"), ("a gown for a party", "dress"),
                                         ("cup for tea", "mug"), ("cycling", "bike"), ("light", "lamp")])
def test_text_query_finds_by_meaning(shop, query, best):
    assert top(shop.search({"text": query}, k=5))[0] == best


def test_text_query_scores_are_cosines_and_honour_filters(shop, encoder):
    hits = shop.search({"text": "cup for tea"}, k=5)["hits"]
    q = encoder.embed(["cup for tea"])[0]
    for hit in hits:
        expected = encoder.embed([record_text({"title": TITLES[hit["_id"]]}, {}, ["title", "brand"])])[0] @ q
        assert hit["_score"] == pytest.approx(float(expected), abs=1e-4)
    assert set(top(shop.search({"text": "cup for tea"}, k=5, filter={"kind": "wear"}))) == {"dress", "boots"}


def test_text_vectors_follow_updates_deletes_and_reopen(shop, data_dir):
    assert shop.upsert([{"_id": "mug", "title": "stainless steel kettle"}])[0]["status"] == "updated"
    assert top(shop.search({"text": "boil water for tea"}, k=1)) == ["mug"]
    assert shop.delete(["lamp"]) == 1
    assert "lamp" not in top(shop.search({"text": "brass desk lamp for reading"}, k=5))
    with lookalike.connect(data_dir, read_only=True) as again:  # a second process-like opening reads them from disk
        col = again.collection("shop")
        assert top(col.search({"text": "boil water"}, k=1)) == ["mug"]
        assert "lamp" not in top(col.search({"text": "brass desk lamp"}, k=5))
        assert col.count() == 4


def test_records_written_before_text_fields_are_no_text_hits(db):
    col = db.collection("late", create=True, model="none", dim=2)
    col.upsert([{"_id": "old", "_vector": [1, 0], "title": "red dress"}])
    db.collection("late", create=True, text_fields=["title"])
    col = db.collection("late")
    col.upsert([{"_id": "new", "_vector": [0, 1], "title": "blue jeans"}])
    assert top(col.search({"text": "red dress"}, k=5)) == ["new"]  # "old" has no text vector
    # a hybrid query still ranks it by looks
    assert "old" in top(col.search({"vector": [1, 0]}, k=5, text="red dress", hybrid=0.5))


def test_reingest_after_text_fields_change_embeds_the_text(db):
    col = db.collection("later", create=True, model="none", dim=2)
    rec = {"_id": "old", "_vector": [1, 0], "title": "red dress"}
    assert col.upsert([rec])[0]["status"] == "inserted"
    assert col.upsert([rec])[0]["status"] == "unchanged"
    db.collection("later", create=True, text_fields=["title"])
    col = db.collection("later")
    assert col.upsert([rec])[0]["status"] == "updated"  # same record, but now it has text to embed
    assert top(col.search({"text": "red dress"}, k=5)) == ["old"]
    assert col.upsert([rec])[0]["status"] == "unchanged"
    assert col.get("old")["title"] == "red dress"


# -- hybrid --------------------------------------------------------------------------------------
@pytest.fixture
def hybrid_col(db):
    """Visual and text rankings that disagree: looks say a, b, c; words say c, b, a."""
    col = db.collection("hy", create=True, model="none", dim=2, text_fields=["title"])
    col.upsert([{"_id": "q", "_vector": [1, 0], "title": "wooden chair"},
                {"_id": "a", "_vector": [0.95, 0.31], "title": "nuclear physics lecture notes"},
                {"_id": "b", "_vector": [0.6, 0.8], "title": "kitchen table"},
                {"_id": "c", "_vector": [0.1, 0.99], "title": "wooden chair with armrests"}])
    return col


def test_hybrid_weight_moves_from_looks_to_words(hybrid_col, encoder):
    looks = top(hybrid_col.search({"id": "q"}, k=3))
    assert looks == ["a", "b", "c"]
    assert top(hybrid_col.search({"id": "q"}, k=3, hybrid=0)) == looks
    assert top(hybrid_col.search({"id": "q"}, k=3, hybrid=1))[0] == "c"
    # score = (1 - h) * visual + h * text, exactly
    h = 0.3
    hits = hybrid_col.search({"id": "q"}, k=3, hybrid=h)["hits"]
    vis = {"a": 0.95 / np.hypot(0.95, 0.31), "b": 0.6, "c": 0.1 / np.hypot(0.1, 0.99)}
    titles = {"a": "nuclear physics lecture notes", "b": "kitchen table", "c": "wooden chair with armrests"}
    tq = encoder.embed(["wooden chair"])[0]  # the anchor's own text
    for hit in hits:
        text = float(encoder.embed([titles[hit["_id"]]])[0] @ tq)
        assert hit["_score"] == pytest.approx((1 - h) * vis[hit["_id"]] + h * text, abs=1e-4)
    # explicit text instead of the anchor's own; default weight 0.5
    mixed = hybrid_col.search({"id": "q"}, k=3, text="physics")["hits"]
    assert mixed[0]["_id"] == "a"
    t = float(encoder.embed(["nuclear physics lecture notes"])[0] @ encoder.embed(["physics"])[0])
    assert mixed[0]["_score"] == pytest.approx(0.5 * vis["a"] + 0.5 * t, abs=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    ({"query": {"id": "q"}, "hybrid": 1.5}, "'hybrid' must be a number from 0"),
    ({"query": {"id": "q"}, "hybrid": True}, "'hybrid' must be a number"),
    ({"query": {"text": ""}}, "'query.text' must be a non-empty string"),
    ({"query": {"text": "chair"}, "text": "table"}, "give the text once"),
    ({"query": {"id": "q"}, "text": 3}, "'text' must be a non-empty string"),
    ({"query": {"vector": [1, 0]}, "hybrid": 0.5}, "query by 'id' or 'ids'"),
    ({"query": {"text": "x" * 3000}}, "longer than"),
])
def test_bad_text_parameters(hybrid_col, kwargs, message):
    query = kwargs.pop("query")
    with pytest.raises(BadRequest, match=message):
        hybrid_col.search(query, **kwargs)


def test_text_needs_text_fields_or_a_text_tower(db):
    col = db.collection("plain", create=True, model="none", dim=2)
    col.upsert([{"_id": "a", "_vector": [1, 0], "title": "chair"}])
    with pytest.raises(BadRequest, match="set its 'text_fields'"):
        col.search({"text": "chair"})
    with pytest.raises(BadRequest, match="needs text vectors"):
        col.search({"id": "a"}, text="chair")
    with pytest.raises(BadRequest, match="set 'text_fields'"):
        col.search({"id": "a"}, hybrid=0.2)


def test_ingest_embeds_labels_with_text_fields(db):
    """Images get labels from the classifier; the text vector covers title and label names."""
    col = db.collection("img", create=True, text_fields=["title"])
    col.upsert([{"_id": f"{p}-{c}", "_base64": b64(draw_item(p, COLORS[c], seed=i, size=160)), "title": f"{c} {p}"}
                for i, (p, c) in enumerate([("stripes", "red"), ("dots", "blue")])])
    doc = col.get("stripes-red")
    assert doc["_labels"]
    expected = get_text_encoder().embed([record_text(doc, doc, ["title"])])[0]
    assert "red stripes. " + doc["_labels"][0]["label"] in record_text(doc, doc, ["title"])
    stored = col._store.text_vectors(["stripes-red"])
    assert stored.shape == (1, 384) and np.allclose(stored[0], expected, atol=1e-5)
    assert top(col.search({"text": "blue dots"}, k=1)) == ["dots-blue"]


def test_http_search_takes_text_and_hybrid(db, hybrid_col):
    from fastapi.testclient import TestClient

    from lookalike.server.app import create_app
    with TestClient(create_app(db)) as client:
        r = client.post("/v1/collections/hy/search", json={"query": {"id": "q"}, "hybrid": 1, "k": 1})
        assert r.status_code == 200 and r.json()["hits"][0]["_id"] == "c"
        r = client.post("/v1/collections/hy/search", json={"query": {"text": "physics"}, "k": 1})
        assert r.status_code == 200 and r.json()["hits"][0]["_id"] == "a"
        r = client.post("/v1/collections/hy/search", json={"query": {"id": "q"}, "hybrid": 2})
        assert r.status_code == 422


# -- a CLIP-like model with a text tower ------------------------------------------------------------
VOCAB = ["[PAD]", "[UNK]", "a", "photo", "of", "red", "green", "blue", "thing"]
#: Colour-opponent directions: an image's mean colour minus its grey level, and the word for it.
DIRECTIONS = {"red": [1.0, -0.5, -0.5], "green": [-0.5, 1.0, -0.5], "blue": [-0.5, -0.5, 1.0]}


class ImageTower(torch.nn.Module):
    """1x1 conv that undoes CLIP's normalisation and removes the grey level, then average pooling:
    the image's mean chroma, a direction in colour space."""

    def __init__(self) -> None:
        super().__init__()
        from lookalike.models.torchscript import _CLIP_MEAN, _CLIP_STD
        self.conv = torch.nn.Conv2d(3, 3, 1, bias=True)
        center = torch.eye(3) - 1 / 3
        with torch.no_grad():
            self.conv.weight.copy_((center @ torch.diag(torch.tensor(_CLIP_STD))).view(3, 3, 1, 1))
            self.conv.bias.copy_(center @ torch.tensor(_CLIP_MEAN))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))


class TextTower(torch.nn.Module):
    """Mean of token embeddings over non-padding tokens; colour words point at their chroma."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = torch.nn.Embedding(len(VOCAB), 3, padding_idx=0)
        with torch.no_grad():
            self.emb.weight.zero_()
            for word, direction in DIRECTIONS.items():
                self.emb.weight[VOCAB.index(word)] = torch.tensor(direction)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != 0).float().unsqueeze(-1)
        return (self.emb(ids) * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def colored_thing(shape: str, color: tuple, seed: int, size: int = 96) -> Image.Image:
    """An object of one colour on a light grey, slightly noisy background."""
    from PIL import ImageDraw
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), (235, 235, 235))
    d = ImageDraw.Draw(image)
    x, y = rng.integers(10, 30, 2)
    box = [int(x), int(y), int(x) + size // 2, int(y) + size // 2]
    {"square": d.rectangle, "disc": d.ellipse, "bar": lambda b, fill: d.rectangle([b[0], b[1], b[2], b[1] + 12], fill=fill)
     }[shape](box, fill=color)
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, 5, (size, size, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory):
    from tokenizers import Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import WordLevel
    folder = tmp_path_factory.mktemp("clip")
    torch.jit.script(ImageTower()).save(str(folder / "tiny.pt"))
    torch.jit.script(TextTower()).save(str(folder / "tiny.text.pt"))
    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(VOCAB)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tiny.tokenizer.json"))
    (folder / "tiny.json").write_text(json.dumps({"context_length": 8, "input_size": 64}))
    return folder / "tiny.pt"


def test_clip_text_tower_searches_pixels(db, clip_model):
    col = db.collection("clip", create=True, model=f"torchscript:{clip_model}")
    assert col.settings.dim == 3
    records = []
    for i, color in enumerate(["red", "green", "blue"] * 3):
        shape = ("square", "disc", "bar")[i // 3]
        records.append({"_id": f"{shape}-{color}", "_base64": b64(colored_thing(shape, COLORS[color], i))})
    assert all(r["status"] == "inserted" for r in col.upsert(records))
    for color in ("red", "green", "blue"):
        hits = top(col.search({"text": f"a photo of a {color.upper()} thing"}, k=3))
        assert all(h.endswith("-" + color) for h in hits), (color, hits)
    # the text tower's vector is the query: a photo of the colour itself ranks the same way
    tower = col.encoder
    assert tower.text_tower.tokens(["a red thing"]).tolist() == [[2, 5, 8, 0, 0, 0, 0, 0]]
    assert tower.text_tower.tokens(["red " * 20])[0, -1] == 5  # truncated to the context length
    # without text_fields a text query is purely visual; hybrid cannot mix in missing text vectors
    with pytest.raises(BadRequest, match="set 'text_fields'"):
        col.search({"id": "disc-red"}, hybrid=0.5)


def test_clip_text_tower_with_text_fields_mixes_both(db, clip_model):
    col = db.collection("clipt", create=True, model=f"torchscript:{clip_model}", text_fields=["title"])
    col.upsert([{"_id": "r", "_base64": b64(colored_thing("disc", COLORS["red"], 1)), "title": "tomato"},
                {"_id": "b", "_base64": b64(colored_thing("disc", COLORS["blue"], 2)), "title": "red wine"}])
    assert top(col.search({"text": "red"}, k=2, hybrid=0)) == ["r", "b"]     # pixels
    assert top(col.search({"text": "red wine"}, k=2, hybrid=1)) == ["b", "r"]  # words


def test_text_tower_problems_are_clear(tmp_path, clip_model):
    from lookalike.models.torchscript import TorchScriptEncoder
    folder = tmp_path / "m"
    folder.mkdir()
    torch.jit.script(ImageTower()).save(str(folder / "m.pt"))
    torch.jit.script(TextTower()).save(str(folder / "m.text.pt"))
    with pytest.raises(BadRequest, match="needs a tokenizer"):
        TorchScriptEncoder(str(folder / "m.pt"))
    (folder / "m.tokenizer.json").write_text("not json")
    with pytest.raises(BadRequest, match="cannot load tokenizer"):
        TorchScriptEncoder(str(folder / "m.pt"))
    (folder / "m.text.pt").unlink()
    plain = TorchScriptEncoder(str(folder / "m.pt"))
    with pytest.raises(BadRequest, match="no text tower"):
        plain.embed_text(["red"])


def test_cli_text_and_hybrid(data_dir, hybrid_col, capsys):
    from lookalike.cli import main
    assert main(["search", "-c", "hy", "--text", "physics", "-k", "1", "--json", "--data", str(data_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["_id"] == "a"
    assert main(["search", "-c", "hy", "--id", "q", "--hybrid", "1", "-k", "1", "--json", "--data", str(data_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["_id"] == "c"
    assert main(["search", "-c", "hy", "--id", "q", "--with-text", "kitchen", "--hybrid", "0.9", "-k", "1", "--json",
                 "--data", str(data_dir)]) == 0
    assert json.loads(capsys.readouterr().out)["hits"][0]["_id"] == "b"
    assert main(["search", "-c", "hy", "--id", "q", "--hybrid", "7", "--data", str(data_dir)]) == 2
    assert "'hybrid' must be a number" in capsys.readouterr().err


# -- compound similarity (image + text + one-hot attributes) --------------------------------------------
def test_compound_setting_mixes_looks_words_and_attributes(db, encoder):
    spec = {"image": 1.0, "text": 0.5, "attributes": {"fields": ["category", "brand.name"], "weight": 1.0}}
    col = db.collection("cmp", create=True, model="none", dim=2, text_fields=["title"], compound=spec)
    col.upsert([{"_id": "q", "_vector": [1, 0], "title": "wooden chair", "category": "furniture", "brand": {"name": "A"}},
                {"_id": "a", "_vector": [0.95, 0.31], "title": "toy car", "category": "toys", "brand": {"name": "B"}},
                {"_id": "b", "_vector": [0.6, 0.8], "title": "oak chair", "category": "furniture", "brand": {"name": "B"}},
                {"_id": "c", "_vector": [0.2, 0.98], "title": "oak stool", "category": "furniture", "brand": {"name": "A"}}])
    vis = {"a": 0.95 / np.hypot(0.95, 0.31), "b": 0.6, "c": 0.2 / np.hypot(0.2, 0.98)}
    titles = {"a": "toy car", "b": "oak chair", "c": "oak stool"}
    matches = {"a": 0, "b": 1, "c": 2}  # of the 2 attribute fields, equal to q's
    tq = encoder.embed(["wooden chair"])[0]
    hits = col.search({"id": "q"}, k=3)["hits"]
    for hit in hits:
        rid = hit["_id"]
        text = float(encoder.embed([titles[rid]])[0] @ tq)
        expected = (1.0 * vis[rid] + 0.5 * text + 1.0 * matches[rid] / 2) / 2.5
        assert hit["_score"] == pytest.approx(expected, abs=1e-4), rid
    assert [h["_id"] for h in hits][0] != "a"  # the visually closest has nothing else in common
    # explicit hybrid parameters override the setting: pure looks again
    assert top(col.search({"id": "q"}, k=3, hybrid=0)) == ["a", "b", "c"]
    # the setting is stored and validated
    assert db.collection("cmp").settings.compound == {"image": 1.0, "text": 0.5, **{"attributes": spec["attributes"]}}


@pytest.mark.parametrize("compound, message", [
    ("yes", "'compound' must be an object"),
    ({"image": 1, "colour": 2}, "unknown 'compound' part"),
    ({"image": -1}, "'compound.image' must be a weight"),
    ({"attributes": {"fields": []}}, "non-empty list of field names"),
    ({"attributes": {"fields": ["a"], "weight": "x"}}, "'compound.attributes.weight'"),
    ({"image": 0, "text": 0}, "at least one positive weight"),
])
def test_bad_compound_settings(db, compound, message):
    with pytest.raises(BadRequest, match=message):
        db.collection("bad", create=True, model="none", dim=2, compound=compound)
