"""Where ingest decodes and resizes: threads vs worker processes, Pillow vs the tensor (GPU) path."""
from __future__ import annotations

import io
import json
import os
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

import lookalike
import lookalike.ingest.decode as decoding
from lookalike import cli
from lookalike.errors import BadRequest
from lookalike.ingest.pipeline import Ingestor, _Item
from lookalike.models.efficientnet import check_device
from lookalike.models.gpu_preprocess import prepare_batch
from lookalike.models.images import device_pixels, fit_square, open_image
from lookalike.sample import COLORS, draw_item
from lookalike.testing.photos import photo_like

from conftest import jpeg_bytes


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def drawn_catalogue(folder) -> list[dict]:
    """Eight drawn JPEGs of mixed sizes, a truncated JPEG and a text file among them."""
    records = []
    for i, (pattern, color) in enumerate([("stripes", "red"), ("dots", "blue"), ("checks", "green"),
                                          ("rings", "orange"), ("zigzag", "purple"), ("dots", "black"),
                                          ("checks", "red"), ("rings", "blue")]):
        im = draw_item(pattern, COLORS[color], seed=i, size=256)
        if i % 3 == 1:
            im = im.resize((320, 200))  # not square: the crop geometry matters
        path = folder / f"{pattern}-{color}.jpg"
        path.write_bytes(jpeg_bytes(im))
        records.append({"_id": path.stem, "_file": str(path), "n": i})
    good = jpeg_bytes(draw_item("dots", COLORS["red"], seed=9))
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (folder / "notes.jpg").write_bytes(b"this is not an image")
    records.insert(3, {"_id": "truncated", "_file": str(folder / "truncated.jpg")})
    records.insert(6, {"_id": "notes", "_file": str(folder / "notes.jpg")})
    return records


def stored(col, ids: list[str]) -> tuple[dict, dict]:
    """Vectors and full stored documents (computed fields, fingerprint, thumbnail flag) by id."""
    docs = dict(zip(ids, col._store.get(ids)))
    return col._store.vectors(ids), docs


def test_threads_and_processes_give_identical_records_and_errors(db, tmp_path, monkeypatch):
    records = drawn_catalogue(tmp_path)
    ids = [r["_id"] for r in records]
    results, vectors, docs = {}, {}, {}
    for mode in ("threads", "processes"):
        monkeypatch.setenv("LOOKALIKE_DECODE", mode)  # what `lookalike ingest --decode MODE` sets
        col = db.collection(mode, create=True)
        results[mode] = col.upsert(records, batch_size=4)  # several batches: the pipeline overlaps them
        vectors[mode], docs[mode] = stored(col, ids)
    assert results["threads"] == results["processes"]
    by_id = {r["_id"]: r for r in results["threads"]}
    assert by_id["truncated"]["status"] == "error" and "corrupt or truncated" in by_id["truncated"]["error"]
    assert by_id["notes"]["status"] == "error" and "not an image" in by_id["notes"]["error"]
    good = [i for i in ids if i not in ("truncated", "notes")]
    assert all(by_id[i]["status"] == "inserted" for i in good)
    assert set(vectors["threads"]) == set(good) == set(vectors["processes"])
    for i in good:
        np.testing.assert_array_equal(vectors["threads"][i], vectors["processes"][i])
        assert docs["threads"][i] == docs["processes"][i]  # labels, colours, fingerprint, fields
        assert docs["threads"][i]["_labels"] and docs["threads"][i]["_colors"]
    # A different image gives a different vector: equality above is not vacuous.
    assert float(vectors["threads"][good[0]] @ vectors["threads"][good[1]]) < 0.99


def test_worker_process_errors_pickle_back_unchanged():
    job = dict(size=224, fit="crop", max_pixels=1000, thumbnail=False)
    big = jpeg_bytes(draw_item("rings", COLORS["red"], size=64))
    with pytest.raises(Exception) as exc:
        decoding.submit(2, data=big, **job).result()
    assert type(exc.value).__name__ == "TooLarge" and "exceeds the limit of 1000 pixels" in exc.value.message


