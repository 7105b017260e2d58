"""The pretrainer end to end on synthetic_cxr/micro: schedules, resume, sharding, failure modes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx

from chexficient.checkpoint import CheckpointError, load_model
from chexficient.data.tokenizer import Tokenizer
from chexficient.models import build_model
from pretrain.train import check_batch_sizes, init_towers_from, train
from tests.conftest import data_states, micro_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def params_of(workdir: str) -> list[np.ndarray]:
    model, _ = load_model(workdir)
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_curated_run_leaves_everything_a_user_expects(curated_run):
    workdir, summary = curated_run
    for name in ("config.json", "metrics.jsonl", "summary.json", "ledger.npz",
                 "curation_report.json", "curation_report.md", "plots/metrics.png"):
        assert os.path.exists(os.path.join(workdir, name)), name
    assert os.listdir(os.path.join(workdir, "tensorboard"))
    # Curation trains on part of the pool and so spends less than full-data training.
    assert 0 < summary["data_fraction"] < 1
    assert 0 < summary["compute_fraction"] < 1
    ledger = np.load(os.path.join(workdir, "ledger.npz"))
    kept = ledger["first_kept"] >= 0
    assert kept.mean() == pytest.approx(summary["data_fraction"])
    steps_per_epoch = summary["pool_size"] // 32
    assert ledger["first_kept"][kept].max() < steps_per_epoch  # only the curation epoch adds ids
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    curated = [r for r in rows if r["step"] <= steps_per_epoch and "loss" in r]
    assert curated and min(r["kept_fraction"] for r in curated) < 1.0
    assert all(r["perf/pairs_per_s"] > 0 for r in rows if "loss" in r)
    train_s = [r["perf/train_s"] for r in rows if "loss" in r]
    assert train_s == sorted(train_s) and train_s[-1] <= summary["wall_time_s"]
    # Tracing and compiling (or reading back) its two step programs, within its wall time.
    assert 0 < summary["step_compile_s"] < summary["wall_time_s"]
    # The audit stream: cluster occupancy and prototype drift once k-means has run.
    late = curated[-1]
    assert sum(late[f"cluster_size/{k}"] for k in range(6)) == 32
    assert late["prototype_drift"] >= 0
    assert json.load(open(os.path.join(workdir, "config.json")))["schedule"]["name"] == "chexficient"


def test_a_run_loads_from_a_relative_path(curated_run, monkeypatch):
    """As `chexficient quickstart --out=runs/quickstart` passes its reference run to the arms."""
    workdir, _ = curated_run
    expected = params_of(workdir)
    monkeypatch.chdir(os.path.dirname(workdir))
    relative = os.path.basename(workdir)
    for path in (relative, os.path.join(relative, "checkpoints")):
        for got, want in zip(params_of(path), expected, strict=True):
            np.testing.assert_array_equal(got, want)


def test_kill_and_resume_is_bitwise(micro, curated_run, tmp_path):
    reference, summary = curated_run
    workdir = str(tmp_path / "resumed")
    config = micro_config(micro, "chexficient")
    steps_per_epoch = summary["pool_size"] // 32
    for stop in (steps_per_epoch - 2, steps_per_epoch + 2):  # inside curation, then inside subset
        partial = train(config, workdir, stop_at_step=stop)
        assert partial["stopped_early"] and partial["step"] == stop
    resumed = train(config, workdir)
    assert resumed["step"] == summary["step"]
    for a, b in zip(params_of(reference), params_of(workdir)):
        np.testing.assert_array_equal(a, b)
    for key in ("first_kept", "score", "cluster"):
        np.testing.assert_array_equal(np.load(f"{reference}/ledger.npz")[key],
                                      np.load(f"{workdir}/ledger.npz")[key])


def test_curate_phase_scores_its_own_batch_and_resumes_bitwise(micro, tmp_path, capsys):
    """`curate_batch_size`: the curate phase reads 64 rows a step (its epoch has half the
    steps), the subset phase trains at the batch of 32, and kill/resume in either phase
    gives the uninterrupted run's parameters and ledger."""
    config = micro_config(micro, "chexficient", **{"schedule.curate_batch_size": 64,
                                                   "checkpoint.every_steps": 1})
    whole = str(tmp_path / "whole")
    summary = train(config, whole)
    curate_steps = summary["pool_size"] // 64
    assert f"phase 1/2 curate: steps 0 -> {curate_steps}, scoring 64 rows a step" in \
        capsys.readouterr().err
    ledger = np.load(f"{whole}/ledger.npz")
    kept = ledger["first_kept"] >= 0
    assert ledger["first_kept"][kept].max() < curate_steps
    assert (ledger["seen"] > 0).mean() > 0.95  # the curation epoch scored (nearly) every record
    rows = [json.loads(line) for line in open(f"{whole}/metrics.jsonl")]
    curated = [r for r in rows if r["step"] <= curate_steps and "loss" in r]
    assert sum(curated[-1][f"cluster_size/{k}"] for k in range(6)) == 64  # after warm-up
    assert summary["step"] == curate_steps + round(kept.sum() / 32)  # one subset epoch at 32
    workdir = str(tmp_path / "resumed")
    assert train(config, workdir, stop_at_step=curate_steps - 1)["stopped_early"]
    assert data_states(workdir, curate_steps - 1) == [{"next_index": (curate_steps - 1) * 64}]
    assert train(config, workdir, stop_at_step=curate_steps + 1)["stopped_early"]
    assert data_states(workdir, curate_steps + 1) == [{"next_index": 32}]  # the subset's stream
    train(config, workdir)
    for a, b in zip(params_of(whole), params_of(workdir), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.load(f"{workdir}/ledger.npz")["first_kept"],
                                  ledger["first_kept"])


