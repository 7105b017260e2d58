"""Start a tower from a local Hugging Face folder: ViT / DINOv2 (registers too), or BERT.

`--config.model.image.pretrained=DIR` / `--config.model.text.pretrained=DIR` name a folder
with config.json and model.safetensors (PyTorch layout, read with safetensors' numpy API; no
torch, no network). `resolve` takes the tower's architecture from config.json, `load` copies
the weights into the built towers:

- ViT / DINOv2: class token plus its position embedding become our first prefix token,
  registers follow it; patch positions are resized to our grid as `transformers` resizes them
  (bicubic, align_corners=False; antialiased for DINOv2 with registers); DINOv2's layer scales are folded into the output
  projections; the RGB patch kernel is summed over colours after folding in the difference
  between the checkpoint's pixel normalisation (preprocessor_config.json) and ours, so a grey
  radiograph reaches the first block exactly as its RGB copy would in the checkpoint.
- BERT: post-LayerNorm blocks (`models/bert.py`), the token-type row 0 added to the position
  embeddings; its WordPiece tokenizer replaces the SentencePiece one (`data/wordpiece.py`).

Projections and the logit scale stay freshly initialised. A folder of another architecture,
or one lacking a tensor or holding one of another shape, is a PretrainedError naming the
tensor and the file.
"""

from __future__ import annotations

import json
import os

import ml_collections
import numpy as np
from absl import logging
from flax import nnx
from safetensors.numpy import load_file

from chexficient.data.pipeline import PIXEL_MEAN, PIXEL_STD
from chexficient.models.params import ParamsError, params_from

VISION_TYPES = ("vit", "dinov2", "dinov2_with_registers")
TEXT_TYPES = ("bert",)
_ACTS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
_UNUSED = ("pooler.", "embeddings.mask_token", "embeddings.position_ids")  # not our towers'
_PREFIXES = ("vit.", "dinov2.", "dinov2_with_registers.", "bert.")  # a task model's backbone


class PretrainedError(ValueError):
    """A Hugging Face folder that cannot start a tower; the message names the file."""


def hf_config(folder: str, kinds: tuple[str, ...]) -> dict:
    """config.json of `folder`, whose model_type must be one of `kinds`."""
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise PretrainedError(f"{path} is missing: not a Hugging Face model folder")
    with open(path) as f:
        config = json.load(f)
    if config.get("model_type") not in kinds:
        raise PretrainedError(f"{path}: model_type {config.get('model_type')!r} is not one of "
                              f"{kinds}")
    return config


def _act(config: dict, where: str) -> str:
    act = config.get("hidden_act", "gelu")
    if act not in _ACTS:
        raise PretrainedError(f"{where}: hidden_act {act!r} is not supported; one of {sorted(_ACTS)}")
    return _ACTS[act]


