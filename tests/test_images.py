"""Preprocessing: every odd image a catalogue contains becomes the right RGB pixels."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from lookalike.errors import NotAnImage, TooLarge
from lookalike.models.images import fit_square, load_pixels, open_image


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    # A 40x20 image whose left half is red; EXIF says "rotate 90 CW to display" (orientation 6).
    im = Image.new("RGB", (40, 20), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    out = open_image(encode(im, "JPEG", exif=exif.tobytes(), quality=95))
    assert out.size == (20, 40)  # displayed upright: portrait
    top = np.asarray(out)[:10].reshape(-1, 3).mean(0)
    assert top[0] > 200 and top[2] < 60  # the red half is now on top


def test_alpha_is_flattened_on_white():
    im = Image.new("RGBA", (16, 16), (255, 0, 0, 0))
    px = np.asarray(open_image(encode(im, "PNG")))
    assert (px == 255).all()


def test_cmyk_greyscale_palette_become_rgb():
    for im, fmt in ((Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"),
                    (Image.new("L", (8, 8), 128), "PNG"),
                    (Image.new("RGB", (8, 8), (0, 200, 0)).convert("P"), "PNG")):
        out = open_image(encode(im, fmt))
        assert out.mode == "RGB" and out.size == (8, 8)
    red = np.asarray(open_image(encode(Image.new("CMYK", (8, 8), (0, 255, 255, 0)), "JPEG"))).mean((0, 1))
    assert red[0] > 200 and red[1] < 60


def test_palette_with_transparency_on_white():
    im = Image.new("P", (8, 8), 0)
    im.putpalette([0, 0, 0] + [10, 10, 10] * 255)
    out = open_image(encode(im, "PNG", transparency=0))
    assert (np.asarray(out) == 255).all()


def test_16_bit_png_is_scaled():
    arr = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    im = Image.fromarray(arr)
    assert im.mode == "I;16"
    out = np.asarray(open_image(encode(im, "PNG")))
    assert out.min() == 0 and out.max() == 255


def test_animated_gif_gives_first_frame():
    frames = [Image.new("RGB", (10, 10), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=50)
    px = np.asarray(open_image(data)).mean((0, 1))
    assert px[0] > 200 and px[2] < 50


def test_crop_and_pad_keep_aspect():
    im = Image.new("RGB", (400, 200), (255, 0, 0))
    im.paste((0, 0, 255), (0, 0, 100, 200))  # a blue band on the far left
    crop = fit_square(im, 100, mode="crop")
    assert crop.shape == (100, 100, 3) and crop[:, :, 2].mean() < 10  # band cropped away
    pad = fit_square(im, 100, mode="pad")
    assert pad.shape == (100, 100, 3)
    assert (pad[0] == 255).all()  # white padding above the image
    assert pad[50, 5, 2] > 200  # the band is kept


def test_jpeg_draft_decoding_matches_size():
    big = Image.new("RGB", (1024, 768), (10, 120, 200))
    px = load_pixels(encode(big, "JPEG"), 224)
    assert px.shape == (224, 224, 3) and abs(int(px[..., 2].mean()) - 200) < 8


@pytest.mark.parametrize("data,error,needle", [
    (b"", NotAnImage, "empty"),
    (b"this is a text file, not an image", NotAnImage, "not an image"),
])
def test_bad_bytes_are_named(data, error, needle):
    with pytest.raises(error, match=needle):
        open_image(data)


def test_truncated_image_is_refused():
    data = encode(Image.new("RGB", (300, 300), (1, 2, 3)), "JPEG")
    with pytest.raises(NotAnImage, match="corrupt or truncated"):
        open_image(data[: len(data) // 3])


def test_pixel_limit_refuses_bombs():
    data = encode(Image.new("L", (2000, 2000)), "PNG")
    with pytest.raises(TooLarge, match="exceeds the limit"):
        open_image(data, max_pixels=1_000_000)
