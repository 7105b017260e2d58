"""`chexficient data build|show|stats` as a user runs them, and the registry behind them."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from chexficient.data import registry
from chexficient.findings import index


def _data(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "chexficient.cli", "data", *args],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


def test_build_is_idempotent_and_says_where_things_are(micro):
    tokenizer = registry.tokenizer_path(micro.builder, micro.vocab_size)
    before = os.stat(tokenizer).st_mtime_ns
    run = _data("build", micro.name, "--data_dir", micro.data_dir)
    assert run.returncode == 0, run.stderr
    for split, info in micro.builder.info.splits.items():
        assert f"{micro.name} {split}: {info.num_examples} records" in run.stdout
    assert tokenizer in run.stdout
    assert os.stat(tokenizer).st_mtime_ns == before  # reused, not retrained


def test_stats_prints_a_table_and_writes_json(micro, tmp_path):
    out = tmp_path / "stats.json"
    run = _data("stats", micro.name, "--split", "validation", "--out", str(out),
                env={registry.DATA_DIR_ENV: micro.data_dir})  # the data dir from the environment
    assert run.returncode == 0, run.stderr
    stats = json.loads(out.read_text())
    source = registry.data_source(micro.name, "validation", micro.data_dir)
    records = [source[i] for i in range(len(source))]
    assert stats["records"] == stats["valid"] == len(records) and stats["invalid"] == []
    effusion = sum(int(r["labels"][index("Pleural Effusion")]) == 1 for r in records) / len(records)
    assert stats["findings"]["Pleural Effusion"]["positive"] == pytest.approx(effusion)
    assert stats["duplicates"] == sum(bool(r["duplicate_of"]) for r in records)
    assert stats["mismatched"] == sum(bool(r["mismatched"]) for r in records)
    degraded = sum(r["quality"] != b"good" for r in records)
    assert sum(stats["degraded"].values()) == degraded
    words = [len(r["report"].decode().split()) for r in records]
    assert stats["reports"]["words"]["max"] == max(words)
    assert "tokens" in stats["reports"]
    assert "Pleural Effusion" in run.stdout and "report words:" in run.stdout


def test_show_writes_a_png_grid(micro, tmp_path):
    out = tmp_path / "grid.png"
    run = _data("show", micro.name, "--split", "train", "--n", "4", "--out", str(out),
                "--data_dir", micro.data_dir)
    assert run.returncode == 0, run.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_names_list_the_valid_ones(micro):
    run = _data("stats", "synthetic_cxr/huge", "--data_dir", micro.data_dir)
    assert run.returncode == 1
    assert "unknown config 'huge'" in run.stderr
    assert "synthetic_cxr/micro" in run.stderr and "synthetic_cxr/tiny" in run.stderr
    with pytest.raises(registry.UnknownDatasetError, match="synthetic_cxr/micro"):
        registry.get_builder("no_such_dataset/micro")


def test_unbuilt_dataset_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="chexficient data build synthetic_cxr/micro"):
        registry.prepared_builder("synthetic_cxr/micro", str(tmp_path))
    run = _data("stats", "padchest/frontal", "--data_dir", str(tmp_path))  # a real dataset
    assert run.returncode == 1
    assert (f"chexficient data build padchest/frontal --data_dir {tmp_path} --manual_dir "
            "YOUR_COPY`") in run.stderr


def test_help_documents_the_actions_and_the_data_dir():
    run = _data("--help")
    assert "chexficient data build|show|stats NAME" in run.stdout  # the command's usage first
    assert "build NAME" in run.stdout and "stats NAME" in run.stdout
    assert registry.DATA_DIR_ENV in run.stdout and "--data_dir" in run.stdout


def test_data_dir_resolution_order(monkeypatch, tmp_path):
    monkeypatch.setenv(registry.DATA_DIR_ENV, str(tmp_path / "env"))
    assert registry.resolve_data_dir(str(tmp_path / "flag")) == str(tmp_path / "flag")
    assert registry.resolve_data_dir(None) == str(tmp_path / "env")
    monkeypatch.delenv(registry.DATA_DIR_ENV)
    assert registry.resolve_data_dir(None) == os.path.expanduser(registry.DEFAULT_DATA_DIR)