def test_a_subset_smaller_than_a_batch_keeps_the_curation_for_a_smaller_batch(micro, tmp_path):
    workdir = str(tmp_path / "run")
    config = lambda batch: micro_config(micro, "chexficient", batch_size=batch,  # noqa: E731
                                        **{"curator.prototypes.warmup_batches": 1})
    with pytest.raises(ValueError, match="fewer than one batch of 128.*curate_batch_size=128"):
        train(config(128), workdir)
    assert sorted(os.listdir(f"{workdir}/checkpoints")) == ["2"]  # whole, no temporary left
    with pytest.raises(CheckpointError, match="shaped by the rows it scores a step"):
        train(config(16), workdir)  # its curator's state holds 128-row arrays
    smaller = config(16)
    smaller.schedule.curate_batch_size = 128  # the batch it scored: the curator's state fits
    summary = train(smaller, workdir)  # resumes after the curation epoch, on its subset
    kept = int(np.sum(np.load(f"{workdir}/ledger.npz")["first_kept"] >= 0))
    assert kept < 128 and summary["step"] == 2 + round(1 * kept / 16)


def test_incompatible_or_corrupt_workdir_is_refused(micro, curated_run, tmp_path):
    workdir = str(tmp_path / "copy")
    shutil.copytree(curated_run[0], workdir)
    saved = open(f"{workdir}/config.json").read()
    with pytest.raises(CheckpointError, match="model.image.width"):
        train(micro_config(micro, "chexficient", **{"model.image.width": 32}), workdir)
    assert open(f"{workdir}/config.json").read() == saved  # the refused config is not recorded
    load_model(workdir)  # so the run still loads
    latest = max(int(n) for n in os.listdir(f"{workdir}/checkpoints") if n.isdigit())
    for root, _, files in os.walk(f"{workdir}/checkpoints/{latest}/train"):
        for name in files:
            open(os.path.join(root, name), "wb").write(b"broken")
    with pytest.raises(CheckpointError, match="corrupt or incomplete"):
        train(micro_config(micro, "chexficient"), workdir)


