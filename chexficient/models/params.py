"""A model's parameters as named numpy arrays, and back: what exports and imports share."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from flax import nnx


class ParamsError(ValueError):
    """Named tensors that do not fit a model: missing, unexpected or misshapen ones."""


def flat_params(model: nnx.Module) -> dict[str, np.ndarray]:
    """Every parameter of `model` as a numpy array, keyed by its dotted path."""
    return {".".join(map(str, path)): np.asarray(v.get_value())
            for path, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}


def params_from(module: nnx.Module, tensors: dict[str, np.ndarray], source: str) -> nnx.State:
    """The parameter state of `module` (concrete or abstract) with every value taken from
    `tensors` (keyed as by `flat_params`); a missing, unexpected or misshapen tensor is an
    ParamsError naming it and `source`."""
    flat = nnx.to_flat_state(nnx.state(module, nnx.Param))
    names = [".".join(map(str, path)) for path, _ in flat]
    missing, unexpected = sorted(set(names) - set(tensors)), sorted(set(tensors) - set(names))
    if missing or unexpected:
        raise ParamsError(f"{source}: its tensors do not match the model its config describes: "
                          f"missing {_some(missing)}, unexpected {_some(unexpected)}")
    for name, (_, variable) in zip(names, flat):
        value = np.asarray(tensors[name])
        if value.shape != tuple(variable.shape):
            raise ParamsError(f"{source}: tensor {name} has shape {value.shape}, the model "
                              f"needs {tuple(variable.shape)}")
        variable.set_value(jnp.asarray(value, jnp.float32))
    return nnx.from_flat_state(flat)


def _some(names: list[str]) -> str:
    return "none" if not names else ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")
