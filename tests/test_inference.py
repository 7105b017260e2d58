"""Using a trained model: the Python API and the embed / zeroshot / retrieve / export-model
commands on real-format files (a windowed MONOCHROME1 DICOM, a 16-bit PNG, an RGB JPEG)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

from chexficient import inference
from chexficient.data import pipeline
from chexficient.checkpoint import CheckpointError
from chexficient.data.builders._common import ImageError
from chexficient.export_model import ExportError, export_model
from tests import real_fixtures as rf
from tests.conftest import micro_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def run(micro, tmp_path_factory) -> str:
    """A `tiny`-shaped run, trained a few steps on synthetic_cxr/micro."""
    from pretrain.train import train

    workdir = str(tmp_path_factory.mktemp("inference_run"))
    train(micro_config(micro, total_steps=4, **{"checkpoint.every_steps": 0}), workdir)
    return workdir


@pytest.fixture(scope="module")
def model(run) -> inference.Model:
    return inference.load(run, batch_size=8)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """A windowed MONOCHROME1 DICOM, a 16-bit PNG and an RGB JPEG, of different sizes."""
    root = tmp_path_factory.mktemp("images")
    rgb = np.stack([rf.gradient(150, 180, seed=s) for s in (1, 2, 3)], axis=-1)
    return {
        "dicom": rf.write_dicom(str(root / "a.dcm"), rf.gradient(300, 240, np.uint16, seed=4),
                                photometric="MONOCHROME1", window=(20000.0, 30000.0)),
        "png16": rf.write_png(str(root / "b.png"), rf.gradient(200, 260, np.uint16, seed=5)),
        "jpeg": rf.write_jpeg(str(root / "c.jpg"), rgb),
    }


def test_api_embeds_real_format_files_and_arrays(model, files):
    arrays = [rf.gradient(90, 70, seed=6), rf.gradient(64, 64, np.uint16, seed=7)]
    inputs = [files["dicom"], files["png16"], files["jpeg"], *arrays]
    emb = model.embed_images(inputs)
    assert emb.shape == (5, model.embed_dim) and emb.dtype == np.float32
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.linalg.matrix_rank(emb) == 5  # five different images, five different embeddings
    np.testing.assert_array_equal(model.embed_images(inputs[::-1]), emb[::-1])  # deterministic

    # The DICOM is read as the builders read it: window onto 0..255, then inverted (MONOCHROME1).
    raw = rf.gradient(300, 240, np.uint16, seed=4).astype(np.float64)
    windowed = np.round(np.clip((raw - 19999.5) / 29999 + 0.5, 0, 1) * 255).astype(np.uint8)
    np.testing.assert_array_equal(model.embed_images([255 - windowed]), emb[:1])
    unnamed = os.path.join(os.path.dirname(files["dicom"]), "..", "IM0001")  # as PACS names them
    shutil.copy(files["dicom"], unnamed)
    np.testing.assert_array_equal(model.embed_images([unnamed]), emb[:1])  # known by its DICM mark
    # A 16-bit PNG is stretched min..max like the builders do: the array embeds the same.
    np.testing.assert_array_equal(
        model.embed_images([rf.gradient(200, 260, np.uint16, seed=5)]), emb[1:2])

    texts = model.embed_texts(["Small left pleural effusion.", "No acute findings."])
    assert texts.shape == (2, model.embed_dim) and np.isfinite(texts).all()

    probs = model.zero_shot(inputs[:3])
    assert probs.shape == (3, 13) and ((probs > 0) & (probs < 1)).all()
    own = model.zero_shot(inputs[:3], labels=["pneumothorax", "cardiomegaly"])
    assert own.shape == (3, 2)
    np.testing.assert_allclose(own[:, 1], probs[:, 1], rtol=1e-6)  # Cardiomegaly, same prompts
    templated = model.zero_shot(inputs[:3], labels=["pneumothorax"],
                                prompts=[("{Finding}.", "No {finding}.")])
    flipped = model.zero_shot(inputs[:3], labels=["pneumothorax"],
                              prompts=[("No {finding}.", "{Finding}.")])
    np.testing.assert_allclose(flipped[:, 0], 1 - templated[:, 0], atol=1e-6)
    sharp = model.zero_shot(inputs[:3], labels=["pneumothorax", "cardiomegaly"],
                            scale=model.logit_scale)  # the training temperature: further from 1/2
    assert model.logit_scale > 1 and (np.sign(sharp - 0.5) == np.sign(own - 0.5)).all()
    assert (np.abs(sharp - 0.5) > np.abs(own - 0.5)).all()

    reports = ["Cardiomegaly.", "No acute findings.", "Right pneumothorax.", "Pleural effusion."]
    order, scores = model.retrieve(inputs[:3], reports, k=2)
    assert order.shape == scores.shape == (3, 2) and (scores[:, 0] >= scores[:, 1]).all()
    np.testing.assert_allclose(scores, np.take_along_axis(emb[:3] @ model.embed_texts(reports).T,
                                                          order, axis=1), rtol=1e-5)


def test_a_dataset_record_embeds_identically_from_a_file(model, micro, tmp_path):
    """The file path and training's evaluation path give the same model input and embedding."""
    config = micro.data_config(image_size=model.image_size, augment=dict(enabled=False))
    batch = next(pipeline.make_loader(config, "test", train=False, batch_size=6, seed=0))
    from_dataset = model.encoders.embed_images(batch["image"])
    source = micro.builder.as_data_source("test")
    paths = []
    for i in batch["index"]:
        image = source[int(i)]["image"]
        paths.append(rf.write_png(str(tmp_path / f"{i}.png"), image) if i % 2 else
                     rf.write_dicom(str(tmp_path / f"{i}.dcm"), image))
    np.testing.assert_array_equal(np.stack([model.preprocess(p) for p in paths]), batch["image"])
    np.testing.assert_array_equal(model.embed_images(paths), from_dataset)