def test_extending_a_finished_run_trains_to_the_new_end(micro, tmp_path, capsys):
    workdir = str(tmp_path / "run")
    config = lambda steps: micro_config(micro, total_steps=steps, **{"checkpoint.every_steps": 10})  # noqa: E731
    assert train(config(30), workdir)["step"] == 30
    extended = train(config(60), workdir)
    assert "extending the run: end step 30 -> 60" in capsys.readouterr().err
    summary = json.load(open(f"{workdir}/summary.json"))
    assert extended["step"] == summary["step"] == 60 and not summary["stopped_early"]
    rows = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
    lr = {r["step"]: r["lr"] for r in rows if "loss" in r}
    assert list(lr) == list(range(2, 61, 2))  # one stream, continued where it ended
    assert lr[32] > lr[30]  # the schedule decays towards the new end, not the old one
    assert data_states(workdir, 60) == [{"next_index": 60 * 32}]  # the data stream went on
    assert not os.path.exists(f"{workdir}/ledger.npz")  # a full-data run selects nothing
    with pytest.raises(ValueError, match="end the run at step 40, before step 60"):
        train(config(40), workdir)


def test_extending_a_curated_run_adds_subset_epochs(micro, curated_run, tmp_path, capsys):
    reference, summary = curated_run
    workdir = str(tmp_path / "longer")
    shutil.copytree(reference, workdir)
    longer = train(micro_config(micro, "chexficient", total_epochs=3.0), workdir)
    assert f"end step {summary['step']} -> {longer['step']}" in capsys.readouterr().err
    subset = np.load(f"{reference}/ledger.npz")["first_kept"] >= 0
    # One more epoch of the kept records; curation is not run again.
    assert longer["step"] == summary["step"] + round(subset.sum() / 32)
    np.testing.assert_array_equal(np.load(f"{workdir}/ledger.npz")["first_kept"],
                                  np.load(f"{reference}/ledger.npz")["first_kept"])


def test_nan_loss_stops_and_keeps_last_good_checkpoint(micro, tmp_path):
    """A good step, then the run extended at an infinite learning rate: the NaN stops it,
    naming the last good checkpoint, and no checkpoint left behind holds a NaN."""
    workdir = str(tmp_path / "nan")
    train(micro_config(micro, **{"total_steps": 1, "checkpoint.every_steps": 1}), workdir)
    config = micro_config(micro, **{"total_steps": 3, "optim.lr": float("inf"),
                                    "optim.warmup_frac": 0.0, "checkpoint.every_steps": 1})
    with pytest.raises(FloatingPointError, match="The last good checkpoint is step [12] in"):
        train(config, workdir)
    saved = [n for n in os.listdir(f"{workdir}/checkpoints") if n.isdigit()]
    assert "1" in saved
    for step in saved:  # every checkpoint left behind holds finite parameters
        model, _ = load_model(workdir, step=int(step))
        assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(nnx.state(model)))


def test_one_and_eight_devices_give_the_same_losses(micro, tmp_path):
    script = f"""
import json, sys
sys.path.insert(0, {REPO!r})
from tests.conftest import BuiltDataset, micro_config
from pretrain.train import train
micro = BuiltDataset({micro.name!r}, {micro.data_dir!r}, None, None, {micro.vocab_size})
config = micro_config(micro, total_steps=4, log_every_steps=1)
config.mesh.update(json.loads(sys.argv[2]))
train(config, sys.argv[1])
"""
    losses = {}
    for name, devices, mesh in (("one", 1, {"data": 1, "fsdp": 1}), ("eight", 8, {"data": 4, "fsdp": 2})):
        env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
                   JAX_PLATFORMS="cpu")
        workdir = str(tmp_path / name)
        subprocess.run([sys.executable, "-c", script, workdir, json.dumps(mesh)], check=True,
                       env=env, cwd=REPO, capture_output=True)
        rows = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
        losses[name] = [r["loss"] for r in rows]
    assert len(losses["one"]) == 4
    np.testing.assert_allclose(losses["one"], losses["eight"], rtol=2e-4)