def resolve(model: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of `config.model` whose pretrained towers have the folders' architecture
    (width, depth, heads, MLP, patch size, registers, norm epsilon, activation)."""
    model = ml_collections.ConfigDict(model.to_dict())
    im, tx = model.image, model.text
    if im.get("pretrained"):
        c = hf_config(im.pretrained, VISION_TYPES)
        where = os.path.join(im.pretrained, "config.json")
        if c.get("use_swiglu_ffn"):
            raise PretrainedError(f"{where}: SwiGLU MLPs (DINOv2 giant) are not supported")
        if im.image_size % c["patch_size"]:
            raise PretrainedError(f"model.image.image_size={im.image_size} is not a multiple of "
                                  f"the patch size {c['patch_size']} of {where}")
        width, depth = c["hidden_size"], c["num_hidden_layers"]
        ratio = c.get("mlp_ratio") or c["intermediate_size"] / width
        im.update(patch_size=c["patch_size"], width=width, depth=depth,
                  heads=c["num_attention_heads"], mlp_ratio=float(ratio), pool="cls",
                  registers=c.get("num_register_tokens", 0), stem="patch",
                  norm_eps=float(c["layer_norm_eps"]), mlp_act=_act(c, where),
                  feature_layers=tuple(sorted({max(1, depth // 2), depth})))
    if tx.get("pretrained"):
        c = hf_config(tx.pretrained, TEXT_TYPES)
        where = os.path.join(tx.pretrained, "config.json")
        if _act(c, where) != "gelu" or c.get("position_embedding_type", "absolute") != "absolute":
            raise PretrainedError(f"{where}: only BERT with exact GELU and absolute positions")
        if tx.max_len > c["max_position_embeddings"]:
            raise PretrainedError(f"model.text.max_len={tx.max_len} exceeds the "
                                  f"{c['max_position_embeddings']} positions of {where}")
        tx.update(arch="bert", vocab_size=c["vocab_size"], width=c["hidden_size"],
                  depth=c["num_hidden_layers"], heads=c["num_attention_heads"],
                  mlp_ratio=c["intermediate_size"] / c["hidden_size"],
                  norm_eps=float(c["layer_norm_eps"]), causal=False)
    return model


class _Tensors:
    """model.safetensors of a folder: `get(name, shape)` names the tensor and file on failure;
    `unused()` lists what no one asked for."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, "model.safetensors")
        if not os.path.isfile(self.path):
            raise PretrainedError(f"{self.path} is missing (only safetensors weights are read)")
        try:
            tensors = load_file(self.path)
        except Exception as e:  # noqa: BLE001  (safetensors raises several types)
            raise PretrainedError(f"{self.path} cannot be read: {type(e).__name__}: {e}") from None
        prefix = next((p for p in _PREFIXES if not any(k.startswith("embeddings.") for k in tensors)
                       and any(k.startswith(p + "embeddings.") for k in tensors)), "")
        self.tensors = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        self._used: set[str] = set()

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if name not in self.tensors:
            raise PretrainedError(f"{self.path} has no tensor {name}")
        value = self.tensors[name]
        if value.shape != tuple(shape):
            raise PretrainedError(f"{self.path}: tensor {name} has shape {value.shape}, "
                                  f"expected {tuple(shape)}")
        self._used.add(name)
        return value.astype(np.float64)

    def has(self, name: str) -> bool:
        return name in self.tensors

    def unused(self) -> list[str]:
        return sorted(k for k in self.tensors if k not in self._used and not k.startswith(_UNUSED))


def _cubic(x: float, a: float) -> float:
    x = abs(x)
    if x < 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    return (((x - 5) * x + 8) * x - 4) * a if x < 2 else 0.0


def cubic_resize_matrix(n_in: int, n_out: int, antialias: bool = False) -> np.ndarray:
    """[n_out, n_in] weights of torch's bicubic `interpolate` (align_corners=False), what
    `transformers` resizes position embeddings with: edge samples repeated (a = -0.75), or
    with `antialias` the normalised PIL-style filter (a = -0.5, widened when shrinking)."""
    matrix, scale = np.zeros((n_out, n_in)), n_in / n_out
    for i in range(n_out):
        if antialias:
            support, stretch = 2 * max(scale, 1.0), 1 / max(scale, 1.0)
            centre = scale * (i + 0.5)
            low = max(int(centre - support + 0.5), 0)
            high = min(int(centre + support + 0.5), n_in)
            w = np.array([_cubic((j - centre + 0.5) * stretch, -0.5) for j in range(low, high)])
            matrix[i, low:high] = w / w.sum()
            continue
        source = (i + 0.5) * scale - 0.5
        base = int(np.floor(source))
        for k in range(-1, 3):
            matrix[i, min(max(base + k, 0), n_in - 1)] += _cubic(k - (source - base), -0.75)
    return matrix


def _linear(t: _Tensors, name: str, n_in: int, n_out: int, bias: bool = True) -> dict:
    """A PyTorch Linear ([out, in]) as our Dense (kernel [in, out])."""
    out = {"kernel": t.get(f"{name}.weight", (n_out, n_in)).T}
    if bias:
        out["bias"] = (t.get(f"{name}.bias", (n_out,)) if t.has(f"{name}.bias")
                       else np.zeros(n_out))
    return out


def _norm(t: _Tensors, name: str, width: int) -> dict:
    return {"scale": t.get(f"{name}.weight", (width,)), "bias": t.get(f"{name}.bias", (width,))}


def _attention(t: _Tensors, q: str, k: str, v: str, out: str, width: int) -> dict:
    query, key, value = (_linear(t, n, width, width) for n in (q, k, v))
    return {"query": query, "out": _linear(t, out, width, width),
            "key_value": {"kernel": np.concatenate([key["kernel"], value["kernel"]], axis=1),
                          "bias": np.concatenate([key["bias"], value["bias"]])}}


def _pixel_normalisation(folder: str, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """The checkpoint's per-channel mean and std (preprocessor_config.json; else ours, so
    nothing is folded)."""
    path = os.path.join(folder, "preprocessor_config.json")
    if not os.path.exists(path):
        logging.warning("%s has no preprocessor_config.json: assuming the checkpoint saw our "
                        "normalisation (mean %s, std %s)", folder, PIXEL_MEAN, PIXEL_STD)
        return np.full(channels, PIXEL_MEAN), np.full(channels, PIXEL_STD)
    with open(path) as f:
        c = json.load(f)
    mean, std = (np.broadcast_to(np.asarray(c.get(k, d), np.float64), (channels,))
                 for k, d in (("image_mean", PIXEL_MEAN), ("image_std", PIXEL_STD)))
    return mean, std


def vision_params(folder: str, image_size: int) -> tuple[dict, list[str]]:
    """Our ViT's parameters (nested like its state) from a ViT / DINOv2 folder, and the
    folder's tensors left unused."""
    c = hf_config(folder, VISION_TYPES)
    t = _Tensors(folder)
    width, depth, p = c["hidden_size"], c["num_hidden_layers"], c["patch_size"]
    hidden = int(round(width * (c.get("mlp_ratio") or c["intermediate_size"] / width)))
    channels = c.get("num_channels", 3)
    conv = t.get("embeddings.patch_embeddings.projection.weight", (width, channels, p, p))
    mean, std = _pixel_normalisation(folder, channels)
    # Ours: x = (v - PIXEL_MEAN) / PIXEL_STD; theirs: (v - mean_c) / std_c = x * a_c + b_c.
    a, b = PIXEL_STD / std, (PIXEL_MEAN - mean) / std
    patch = {"kernel": np.einsum("ochw,c->hwo", conv, a).reshape(p * p, width),
             "bias": t.get("embeddings.patch_embeddings.projection.bias", (width,))
             + np.einsum("ochw,c->o", conv, b)}
    n_pos = t.tensors.get("embeddings.position_embeddings", np.zeros((1, 1, 0))).shape[1] - 1
    native = int(round(np.sqrt(max(n_pos, 0))))
    positions = t.get("embeddings.position_embeddings", (1, native * native + 1, width))[0]
    grid = image_size // p
    resize = cubic_resize_matrix(native, grid, antialias=c["model_type"] == "dinov2_with_registers")
    patch_positions = np.einsum("yi,xj,ijw->yxw", resize, resize,
                                positions[1:].reshape(native, native, width))
    prefix = [t.get("embeddings.cls_token", (1, 1, width))[0] + positions[:1]]
    registers = c.get("num_register_tokens", 0)
    if registers:
        prefix.append(t.get("embeddings.register_tokens", (1, registers, width))[0])
    dino = c["model_type"].startswith("dinov2")
    blocks = {}
    for i in range(depth):
        n = f"encoder.layer.{i}."
        s = n + "attention.attention."
        block = {"attn": _attention(t, s + "query", s + "key", s + "value",
                                    n + "attention.output.dense", width)}
        if dino:
            block.update(norm1=_norm(t, n + "norm1", width), norm2=_norm(t, n + "norm2", width),
                         mlp={"fc1": _linear(t, n + "mlp.fc1", width, hidden),
                              "fc2": _linear(t, n + "mlp.fc2", hidden, width)})
            for layer, scale in ((block["attn"]["out"], "layer_scale1"),
                                 (block["mlp"]["fc2"], "layer_scale2")):
                gamma = t.get(n + f"{scale}.lambda1", (width,))
                layer["kernel"], layer["bias"] = layer["kernel"] * gamma, layer["bias"] * gamma
        else:
            block.update(norm1=_norm(t, n + "layernorm_before", width),
                         norm2=_norm(t, n + "layernorm_after", width),
                         mlp={"fc1": _linear(t, n + "intermediate.dense", width, hidden),
                              "fc2": _linear(t, n + "output.dense", hidden, width)})
        blocks[i] = block
    params = {"patch_embed": patch, "pos_embed": patch_positions.reshape(grid * grid, width),
              "prefix": np.concatenate(prefix), "blocks": blocks,
              "norm": _norm(t, "layernorm", width)}
    return params, t.unused()


def bert_params(folder: str, max_len: int) -> tuple[dict, list[str]]:
    """Our BertText's parameters from a BERT folder, and the folder's tensors left unused."""
    c = hf_config(folder, TEXT_TYPES)
    t = _Tensors(folder)
    width, vocab, hidden = c["hidden_size"], c["vocab_size"], c["intermediate_size"]
    e = "embeddings."
    positions = t.get(e + "position_embeddings.weight", (c["max_position_embeddings"], width))
    types = t.get(e + "token_type_embeddings.weight", (c.get("type_vocab_size", 2), width))
    blocks = {}
    for i in range(c["num_hidden_layers"]):
        n = f"encoder.layer.{i}."
        s = n + "attention.self."
        blocks[i] = {"attn": _attention(t, s + "query", s + "key", s + "value",
                                        n + "attention.output.dense", width),
                     "norm1": _norm(t, n + "attention.output.LayerNorm", width),
                     "mlp": {"fc1": _linear(t, n + "intermediate.dense", width, hidden),
                             "fc2": _linear(t, n + "output.dense", hidden, width)},
                     "norm2": _norm(t, n + "output.LayerNorm", width)}
    params = {"embed": {"embedding": t.get(e + "word_embeddings.weight", (vocab, width))},
              "pos_embed": positions[:max_len] + types[0],
              "embed_norm": _norm(t, e + "LayerNorm", width), "blocks": blocks}
    return params, t.unused()


def _flatten(tree: dict, prefix: str = "") -> dict[str, np.ndarray]:
    out = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.update(_flatten(value, name + ".") if isinstance(value, dict) else {name: value})
    return out


def _assign(tower: nnx.Module, params: dict, unused: list[str], folder: str) -> None:
    if unused:
        logging.warning("%s: tensors not used by our tower: %s", folder, ", ".join(unused))
    try:
        nnx.update(tower, params_from(tower, _flatten(params), folder))
    except ParamsError as e:
        raise PretrainedError(str(e)) from None


def load(model, config: ml_collections.ConfigDict) -> None:
    """Copies the pretrained towers named by `config.model` (already `resolve`d) into `model`."""
    im, tx = config.image, config.text
    if im.get("pretrained"):
        _assign(model.image, *vision_params(im.pretrained, im.image_size), im.pretrained)
        logging.info("image tower started from %s", im.pretrained)
    if tx.get("pretrained"):
        _assign(model.text, *bert_params(tx.pretrained, tx.max_len), tx.pretrained)
        logging.info("text tower started from %s", tx.pretrained)