def test_bad_inputs_are_named_or_skipped_and_listed(model, files, tmp_path):
    garbage = rf.write_garbage(str(tmp_path / "broken.png"))
    with pytest.raises(ImageError, match="broken.png"):
        model.embed_images([files["png16"], garbage])
    with pytest.raises(ImageError, match=r"<array 1>.*float32"):
        model.embed_images([files["png16"], np.zeros((8, 8), np.float32)])
    result = model.read_and_embed([garbage, files["png16"], str(tmp_path / "gone.dcm")],
                                  skip_bad=True)
    assert result.kept.tolist() == [1] and result.embeddings.shape == (1, model.embed_dim)
    assert [(s.position, os.path.basename(s.name)) for s in result.skipped] == [
        (0, "broken.png"), (2, "gone.dcm")]
    assert "not found" in result.skipped[1].why
    with pytest.raises(TypeError, match="list"):
        model.embed_images(files["png16"])


def test_bad_arguments_are_refused_before_any_image_is_read(run, model, tmp_path):
    gone = [str(tmp_path / "gone.png")]  # reading it would be an ImageError: none is raised
    with pytest.raises(TypeError, match=r"string 'pneumothorax'.*\['pneumothorax'\]"):
        model.zero_shot(gone, labels="pneumothorax")
    for labels in ([], ["effusion", " "]):
        with pytest.raises(ValueError, match="labels must be non-empty names"):
            model.zero_shot(gone, labels=labels)
    with pytest.raises(ValueError, match=r"'\{Findings\}\.'.*KeyError"):
        model.zero_shot(gone, labels=["effusion"], prompts=[("{Findings}.", "No {finding}.")])
    pair = ("{Finding} is seen.", "No {finding}.")  # one pair given bare, not in a list
    np.testing.assert_array_equal(model.zero_shot_embeddings(np.eye(2, model.embed_dim), ["ARDS"], pair),
                                  model.zero_shot_embeddings(np.eye(2, model.embed_dim), ["ARDS"], [pair]))
    with pytest.raises(ValueError, match=r"must be \[N, 64\], got \(64,\)"):
        model.zero_shot_embeddings(np.ones(64), ["effusion"])
    with pytest.raises(ValueError, match="finite"):
        model.zero_shot_embeddings(np.eye(2, model.embed_dim), ["effusion"], scale=float("nan"))
    with pytest.raises(ValueError, match="k must be >= 1"):
        model.retrieve(gone, ["Cardiomegaly."], k=0)
    with pytest.raises(ValueError, match="batch_size and workers must be >= 1"):
        inference.load(run, workers=0)
    with pytest.raises(CheckpointError, match=r"no checkpoint of step 3; it has steps \[4\]"):
        inference.load(run, step=3)


