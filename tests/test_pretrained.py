"""Towers started from Hugging Face folders match `transformers` on the same inputs.

The folders under tests/fixtures/hf are what `save_pretrained` writes for tiny random ViT,
DINOv2, DINOv2-with-registers and BERT models (PyTorch-layout model.safetensors, the BERT
tokenizer's files), with the models' own outputs; tests/fixtures/hf/make_fixtures.py
regenerates them with torch and transformers, which CI does not install.
"""

from __future__ import annotations

import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from chexficient.data.wordpiece import WordPieceTokenizer
from chexficient.models import build_model, pretrained
from chexficient.models.pretrained import PretrainedError
from pretrain.config import base_config

HF = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "hf")


def _model_config(image: str = "", text: str = "", image_size: int = 32):
    config = base_config("tiny").model
    config.image.update(image_size=image_size, pretrained=image)
    config.text.update(pretrained=text, max_len=16, vocab_size=30)
    return pretrained.resolve(config)


def _started(config):
    model = build_model(config, nnx.Rngs(0))
    pretrained.load(model, config)
    return model


@pytest.mark.parametrize("name", ["vit", "dinov2", "dinov2_registers"])
@pytest.mark.parametrize("grid", ["up", "down"])
def test_vision_tower_matches_transformers(name, grid):
    expected = np.load(os.path.join(HF, name, "expected.npz"))
    images, hidden = expected[f"images_{grid}"], expected[f"hidden_{grid}"]
    config = _model_config(image=os.path.join(HF, name), image_size=images.shape[1])
    assert (config.image.width, config.image.depth, config.image.patch_size) == (32, 2, 7)
    assert config.image.registers == (2 if name == "dinov2_registers" else 0)
    pooled, aux = nnx.jit(lambda tower, x: tower(x))(_started(config).image,
                                                      jnp.asarray(images)[..., None])
    np.testing.assert_allclose(pooled, hidden[:, 0], atol=1e-4)  # the class token
    np.testing.assert_allclose(aux["tokens"], hidden[:, 1 + config.image.registers:], atol=1e-4)


def test_bert_tower_and_wordpiece_match_transformers(tmp_path):
    expected = np.load(os.path.join(HF, "bert", "expected.npz"))
    texts = expected["texts"].tolist()
    only_vocab = tmp_path / "vocab_only"
    only_vocab.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json"):
        shutil.copy(os.path.join(HF, "bert", name), only_vocab)
    for folder in (os.path.join(HF, "bert"), str(only_vocab)):  # tokenizer.json, or vocab.txt
        ids, mask = WordPieceTokenizer.from_folder(folder).encode(texts, 16)
        np.testing.assert_array_equal(ids, expected["ids"])
        np.testing.assert_array_equal(mask, expected["mask"].astype(bool))
    config = _model_config(text=os.path.join(HF, "bert"))
    assert config.text.arch == "bert" and config.text.vocab_size == 30
    pooled, tokens = nnx.jit(lambda tower, *x: tower.encode(*x))(
        _started(config).text, jnp.asarray(ids), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(tokens)[mask], expected["hidden"][mask], atol=1e-4)
    np.testing.assert_allclose(pooled, expected["hidden"][:, 0], atol=1e-4)


def _copy(name: str, tmp_path) -> str:
    return str(shutil.copytree(os.path.join(HF, name), tmp_path / name))


def test_mismatched_folders_are_clear_errors(tmp_path):
    with pytest.raises(PretrainedError, match=r"model_type 'bert' is not one of"):
        _model_config(image=os.path.join(HF, "bert"))
    with pytest.raises(PretrainedError, match=r"image_size=36 is not a multiple of the patch"):
        _model_config(image=os.path.join(HF, "vit"), image_size=36)
    with pytest.raises(PretrainedError, match=r"config.json is missing"):
        _model_config(text=str(tmp_path))

    folder = _copy("dinov2", tmp_path)
    weights = os.path.join(folder, "model.safetensors")
    tensors = load_file(weights)
    config = _model_config(image=folder, image_size=35)
    save_file({k: v for k, v in tensors.items() if k != "encoder.layer.1.norm2.weight"}, weights)
    with pytest.raises(PretrainedError, match=rf"{weights} has no tensor encoder.layer.1.norm2.weight"):
        _started(config)
    save_file({**tensors, "encoder.layer.0.mlp.fc1.weight": np.zeros((63, 32), np.float32)}, weights)
    with pytest.raises(PretrainedError, match=r"encoder.layer.0.mlp.fc1.weight has shape \(63, 32\)"):
        _started(config)

    folder = _copy("vit", tmp_path)
    with open(os.path.join(folder, "config.json")) as f:
        hf = json.load(f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({**hf, "num_hidden_layers": 3}, f)  # a config that its weights do not follow
    with pytest.raises(PretrainedError, match=r"has no tensor encoder.layer.2.attention"):
        _started(_model_config(image=folder, image_size=35))


@pytest.mark.slow
def test_a_run_starts_from_pretrained_towers_and_keeps_the_wordpiece(micro, tmp_path):
    """`--config.model.{image,text}.pretrained=DIR` on a real run: with a zero learning rate
    the saved towers are the imported ones; the run, its export and inference use WordPiece."""
    from chexficient import inference
    from chexficient.checkpoint import load_model
    from chexficient.export_model import export_model
    from chexficient.models.params import flat_params
    from pretrain.train import train
    from tests.conftest import micro_config

    image, text = os.path.join(HF, "dinov2_registers"), os.path.join(HF, "bert")
    config = micro_config(micro, total_steps=2, **{
        "model.image.pretrained": image, "model.text.pretrained": text, "optim.lr": 0.0,
        "model.image.image_size": 63, "data.image_size": 63, "checkpoint.every_steps": 0})
    workdir = str(tmp_path / "run")
    train(config, workdir)
    saved = json.load(open(os.path.join(workdir, "config.json")))
    assert saved["model"]["image"]["registers"] == 2 and saved["model"]["text"]["arch"] == "bert"
    assert os.path.exists(os.path.join(workdir, "tokenizer.json"))
    model, run_config = load_model(workdir)
    reference = _started(pretrained.resolve(run_config.model))
    for tower in ("image", "text"):
        got, want = flat_params(getattr(model, tower)), flat_params(getattr(reference, tower))
        assert got.keys() == want.keys()
        for name in got:
            np.testing.assert_array_equal(got[name], want[name], err_msg=name)

    used = inference.load(workdir, batch_size=4)
    assert isinstance(used.encoders.tokenizer, WordPieceTokenizer)
    out = str(tmp_path / "exported")
    export_model(workdir, out)
    assert "tokenizer.json" in os.listdir(out)
    texts = ["Small left pleural effusion.", "No acute findings."]
    np.testing.assert_array_equal(inference.load(out, batch_size=4).embed_texts(texts),
                                  used.embed_texts(texts))
