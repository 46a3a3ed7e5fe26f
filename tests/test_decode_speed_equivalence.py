"""The decode stage's cheaper code gives what the code before it gave.

`bench/decode_stage.py` keeps the implementations of dominant colours, the near-duplicate
fingerprint, the thumbnail and fit_square from before they were made cheaper (`old_*`); these
tests hold the new ones to them on varied images: fingerprints bit for bit (stored ones must
stay comparable), except a sign that was rounding noise around zero in the reference itself;
colours within what a person would not notice; the model's pixels byte for byte.
"""
from __future__ import annotations

import base64
import importlib.util
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from lookalike.ingest.decode import THUMBNAIL_SIZE, make_thumbnail
from lookalike.models.colors import dominant_colors, hex_to_rgb, srgb_to_lab
from lookalike.models.images import fit_square, open_image
from lookalike.models import fingerprint as fp
from lookalike.query import duplicates as dup
from lookalike.query.colors import ciede2000
from lookalike.sample import COLORS, PATTERNS, SHAPES, draw_item
from lookalike.testing.photos import photo_like


@pytest.fixture(scope="module")
def ref():
    """bench/decode_stage.py, whose `old_*` functions are the reference implementations."""
    path = Path(__file__).resolve().parents[1] / "bench" / "decode_stage.py"
    spec = importlib.util.spec_from_file_location("decode_stage_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def jpeg_decoded(image: Image.Image) -> Image.Image:
    """As ingest sees a JPEG: encoded at q90, decoded at the model's draft size."""
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return open_image(buf.getvalue(), max_pixels=10**8, draft_size=224)


def natural_images() -> list[Image.Image]:
    """Drawn products, photo-like images, framed, greyscale, non-square, tiny, large, other modes."""
    colours = list(COLORS.values())
    out = []
    for i in range(15):
        pattern, colour, shape = PATTERNS[i % 5], colours[i % 6], SHAPES[i % 3]
        out += [draw_item(pattern, colour, seed=i, size=200 + 9 * i, shape=shape),
                photo_like(i, 160 + 11 * i),
                ImageOps.expand(draw_item(pattern, colour, seed=i, size=180), border=12 + i, fill=colours[(i + 1) % 6])]
    for i in range(5):
        out += [jpeg_decoded(photo_like(50 + i, 512)),
                jpeg_decoded(draw_item(PATTERNS[i], colours[i], seed=i, size=512)),
                photo_like(60 + i, 300).convert("L").convert("RGB"), photo_like(70 + i, 240).convert("L"),
                draw_item(PATTERNS[i], colours[i], seed=i, size=256).resize((320, 140)),
                photo_like(80 + i, 256).resize((150, 330)), photo_like(90 + i, 64).resize((9 + i, 7 + 2 * i))]
    out += [photo_like(99, 720).resize((700, 600)), photo_like(98, 2).resize((1, 1)),
            ImageOps.expand(photo_like(97, 400), border=140, fill=(255, 255, 255))]
    return out


def flat_shapes() -> list[Image.Image]:
    """Flat colours only: plain images and centred rectangles, the worst case for signs that are
    rounding noise (a symmetric window's odd coefficients are zero up to rounding)."""
    out = [Image.new("RGB", (100 + 7 * i, 120), (8 * i, 100, 200)) for i in range(4)]
    for i in range(6):
        image = Image.new("RGB", (200, 200), (255, 255, 255))
        ImageDraw.Draw(image).rectangle([50 - 3 * i, 50 - 3 * i, 149 + 3 * i, 149 + 3 * i], fill=(30 * i, 0, 90))
        out.append(image)
    return out


def hash_bits(doc: dict) -> np.ndarray:
    return np.unpackbits(np.frombuffer(base64.b64decode(doc[fp.FINGERPRINT]), np.uint8)).reshape(fp.N_HASHES, fp.BITS)


def reference_coefficients(ref, image: Image.Image) -> np.ndarray:
    """(N_HASHES, 16, 16) DCT coefficients behind each hash, computed window by window as before."""
    canvas = fp._canvas(image)
    trimmed = ref.old_trim_border(image)
    canon = canvas if trimmed is None else fp._canvas(trimmed)
    centre = fp.boxes()[fp.CENTRE - 1]
    parts = [(canvas, fp.WHOLE + fp.boxes() + fp.boxes(fp.CROP_WINDOW, fp.CROP_GRID)), (canon, fp.WHOLE)]
    parts += [(canon.rotate(angle, Image.Resampling.BILINEAR), [centre]) for angle in fp.ROTATIONS[1:]]
    parts.append((canvas, fp.boxes(fp.CROP_WINDOW / fp.CROP_SCALE, fp.COPY_GRID)))
    out = []
    for source, boxes in parts:
        pixels = np.asarray(source, dtype=np.float64)
        for x0, y0, x1, y1 in boxes:
            op = fp._hash_operator(x1 - x0)
            out.append(op @ pixels[y0:y1, x0:x1] @ op.T)
    return np.array(out)


def test_fingerprints_equal_the_reference_bit_for_bit(ref):
    for n, image in enumerate(natural_images()):
        new, old = fp.fingerprint(image), ref.old_fingerprint(image)
        assert new[fp.PIXEL_HASH] == old[fp.PIXEL_HASH], n
        diff = hash_bits(new) != hash_bits(old)
        assert not diff.any(), (n, image.size, image.mode, np.flatnonzero(diff.any(1)).tolist())


def test_fingerprint_differs_only_where_the_reference_sign_was_rounding_noise(ref):
    images = natural_images() + flat_shapes()
    flipped = total = 0
    for n, image in enumerate(images):
        new, old = hash_bits(fp.fingerprint(image)), hash_bits(ref.old_fingerprint(image))
        total += new.size
        hashes, bits = np.nonzero(new != old)
        if not len(hashes):
            continue
        flipped += len(hashes)
        coef = reference_coefficients(ref, image).reshape(fp.N_HASHES, fp.BITS)
        noise = 1e-9 * np.abs(coef).max(axis=1)
        assert (np.abs(coef[hashes, bits]) <= noise[hashes]).all(), (n, hashes, bits)
    assert flipped / total < 1e-3, (flipped, total)


def test_query_hashes_and_crop_refinement_equal_the_reference(ref, monkeypatch):
    """`match` hashes its query with the same dct_bits: its hashes and refined crop scores too."""
    images = [photo_like(3, 300), draw_item("checks", COLORS["green"], seed=4, size=256),
              ImageOps.expand(draw_item("rings", COLORS["blue"], seed=5, size=200), border=30, fill=(255, 255, 255)),
              photo_like(6, 400).crop((40, 60, 300, 320))]
    stored = np.stack([fp.decode_fingerprint(ref.old_fingerprint(image)[fp.FINGERPRINT]) for image in images])
    new = [fp.query_hashes(image) for image in images]
    refined = [dup.refine_crops(stored, q) for q in new]
    monkeypatch.setattr(fp, "dct_bits", ref.old_dct_bits)
    monkeypatch.setattr(dup, "dct_bits", ref.old_dct_bits)
    for image, got, got_refined in zip(images, new, refined):
        want = fp.query_hashes(image)
        for part in ("plain", "rotated", "aligned", "crop"):
            assert np.array_equal(getattr(got, part), getattr(want, part)), part
        assert np.array_equal(got_refined, dup.refine_crops(stored, want))


def test_rotated_window_equals_a_crop_of_the_whole_rotation():
    box = fp.boxes()[fp.CENTRE - 1]
    for i in range(6):
        canvas = fp._canvas(photo_like(i, 200) if i % 2 else draw_item("checks", COLORS["red"], seed=i))
        for angle in (*fp.ROTATIONS[1:], 33.3, -171.0):
            whole = np.asarray(canvas.rotate(angle, Image.Resampling.BILINEAR))[box[1]:box[3], box[0]:box[2]]
            assert np.array_equal(np.asarray(fp._rotated_window(canvas, angle, box)), whole), (i, angle)


def test_trim_border_finds_the_same_frame(ref):
    inner = draw_item("dots", COLORS["blue"], seed=3, size=120)
    cases = [ImageOps.expand(inner, border=20, fill=fill) for fill in
             [(255, 255, 255), (0, 0, 0), (10, 250, 24), (128, 128, 128)]]
    for offset in (24, 25, -24, -25):  # content just inside and just outside the tolerance of a grey frame
        image = Image.new("RGB", (90, 80), (128, 128, 128))
        image.paste(Image.new("RGB", (30, 20), (128 + offset, 128, 128)), (30, 30))
        cases.append(image)
    cases += [ImageOps.expand(inner.resize((500, 400)), border=60, fill=(250, 250, 250)),  # reduced by 2 first
              ImageOps.expand(inner, border=15, fill=(255, 255, 255)).convert("L"), inner, Image.new("RGB", (5, 5))]
    for n, image in enumerate(cases):
        want = ref.old_trim_border(image)
        for got in (fp.trim_border(image), fp.trim_border(image, data=image.tobytes())):
            assert (got is None) == (want is None), n
            if want is not None:
                assert got.size == want.size and got.tobytes() == want.tobytes(), n
    assert fp.trim_border(cases[0]) is not None and fp.trim_border(cases[-2]) is None  # the cases test both ways


def test_dominant_colours_match_the_reference_within_what_people_see(ref):
    images = natural_images()[:45] + flat_shapes()
    images += [Image.new("RGB", (1, 1), (3, 200, 90)), Image.new("L", (30, 20), 77),
               Image.new("RGB", (40, 40), (0, 0, 0)),
               draw_item("stripes", COLORS["green"], seed=2).convert("RGBA")]
    identical = 0
    for n, image in enumerate(images):
        new, old = dominant_colors(image), ref.old_dominant_colors(image)
        identical += new == old
        weights_old = np.array([c["weight"] for c in old])
        weights_new = np.array([c["weight"] for c in new])
        assert abs(weights_new.sum() - 1) < 1e-3 and list(weights_new) == sorted(weights_new, reverse=True)
        lab_old = srgb_to_lab(np.array([hex_to_rgb(c["color"]) for c in old], dtype=np.float64))
        lab_new = srgb_to_lab(np.array([hex_to_rgb(c["color"]) for c in new], dtype=np.float64))
        for j in np.flatnonzero(weights_old >= 0.1):  # every colour of a tenth of the image or more
            delta = ciede2000(lab_old[j][None], lab_new)
            best = int(delta.argmin())
            assert delta[best] < 3.0 and abs(weights_new[best] - weights_old[j]) <= 0.02, (n, old, new)
    assert identical >= 0.9 * len(images), identical


def test_thumbnail_keeps_its_size_and_looks_the_same(ref):
    """Bilinear instead of bicubic moves pixels about as much as JPEG at quality 70 itself does
    (less on photos, up to 1.3x on sharp line drawings squeezed 2.5x, where bilinear is a little
    softer), and the thumbnail's error against exact bicubic pixels grows by at most that much."""
    def pixels(data: bytes) -> np.ndarray:
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)

    images = [jpeg_decoded(photo_like(i, 512)) for i in range(3)]
    images += [draw_item(pattern, COLORS["red"], seed=1, size=300).resize((300, 170)) for pattern in PATTERNS]
    images += [jpeg_decoded(draw_item("zigzag", COLORS["black"], seed=2, size=512)).resize((130, 400)),
               photo_like(5, 120)]
    for n, image in enumerate(images):
        new, old = pixels(make_thumbnail(image)), pixels(ref.old_make_thumbnail(image))
        assert new.shape == old.shape and max(new.shape[:2]) == min(THUMBNAIL_SIZE, max(image.size)), n
        exact = image.copy()
        exact.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.BICUBIC)
        exact = np.asarray(exact, dtype=np.int16)
        jpeg_error, new_error = np.abs(old - exact).mean(), np.abs(new - exact).mean()
        assert np.abs(new - old).mean() < 1.5 * max(jpeg_error, 1.0) and new_error <= 1.5 * jpeg_error + 0.5, n
        if n < 3:  # photos
            assert np.abs(new - old).mean() < 0.5 * jpeg_error, n


def test_fit_square_gives_the_model_the_same_bytes(ref):
    images = [jpeg_decoded(photo_like(1, 512)), photo_like(2, 224), photo_like(3, 100),
              draw_item("rings", COLORS["orange"], seed=4, size=300).resize((300, 180)),
              draw_item("dots", COLORS["purple"], seed=5, size=256).resize((90, 410))]
    for image in images:
        for mode in ("pad", "crop"):
            for size in (224, 240):
                new, old = fit_square(image, size, mode=mode), ref.old_fit_square(image, size, mode=mode)
                assert new.shape == old.shape == (size, size, 3) and new.dtype == np.uint8
                assert np.array_equal(new, old), (image.size, mode, size)
