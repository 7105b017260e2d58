"""`chexficient`'s errors as a user meets them: the user's own mistakes in one paragraph,
anything else with its traceback."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from chexficient import cli
from chexficient.data import registry


def _train(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chexficient.cli", "train",
                           "--config=configs/pretrain.py:tiny", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_an_error_the_user_can_fix_is_one_paragraph(tmp_path):
    run = _train(f"--workdir={tmp_path / 'w'}", "--config.data.name=synthetic_cxr/huge")
    assert run.returncode == 1
    assert "Traceback" not in run.stderr
    assert "chexficient train: error: unknown config 'huge'" in run.stderr
    assert "synthetic_cxr/tiny" in run.stderr and cli.TRACEBACK_ENV in run.stderr
    shown = _train(f"--workdir={tmp_path / 'w'}", "--config.data.name=synthetic_cxr/huge",
                   env={cli.TRACEBACK_ENV: "1"})
    assert shown.returncode == 1
    assert "Traceback" in shown.stderr and "registry.py" in shown.stderr


def test_a_mistyped_config_field_names_the_flag_and_the_likely_field(tmp_path):
    run = _train(f"--workdir={tmp_path / 'w'}", "--config.data.nmae=x")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "--config.data.nmae: the config has no field 'nmae'" in run.stderr
    assert '"name"' in run.stderr  # ml_collections' guess


def test_a_config_file_error_is_its_last_line_not_its_traceback(tmp_path):
    preset = _train(f"--workdir={tmp_path / 'w'}", "--config=configs/pretrain.py:tinyy")
    assert preset.returncode == 2 and "Traceback" not in preset.stderr
    assert "unknown config preset 'tinyy'; valid: tiny, small, base" in preset.stderr
    missing = _train(f"--workdir={tmp_path / 'w'}", "--config=configs/no_such_config.py")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert "the config file did not load" in missing.stderr
    assert "configs/no_such_config.py" in missing.stderr


def test_only_errors_raised_on_purpose_here_lose_their_traceback():
    with pytest.raises(registry.UnknownDatasetError) as ours:
        registry.get_builder("no_such_dataset/micro")
    assert cli.user_error(ours.value).startswith("unknown dataset 'no_such_dataset'")
    with pytest.raises(ValueError) as numpy_error:
        np.zeros((2, 3)).reshape(5)
    assert cli.user_error(numpy_error.value) is None  # a library's failure keeps its traceback
    with pytest.raises(ZeroDivisionError) as bug:
        cli._usage().count("x") / 0
    assert cli.user_error(bug.value) is None  # not a `raise` in the project's code
    assert cli.user_error(ValueError("never raised")) is None