def test_an_incomplete_export_or_a_step_of_one_is_named(run, tmp_path):
    out = str(tmp_path / "exported")
    export_model(run, out)
    with pytest.raises(ValueError, match="exported model.*step=3"):
        inference.load(out, step=3)
    os.remove(os.path.join(out, "config.json"))
    with pytest.raises(ExportError, match="incomplete export: config.json missing"):
        inference.load(out)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chexficient.cli", *args], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, **(env or {})})


def test_commands_refuse_bad_flags_in_one_line_before_loading(run, files, tmp_path):
    image, out = files["png16"], f"--out={tmp_path / 'x.csv'}"
    for args, message in [
            (("zeroshot", "--labels=effusion,,edema"), "labels must be non-empty names"),
            (("zeroshot", f"--texts={tmp_path / 'prompts.txt'}"), "zeroshot reads no --texts"),
            (("retrieve", f"--texts={tmp_path / 'gone.txt'}"), "gone.txt: no such file")]:
        done = _cli(*args, f"--checkpoint={run}", f"--images={image}", out)
        assert done.returncode != 0 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    assert not os.path.exists(tmp_path / "x.csv")


@pytest.mark.slow
def test_commands_on_files_on_eight_devices(run, model, files, tmp_path):
    """embed, zeroshot and retrieve write what the API computes (here on 8 simulated devices)."""
    folder = os.path.dirname(files["dicom"])
    reports = tmp_path / "reports.txt"
    reports.write_text("Cardiomegaly.\n\nNo acute findings.\nRight pneumothorax.\n")
    garbage = rf.write_garbage(str(tmp_path / "broken.png"))
    eight = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    expected = model.embed_images(sorted(files.values()))

    out = _cli("embed", f"--checkpoint={run}", f"--images={folder}/*.dcm",
               f"--images={folder}", f"--out={tmp_path / 'emb.npz'}", env=eight)
    assert out.returncode == 0, out.stderr
    assert "images/s" in out.stderr
    saved = np.load(tmp_path / "emb.npz")
    assert [os.path.basename(p) for p in saved["paths"]] == ["a.dcm", "a.dcm", "b.png", "c.jpg"]
    np.testing.assert_allclose(saved["embeddings"][1:], expected, atol=1e-5)

    out = _cli("embed", f"--checkpoint={run}", f"--texts={reports}",
               f"--out={tmp_path / 'txt.npz'}")
    assert out.returncode == 0, out.stderr
    saved = np.load(tmp_path / "txt.npz")
    assert saved["texts"].tolist() == ["Cardiomegaly.", "No acute findings.", "Right pneumothorax."]
    np.testing.assert_allclose(saved["embeddings"], model.embed_texts(saved["texts"].tolist()),
                               atol=1e-5)

    out = _cli("zeroshot", f"--checkpoint={run}", f"--images={folder}", garbage, "--skip_bad",
               "--labels=pneumothorax,cardiomegaly", "--scale=model",
               f"--out={tmp_path / 'probs.csv'}")
    assert out.returncode == 0, out.stderr
    rows = list(csv.reader(open(tmp_path / "probs.csv")))
    assert rows[0] == ["image", "pneumothorax", "cardiomegaly"] and len(rows) == 4
    np.testing.assert_allclose(np.array([r[1:] for r in rows[1:]], float),
                               model.zero_shot(sorted(files.values()),
                                               ["pneumothorax", "cardiomegaly"],
                                               scale=model.logit_scale), atol=1e-5)
    skipped = open(tmp_path / "probs.csv.skipped.tsv").read().splitlines()
    assert len(skipped) == 2 and skipped[1].startswith(garbage)

    out = _cli("retrieve", f"--checkpoint={run}", f"--images={folder}", garbage,
               f"--texts={reports}", "--k=2", f"--out={tmp_path / 'top.csv'}")
    assert out.returncode != 0 and "broken.png" in out.stderr and "--skip_bad" in out.stderr
    assert not os.path.exists(tmp_path / "top.csv")
    out = _cli("retrieve", f"--checkpoint={run}", f"--images={folder}", f"--texts={reports}",
               "--k=2", f"--out={tmp_path / 'top.csv'}")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(open(tmp_path / "top.csv")))
    order, _ = model.retrieve(sorted(files.values()), ["Cardiomegaly.", "No acute findings.",
                                                       "Right pneumothorax."], k=2)
    assert [int(r["text_index"]) for r in rows] == order.ravel().tolist()
    assert [r["rank"] for r in rows] == ["1", "2"] * 3


