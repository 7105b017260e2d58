"""Checkpoints: round trip, and clear errors for corrupt or incompatible ones."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from chexficient.checkpoint import CheckpointError, Checkpointer, fingerprint
from pretrain.config import base_config


def _state():
    model = {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "b": jnp.ones(3, jnp.float32)}
    train = {"step": jnp.asarray(7, jnp.int32), "ledger": jnp.full(5, -1, jnp.int32)}
    return model, train


def _save(directory, config):
    model, train = _state()
    ckpt = Checkpointer(directory, every_steps=1, max_to_keep=2)
    ckpt.save(7, model, train, {"epoch": 1, "pos": 42}, {"fingerprint": fingerprint(config)}, force=True)
    ckpt.close()
    return model, train


def test_round_trip(tmp_path):
    config = base_config("tiny")
    model, train = _save(str(tmp_path), config)
    ckpt = Checkpointer(str(tmp_path), every_steps=1, max_to_keep=2)
    assert ckpt.latest_step() == 7
    m, t, data, meta = ckpt.restore(model, train, config)
    np.testing.assert_array_equal(m["w"], model["w"])
    np.testing.assert_array_equal(t["ledger"], train["ledger"])
    assert data == {"epoch": 1, "pos": 42} and meta["fingerprint"] == fingerprint(config)


def test_incompatible_config_names_the_keys(tmp_path):
    model, train = _save(str(tmp_path), base_config("tiny"))
    other = base_config("tiny,width=64")
    other.curator.name = "chexficient"
    ckpt = Checkpointer(str(tmp_path), every_steps=1, max_to_keep=2)
    with pytest.raises(CheckpointError) as e:
        ckpt.restore(model, train, other)
    assert "incompatible config" in str(e.value)
    assert "model.image.width: checkpoint has 128, config has 64" in str(e.value)
    assert "curator.name" in str(e.value)
    # ... and says what to do: set them back, or a new workdir, optionally from these weights.
    assert "--config.KEY=VALUE" in str(e.value) and "new --workdir" in str(e.value)
    assert f"--config.init_from.path={os.path.dirname(str(tmp_path))}" in str(e.value)


def test_corrupt_checkpoint_is_reported_not_restarted(tmp_path):
    config = base_config("tiny")
    model, train = _save(str(tmp_path), config)
    step_dir = tmp_path / "7" / "train"
    victims = [os.path.join(r, f) for r, _, fs in os.walk(step_dir) for f in fs]
    assert victims
    for path in victims:  # truncate every file of the item: unreadable, not missing
        with open(path, "wb") as f:
            f.write(b"\x00garbage")
    ckpt = Checkpointer(str(tmp_path), every_steps=1, max_to_keep=2)
    with pytest.raises(CheckpointError, match="corrupt or incomplete"):
        ckpt.restore(model, train, config)


@pytest.mark.parametrize("every_steps, expected", [(3, [3, 6, 9]), (0, [])])
def test_periodic_saves_follow_every_steps_and_zero_turns_them_off(tmp_path, every_steps, expected):
    ckpt = Checkpointer(str(tmp_path), every_steps=every_steps, max_to_keep=5)
    assert [step for step in range(1, 11) if ckpt.should_save(step)] == expected
    ckpt.close()