def _command(*args: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "chexficient.cli", *args], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_commands_are_quiet_by_default(micro, tmp_path):
    """A run shows its progress, one line per phase, evaluation and checkpoint, and warnings;
    the libraries' INFO lines (absl, orbax, jax) only with --verbosity."""
    info = re.compile(r"^I\d{4} ", re.MULTILINE)
    train_args = ["train", f"--workdir={tmp_path / 'run'}",
                  "--config=configs/pretrain.py:tiny,batch_size=32,res=64,width=64,twidth=64,"
                  "embed=64,text_len=32", f"--config.data.name={micro.name}",
                  f"--config.data.data_dir={micro.data_dir}", "--config.total_steps=2",
                  "--config.eval.every_steps=2", "--config.eval.batch_size=32"]
    quiet = _command(*train_args).stderr
    assert not info.findall(quiet)
    for line in ("phase 1/1 full: steps 0 -> 2", "step 2 evaluation: val/",
                 "step 2: checkpoint saved to"):
        assert line in quiet
    assert not info.findall(_command("data", "build", micro.name,
                                     f"--data_dir={micro.data_dir}").stderr)
    verbose = _command(*train_args, "--verbosity=0").stderr  # the finished run, restored
    assert len(info.findall(verbose)) > 10 and "resuming" in verbose


def test_mistyped_config_key_fails_at_launch(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "chexficient.cli", "train", "--config=configs/pretrain.py:tiny",
         f"--workdir={tmp_path}", "--config.optim.lrr=0.1"],
        cwd=REPO, capture_output=True, text=True)
    assert out.returncode != 0
    assert "lrr" in out.stderr
    assert not os.path.exists(tmp_path / "config.json")


def test_an_evaluation_split_the_data_lacks_fails_at_launch(micro, tmp_path):
    config = micro_config(micro, **{"eval.every_steps": 2, "eval.split": "holdout"})
    with pytest.raises(ValueError, match="has no split 'holdout'.*--config.eval.every_steps=0"):
        train(config, str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run" / "checkpoints")  # refused before any step


def test_a_batch_that_does_not_split_over_the_devices_fails_at_launch(micro):
    """Each batch a run reads must split over the devices; found at launch, naming the flag,
    not at the first step or evaluation (each process splits its rows over its devices)."""
    config = micro_config(micro, batch_size=30)
    with pytest.raises(ValueError, match=r"batch_size=30 does not split over the 4 devices.*"
                                         r"--config.batch_size to a multiple of 4"):
        check_batch_sizes(config, 4)
    check_batch_sizes(micro_config(micro, **{"eval.batch_size": 30}), 4)  # no evaluation: fine
    for key in ("eval.batch_size", "schedule.curate_batch_size"):
        config = micro_config(micro, **{"eval.every_steps": 2, key: 36})
        with pytest.raises(ValueError, match=rf"{key}=36 does not split over the 8 devices"):
            check_batch_sizes(config, 8)
    check_batch_sizes(micro_config(micro, **{"eval.every_steps": 2}), 8)


def test_a_mesh_that_does_not_fit_the_devices_fails_before_any_write(micro, tmp_path):
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match="fsdp=2 does not divide 1 devices: set --config.mesh"):
        train(micro_config(micro, **{"mesh.fsdp": 2}), str(workdir))
    assert not os.listdir(workdir)  # no tokenizer, config or metrics of a run never started


def test_resuming_with_another_tokenizer_is_an_error(tmp_path):
    from chexficient.checkpoint import RUN_TOKENIZER
    from chexficient.data.tokenizer import Tokenizer
    from pretrain.train import keep_run_tokenizer

    corpus = [f"Report {i}: moderate left effusion, no pneumothorax." for i in range(50)]
    first = Tokenizer.train(corpus, str(tmp_path / "a"), vocab_size=60)
    other = Tokenizer.train(corpus + ["Cardiomegaly with edema."] * 50, str(tmp_path / "b"),
                            vocab_size=70)
    keep_run_tokenizer(str(tmp_path), other)  # a launch refused before its first step left it
    keep_run_tokenizer(str(tmp_path), first)  # no checkpoint holds its ids: replaced
    assert (tmp_path / RUN_TOKENIZER).read_bytes() == first.model_proto
    (tmp_path / "checkpoints" / "4").mkdir(parents=True)
    keep_run_tokenizer(str(tmp_path), first)  # the same ids: resuming is fine
    assert (tmp_path / RUN_TOKENIZER).read_bytes() == first.model_proto
    with pytest.raises(ValueError, match="other token ids"):
        keep_run_tokenizer(str(tmp_path), other)