def _read_safetensors(path: str) -> dict[str, np.ndarray]:
    """The file format read with plain numpy, as docs/inference.md shows it."""
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    header.pop("__metadata__", None)
    return {name: np.frombuffer(data[a:b], dtype=np.float32).reshape(entry["shape"])
            for name, entry in header.items() for a, b in [entry["data_offsets"]]}


def test_export_round_trip_is_bit_identical(run, model, files, tmp_path):
    out = str(tmp_path / "exported")
    info = export_model(run, out)
    assert sorted(os.listdir(out)) == ["config.json", "model.safetensors", "tokenizer.model"]
    assert info["preprocess"] == dict(stored_size=128, image_size=64, pixel_mean=0.45,
                                      pixel_std=0.3)
    again = inference.load(out, batch_size=8)
    images = list(files.values())
    np.testing.assert_array_equal(again.embed_images(images), model.embed_images(images))
    texts = ["Small left pleural effusion.", "No acute findings."]
    np.testing.assert_array_equal(again.embed_texts(texts), model.embed_texts(texts))

    tensors = _read_safetensors(os.path.join(out, "model.safetensors"))
    np.testing.assert_array_equal(tensors["image_proj.kernel"],
                                  np.asarray(model.encoders.model.image_proj.kernel[...]))
    with pytest.raises(ExportError, match="--force"):
        export_model(run, out)
    assert not [n for n in os.listdir(tmp_path) if n.startswith(".tmp-")]

    from safetensors.numpy import save_file

    del tensors["text.norm.scale"]
    save_file(tensors, os.path.join(out, "model.safetensors"))
    with pytest.raises(ExportError, match=r"model.safetensors.*missing text.norm.scale"):
        inference.load(out)
    tensors["text.norm.scale"] = np.ones(3, np.float32)
    save_file(tensors, os.path.join(out, "model.safetensors"))
    with pytest.raises(ExportError, match=r"text.norm.scale has shape \(3,\)"):
        inference.load(out)


def test_export_model_command(run, tmp_path):
    out = _cli("export-model", f"--workdir={run}", f"--out={tmp_path / 'm'}")
    assert out.returncode == 0, out.stderr
    assert "exported step 4" in out.stdout
    out = _cli("export-model", f"--workdir={tmp_path / 'nothing'}", f"--out={tmp_path / 'n'}")
    assert out.returncode != 0 and "no checkpoint found" in out.stderr
