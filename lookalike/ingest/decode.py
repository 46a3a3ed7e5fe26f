"""Decode one image for ingest: the model's pixels plus the computed fields, in a thread or a process.

`decode_image` is a pure function of the image bytes, so the ingest pipeline can run it in
its pool of threads (Pillow releases the GIL while decoding and resizing) or in a pool of
worker processes (`decode="processes"`: bytes go in, uint8 pixels, colours, fingerprint and
thumbnail come out; uint8 HxWx3 costs a quarter of float32 to pickle). Errors raised in a
worker (NotAnImage, TooLarge, OSError...) pickle back unchanged, so one bad record gives the
same per-record error in both modes.
"""
from __future__ import annotations

import io
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ..errors import BadRequest
from ..models.colors import dominant_colors
from ..models.fingerprint import fingerprint
from ..models.keypoints import keypoint_fields
from ..models.images import decoded, device_pixels, fit_square

DECODE_MODES = ("threads", "processes")
#: The Python API and the server decode in threads; `lookalike ingest` in processes (CLI_DEFAULT_DECODE).
#: Side by side in bench/ingest.py (2-core machine, 512-px JPEGs, tables in bench/README.md): threads
#: lead slightly on a quiet machine (111.6 vs 104.3 img/s: processes spend ~1 ms per image pickling);
#: under load processes led by 1.1-2.4x in runs with a costlier decode stage (decode threads share the
#: GIL with the pipeline's own Python work). Processes are the CLI default for their scaling with more
#: cores and under load. The library default stays threads:
#: workers are spawned, and spawning re-runs the caller's `__main__` module, which breaks a script that
#: calls `upsert` at top level without an `if __name__ == "__main__":` guard; a server's small upserts
#: gain nothing either. LOOKALIKE_DECODE=processes (or decode=...) opts in.
DEFAULT_DECODE = "threads"
CLI_DEFAULT_DECODE = "processes"
RESIZE_MODES = ("auto", "host", "device")
#: Longest side and JPEG quality of the thumbnail kept per record (a few KB) for the web page.
THUMBNAIL_SIZE, THUMBNAIL_QUALITY = 160, 70


@dataclass
class Decoded:
    """What decoding one image gives the pipeline."""

    pixels: np.ndarray  # uint8: size x size x 3 (host resize), or the draft-decoded image (device resize)
    computed: dict  # _colors and the near-duplicate fingerprint
    thumbnail: bytes | None = None


def decode_image(data: bytes, *, size: int, fit: str, max_pixels: int, thumbnail: bool,
                 host_resize: bool = True) -> Decoded:
    """Decode `data` (JPEG at draft size), compute colours and fingerprint, resize for the model.

    With `host_resize=False` the pixels stay at (about) draft size, for encoders that resize on
    their own device (see models/gpu_preprocess.py).
    """
    with decoded(data, max_pixels=max_pixels, draft_size=size) as image:  # holds its pixels of the budget
        computed = {"_colors": dominant_colors(image), **fingerprint(image),  # models/fingerprint.py
                    **keypoint_fields(image), "_image": image_info(data)}  # local features for copy verification
        thumb = make_thumbnail(image) if thumbnail else None
        pixels = fit_square(image, size, mode=fit) if host_resize else device_pixels(image, size, mode=fit)
    return Decoded(pixels, computed, thumb)


def image_info(data: bytes) -> dict:
    """`{"width", "height", "bytes", "format"}` of the original file (its header: JPEG draft decoding
    shrinks the decoded image), for picking which of a set of copies to keep (query/cleanup.py)."""
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        return {"width": int(width), "height": int(height), "bytes": len(data), "format": im.format}


def make_thumbnail(image: Image.Image, size: int = THUMBNAIL_SIZE, quality: int = THUMBNAIL_QUALITY) -> bytes:
    """A small JPEG of a decoded RGB image (longest side `size`), for grids in the web page.

    BILINEAR, not BICUBIC: at the usual 1.6x down from the draft decode it costs half as much
    (0.3 ms an image less in ingest's decode stage); its pixels differ from bicubic's by under
    one grey level on average on photos, and on sharp line drawings by about what JPEG at this
    quality changes anyway (bench/decode_stage.py, tests/test_decode_speed_equivalence.py). `optimize` (a
    second Huffman pass) stays: 0.03-0.07 ms for 15 % fewer bytes stored per record."""
    thumb = image.copy()
    thumb.thumbnail((size, size), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    thumb.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def check_mode(value: str, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise BadRequest(f"unknown {what} mode {value!r}: use {' or '.join(repr(a) for a in allowed)}")
    return value


_POOLS: dict[int, ProcessPoolExecutor] = {}
_LOCK = threading.Lock()


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A shared pool of `workers` decode processes, started once per process and reused.

    Spawned (not forked): the parent holds model threads and open stores that a fork would copy
    in an undefined state. Starting a worker imports lookalike (about a second), so pools outlive
    one ingest run; the server's many small upserts would otherwise pay it every time.
    """
    with _LOCK:
        pool = _POOLS.get(workers)
        if pool is None:
            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            _POOLS[workers] = pool
        return pool


def submit(workers: int, **job) -> Future:
    """Run `decode_image(**job)` in the shared process pool."""
    return process_pool(workers).submit(decode_image, **job)


def discard_pool(workers: int) -> None:
    """Forget a broken pool (a worker died); the next `process_pool` call starts a new one."""
    with _LOCK:
        pool = _POOLS.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
