"""A trained model as plain files: `model.safetensors`, `config.json` and the tokenizer.

`chexficient export-model` writes them; `read_export` (and so `inference.load`) reads them
back into the same model, bit for bit. Each tensor is float32 and named by its path in the
model (`image.blocks.0.attn.query.kernel`); linear kernels are [in, out], LayerNorm scale and
bias are stored as they are (the layers fold them only while computing). config.json is the
run's resolved config plus an `export` section: the checkpoint step, the tokenizer's file and
how images are preprocessed.
"""

from __future__ import annotations

import json
import os

import ml_collections
from flax import nnx
from safetensors.numpy import load_file, save_file

from chexficient import checkpoint
from chexficient.data import mixture
from chexficient.data import tokenizer as tokenizer_lib
from chexficient.data.pipeline import PIXEL_MEAN, PIXEL_STD
from chexficient.io import atomic_dir, write_atomic, write_json_atomic
from chexficient.models import CLIP, build_model
from chexficient.models.params import ParamsError, flat_params, params_from

FORMAT = "chexficient-clip"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class ExportError(ValueError):
    """A folder that is not a readable export, or a run that cannot be exported."""


def is_export(folder: str) -> bool:
    """Whether `folder` is an exported model, or what is left of one: it holds the weights file,
    or a config.json with an `export` section (`read_export` names a missing file)."""
    if os.path.isfile(os.path.join(folder, WEIGHTS)):
        return True
    path = os.path.join(folder, CONFIG)
    if not os.path.isfile(path):
        return False
    try:
        with open(path) as f:
            return json.load(f).get("export", {}).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):  # not JSON, or not an object: not an export's
        return False


def export_model(workdir: str, out: str, *, step: int | None = None,
                 force: bool = False) -> dict:
    """Writes checkpoint `step` (default: the latest) of run `workdir` to folder `out`
    (atomically: all of it or nothing); returns its `export` section."""
    model, config = checkpoint.load_model(workdir, step=step)
    run = checkpoint.run_dir(workdir)
    tokenizer = tokenizer_lib.load_saved(run)
    if tokenizer is None:
        raise ExportError(f"run {run} keeps no tokenizer copy ({tokenizer_lib.Tokenizer.file_name}"
                          "): its text tower cannot be exported with the ids it was trained on")
    source = dict(step=step if step is not None else checkpoint.latest_step(workdir),
                  workdir=os.path.abspath(run))
    return write_export(model, config, tokenizer, out, force=force, **source)


def write_export(model: CLIP, config: ml_collections.ConfigDict, tokenizer, out: str, *,
                 force: bool = False, **source) -> dict:
    """Writes `model` with its run `config` and `tokenizer` to folder `out`, atomically;
    `source` (e.g. step, workdir) goes into the `export` section, which is returned."""
    info = dict(format=FORMAT, format_version=FORMAT_VERSION, **source,
                tokenizer=tokenizer.file_name,
                preprocess=dict(stored_size=mixture.stored_image_size(config.data),
                                image_size=int(config.model.image.image_size),
                                pixel_mean=PIXEL_MEAN, pixel_std=PIXEL_STD))
    try:
        with atomic_dir(out, force=force) as tmp:
            save_file(flat_params(model), os.path.join(tmp, WEIGHTS), metadata={"format": FORMAT})
            write_json_atomic(os.path.join(tmp, CONFIG), {**json.loads(config.to_json()),
                                                          "export": info})
            write_atomic(os.path.join(tmp, tokenizer.file_name), tokenizer.model_proto)
    except FileExistsError as e:
        raise ExportError(str(e)) from None
    return info


def read_export(folder: str) -> tuple[CLIP, ml_collections.ConfigDict, tokenizer_lib.Tokenizer]:
    """The model, run config (with its `export` section) and tokenizer of an exported folder."""
    missing = [name for name in (CONFIG, WEIGHTS) if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ExportError(f"{folder} is an incomplete export: {' and '.join(missing)} missing "
                          "(write it again with `chexficient export-model`)")
    with open(os.path.join(folder, CONFIG)) as f:
        config = ml_collections.ConfigDict(json.load(f))
    weights = os.path.join(folder, WEIGHTS)
    try:
        tensors = load_file(weights)
    except Exception as e:  # noqa: BLE001  (safetensors raises several types for a bad file)
        raise ExportError(f"{weights} cannot be read: {type(e).__name__}: {e}") from None
    abstract = nnx.eval_shape(lambda: build_model(config.model, nnx.Rngs(0)))
    graphdef, _ = nnx.split(abstract, nnx.Param)
    try:
        model = nnx.merge(graphdef, params_from(abstract, tensors, weights))
    except ParamsError as e:
        raise ExportError(str(e)) from None
    tokenizer = tokenizer_lib.load_saved(folder)
    if tokenizer is None:
        raise ExportError(f"{folder} has no tokenizer ({config.export.tokenizer})")
    return model, config, tokenizer