def test_a_dead_worker_pool_is_this_batchs_error_and_replaced(db, monkeypatch):
    col = db.collection("dead", create=True)
    ingestor = Ingestor(col._store, None, decode="processes")
    old = decoding.process_pool(ingestor.workers)
    item = _Item(0)
    item.decoding = Future()
    item.decoding.set_exception(BrokenProcessPool("a worker was killed"))
    with pytest.raises(Exception) as exc:
        ingestor._collect(item)
    assert "decode worker process stopped" in str(exc.value)
    assert decoding.process_pool(ingestor.workers) is not old  # the next batch gets a new pool


def test_bad_modes_are_named(db):
    col = db.collection("modes", create=True)
    with pytest.raises(BadRequest, match="unknown decode mode 'fork'"):
        Ingestor(col._store, col.encoder, decode="fork")
    with pytest.raises(BadRequest, match="unknown resize mode 'gpu'"):
        Ingestor(col._store, col.encoder, resize="gpu")

    class NoDevice:
        name, dim, input_size, fit = "plain", 4, 8, "crop"

    with pytest.raises(BadRequest, match="cannot resize on its device"):
        Ingestor(col._store, NoDevice(), resize="device")
    assert not Ingestor(col._store, NoDevice(), resize="auto").device_resize


def skimage_photos() -> list[Image.Image]:
    return [Image.fromarray(skdata.astronaut()), Image.fromarray(skdata.chelsea()), Image.fromarray(skdata.coffee())]


@pytest.mark.parametrize("mode", ["crop", "pad"])
def test_tensor_resize_matches_pillow_pixels(mode):
    images = skimage_photos() + [photo_like(1, 512).resize((700, 333)), draw_item("checks", COLORS["green"], size=180)]
    arrays = [np.asarray(im) for im in images]
    out = prepare_batch(arrays, 224, mode=mode, mean=0.0, std=1.0)
    assert out.shape == (len(images), 3, 224, 224) and out.dtype == torch.float32
    for im, got in zip(images, out):
        want = fit_square(im, 224, mode=mode).astype(np.float32)
        diff = np.abs(got.permute(1, 2, 0).numpy() - want)
        assert diff.mean() < 0.5, (im.size, diff.mean())  # same geometry and filter: rounding only
        assert np.percentile(diff, 99) < 2


def test_tensor_batch_keeps_order_across_sizes_and_refuses_bad_arrays():
    a, b = np.asarray(photo_like(2, 300)), np.asarray(draw_item("dots", COLORS["blue"], size=256).resize((400, 250)))
    together = prepare_batch([a, b, a, b], 224)
    for row, single in zip(together, [a, b, a, b]):
        torch.testing.assert_close(row, prepare_batch([single], 224)[0])
    assert not torch.equal(together[0], together[1])
    assert prepare_batch([a], 224, dtype=torch.float16).dtype == torch.float16
    with pytest.raises(ValueError, match="image 1: expected uint8"):
        prepare_batch([a, a.astype(np.float32)], 224)


def test_device_pixels_reduce_huge_images_like_pillow():
    huge = photo_like(3, 512).resize((2400, 1800))
    px = device_pixels(huge, 224)
    # 1800 -> 224 is 8x down: reduced by int(8 / 3) = 2, as Pillow's reducing_gap does before its bicubic step
    assert px.shape == (900, 1200, 3)
    assert device_pixels(photo_like(3, 512), 224).shape == (512, 512, 3)  # small ones are left alone


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_tensor_path_vectors_match_pillow_path(db):
    enc = db.collection("enc", create=True).encoder
    sources = [jpeg_bytes(draw_item(p, COLORS[c], seed=i))
               for i, (p, c) in enumerate([("stripes", "red"), ("dots", "blue"), ("checks", "green")])]
    sources.append(jpeg_bytes(photo_like(4, 512)))  # 512 px: draft-decoded at 256
    sources += [jpeg_bytes(skimage_photos()[0], quality=95), png_bytes(skimage_photos()[1].resize((1400, 940)))]
    decoded = [open_image(d, draft_size=enc.input_size) for d in sources]
    host = enc.embed(np.stack([fit_square(im, enc.input_size, mode=enc.fit) for im in decoded]))
    device = enc.embed_images([device_pixels(im, enc.input_size, mode=enc.fit) for im in decoded])
    assert device.vectors.shape == host.vectors.shape == (len(sources), enc.dim)
    sims = cosine(host.vectors, device.vectors)
    assert np.all(sims > 0.99), sims
    assert [h[0]["label"] for h in host.labels] == [d[0]["label"] for d in device.labels]