@pytest.fixture(scope="module")
def chexpert_dir(micro, tmp_path_factory) -> str:
    """A data dir holding micro and a label-only CheXpert build (no reports, no tokenizer)."""
    from tests import label_only_data as lo

    data_dir = str(tmp_path_factory.mktemp("chexpert_data"))
    shutil.copytree(micro.data_dir, data_dir, dirs_exist_ok=True)
    lo.build(lo.CHEXPERT, lo.write_chexpert(str(tmp_path_factory.mktemp("chexpert"))), data_dir)
    return data_dir


@pytest.mark.parametrize("mixture", ["", "synthetic_cxr/micro:0.5,chexpert/frontal:0.5"])
def test_clip_on_a_label_only_dataset_is_refused_in_one_line(micro, chexpert_dir, tmp_path,
                                                             mixture):
    """Alone or in a mixture, a dataset without reports stops CLIP pretraining at launch with
    one line naming it and what to use instead, and no tokenizer is trained on the way."""
    from chexficient.cli import user_error
    from chexficient.data import registry
    from tests.label_only_data import CHEXPERT, tokenizer_files

    config = micro_config(micro, total_steps=2, batch_size=8)
    config.data.update(name=CHEXPERT, data_dir=chexpert_dir, mixture=mixture)
    with pytest.raises(ValueError) as error:
        train(config, str(tmp_path / "clip"))
    message = user_error(error.value)
    assert message is not None and "\n" not in message
    assert re.match(r"dataset 'chexpert/frontal' has no report text .*chexpert_plus.*"
                    r"configs/supervised\.py", message)
    assert not os.path.exists(tmp_path / "clip" / "config.json")
    assert tokenizer_files(registry.prepared_builder(CHEXPERT, chexpert_dir)) == []
    assert not os.path.exists(os.path.join(chexpert_dir, "mixtures"))


def test_init_from_refuses_other_token_ids_and_other_shapes(curated_run, micro, tmp_path):
    """init_from copies weights as they are: a text tower trained on another tokenizer's ids
    (another dataset's run) or a parameter of another shape is an error naming it, where it
    was a NaN loss at step 1 (ids out of the table) or a silently scrambled text tower."""
    workdir, _ = curated_run
    _, config = load_model(workdir)
    fresh = lambda: build_model(config.model, nnx.Rngs(1))  # noqa: E731
    init_towers_from(fresh(), workdir, "both", micro.tokenizer)  # the run's own ids
    other = Tokenizer.train(["No acute findings.", "Small left pleural effusion."] * 20,
                            str(tmp_path / "other"), vocab_size=60)
    with pytest.raises(ValueError, match=r"another tokenizer \(that of synthetic_cxr/micro\)"
                                         r".*--config\.init_from\.towers=image"):
        init_towers_from(fresh(), workdir, "both", other)
    init_towers_from(fresh(), workdir, "image", other)  # the image tower reads no token ids
    config.model.image.image_size = config.model.image.image_size // 2
    with pytest.raises(ValueError, match=r"image\.pos_embed has shape"):
        init_towers_from(fresh(), workdir, "image", micro.tokenizer)


def test_config_json_names_its_paths_absolute(micro, tmp_path, monkeypatch):
    """Paths given relative to the launch directory are recorded absolute, so a resume, export
    or evaluation from elsewhere reads the same folders; a run recorded with relative paths is
    still the same experiment when relaunched from its directory."""
    from chexficient.quickstart import check_same_config
    from pretrain.train import resolve

    parent, name = os.path.split(micro.data_dir)
    monkeypatch.chdir(parent)
    config = micro_config(micro, **{"data.data_dir": name, "init_from.path": "runs/a@4",
                                    "reference.path": "~/ref"})
    resolved = resolve(config)[0]
    assert resolved.data.data_dir == micro.data_dir
    assert resolved.init_from.path == os.path.join(parent, "runs", "a@4")
    assert resolved.reference.path == os.path.expanduser("~/ref")
    assert resolved.data.subset == ""  # unset stays unset
    workdir = tmp_path / "run"
    workdir.mkdir()
    recorded = json.loads(resolved.to_json())
    recorded["data"]["data_dir"] = name  # as a run launched before recorded it
    (workdir / "config.json").write_text(json.dumps(recorded))
    check_same_config(config, str(workdir))