def test_ingest_with_device_resize_on_cpu(db, tmp_path):
    records = drawn_catalogue(tmp_path)
    host, dev = db.collection("host", create=True), db.collection("dev", create=True)
    res_host = list(Ingestor(host._store, host.encoder, resize="host", batch_size=4).run(records))
    ingestor = Ingestor(dev._store, dev.encoder, resize="device", batch_size=4)
    assert ingestor.device_resize
    res_dev = list(ingestor.run(records))
    assert res_dev == res_host  # same statuses, same per-record errors
    good = [r["_id"] for r in res_dev if r["status"] == "inserted"]
    assert len(good) == 8
    v_host, v_dev = host._store.vectors(good), dev._store.vectors(good)
    for i in good:
        assert v_dev[i].shape == (dev.encoder.dim,)
        assert float(v_host[i] @ v_dev[i]) > 0.99
        assert dev.get(i)["_labels"][0]["label"] == host.get(i)["_labels"][0]["label"]


def test_cli_forces_the_tensor_path_on_cpu_and_decodes_in_processes(tmp_path, monkeypatch, capsys):
    for env in ("LOOKALIKE_DEVICE", "LOOKALIKE_RESIZE", "LOOKALIKE_DECODE"):
        monkeypatch.delenv(env, raising=False)  # restored after the test: --device sets it in-process
    jobs = []
    real_submit = decoding.submit
    monkeypatch.setattr(decoding, "submit", lambda workers, **job: jobs.append(job) or real_submit(workers, **job))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, pattern in enumerate(["stripes", "dots", "checks"]):
        (folder / f"{pattern}.jpg").write_bytes(jpeg_bytes(draw_item(pattern, COLORS["red"], seed=i)))
    code = cli.main(["ingest", str(folder), "--data", str(tmp_path / "db"), "--collection", "c",
                     "--device", "cpu", "--resize", "device", "-q", "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert len(jobs) == 3 and not any(job["host_resize"] for job in jobs)  # CLI default: processes, no resize
    assert "LOOKALIKE_DECODE" not in os.environ and "LOOKALIKE_RESIZE" not in os.environ  # scoped to the command
    results = json.loads(out)["results"]
    assert sorted(r["status"] for r in results) == ["inserted"] * 3
    with lookalike.connect(tmp_path / "db") as db:
        col = db.collection("c")
        vecs = col._store.vectors([r["_id"] for r in results])
        assert all(v.shape == (col.encoder.dim,) and abs(np.linalg.norm(v) - 1) < 1e-5 for v in vecs.values())
        assert all(col.get(r["_id"])["_labels"] for r in results)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown when CUDA is absent")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("LOOKALIKE_DEVICE", raising=False)
    with pytest.raises(BadRequest, match="torch sees no CUDA GPU"):
        check_device("cuda")
    with pytest.raises(BadRequest, match="unknown device 'tpu0'"):
        check_device("tpu0")
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(jpeg_bytes(draw_item("dots", COLORS["red"])))
    code = cli.main(["ingest", str(folder), "--data", str(tmp_path / "db"), "--collection", "c",
                     "--device", "cuda", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "no CUDA GPU" in err and "--device cpu" in err
    assert "LOOKALIKE_DEVICE" not in os.environ  # nothing was set or loaded


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on a GPU machine)")
def test_cuda_fp16_tensor_path_matches_the_cpu_pillow_path(db):
    from lookalike.models.efficientnet import EfficientNetLiteEncoder
    cpu = db.collection("cpu", create=True).encoder
    gpu = EfficientNetLiteEncoder(cpu.name, device="cuda")
    assert gpu.resizes_on_device and gpu.backend == "torch-cuda-fp16"
    images = [open_image(jpeg_bytes(im), draft_size=224) for im in skimage_photos() + [photo_like(5, 512)]]
    host = cpu.embed(np.stack([fit_square(im, cpu.input_size) for im in images]))
    device = gpu.embed_images([device_pixels(im, gpu.input_size) for im in images])
    assert np.all(cosine(host.vectors, device.vectors) > 0.99)
