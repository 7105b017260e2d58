"""The bench suite on two real (briefly trained) checkpoints, a broken one and the random-init
reference: the side-by-side table, errors that name checkpoint / adapter / dataset without
stopping the rest, figures, and byte-identical results on a rerun."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest

from downstream import compare, suite
from downstream.config import bench_config
from pretrain.config import base_config
from pretrain.train import train


@pytest.fixture(scope="module")
def runs(micro, tmp_path_factory) -> list[str]:
    """Two workdirs of the real trainer (2 steps each, different seeds, milestones at both) on
    the micro world."""
    root = tmp_path_factory.mktemp("runs")
    workdirs = []
    for seed in (0, 1):
        config = base_config("tiny,batch_size=32")
        config.data.update(name=micro.name, data_dir=micro.data_dir, vocab_size=micro.vocab_size)
        config.update(seed=seed, total_steps=2, progress=False)
        config.checkpoint.every_steps = 2
        config.checkpoint.milestones = 0.5  # at steps 1 and 2
        config.eval.every_steps = 0
        workdir = str(root / f"run{seed}")
        train(config, workdir)
        workdirs.append(workdir)
    return workdirs


def _config():
    config = bench_config("quick,max_train=48,max_eval=48,n_resamples=10")
    config.adapters = ("zero_shot", "retrieval", "segmentation")
    config.segmentation.update(steps=2, fractions=(1.0,), overlays=1,
                               targets=dict(lungs=("left_lung", "right_lung"), bogus=("ribs",)))
    return config


def test_suite_two_checkpoints_and_reference_side_by_side(runs, tmp_path):
    broken = tmp_path / "broken"
    (broken / "checkpoints" / "3").mkdir(parents=True)
    out = str(tmp_path / "bench")
    summary = suite.run_bench([*runs, str(broken)], _config(), out)

    assert summary["columns"] == ["run0", "run1", "broken", "random_init"]
    for column in ("run0", "run1", "random_init"):
        assert set(summary["results"][column]) == {"zero_shot", "retrieval"}
        assert 0 <= summary["results"][column]["zero_shot"]["test_shift/auroc/mean"] <= 1
        message = summary["errors"][column]["segmentation"]
        assert "'segmentation'" in message and "synthetic_cxr/micro" in message
        assert "'bogus'" in message
    for column, path in zip(("run0", "run1"), runs):
        assert path in summary["errors"][column]["segmentation"]
    assert "randomly initialised" in summary["errors"]["random_init"]["segmentation"]
    assert str(broken) in summary["errors"]["broken"]["checkpoint"]
    assert summary["results"]["run0"] != summary["results"]["run1"]

    table = open(os.path.join(out, "results.md")).read()
    assert "| metric | run0 | run1 | broken | random_init |" in table
    assert "## zero_shot" in table and "## retrieval" in table and "## Errors" in table
    row = next(line for line in table.splitlines() if line.startswith("| test/i2t/R@1 |"))
    assert row.count("|") == 6 and row.split("|")[4].strip() == "-"  # broken column is empty
    for split in ("test", "test_shift"):
        assert os.path.getsize(os.path.join(out, f"zero_shot_auroc_{split}.png")) > 0
    assert json.load(open(os.path.join(out, "results.json"))) == summary
    # results.csv: one row per value of results.json, its bounds beside it, nothing else.
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    values = {(c, a, k): v for c, by in summary["results"].items() for a, m in by.items()
              for k, v in m.items()}
    assert len(rows) == len([k for k in values if not k[2].endswith(("/ci_low", "/ci_high"))])
    for row in rows:
        key = (row["column"], row["adapter"], row["metric"])
        for field, suffix in (("value", ""), ("ci_low", "/ci_low"), ("ci_high", "/ci_high")):
            expected = values.get((*key[:2], key[2] + suffix))
            assert (float(row[field]) if row[field] else None) == expected, (key, field)

    again = str(tmp_path / "again")
    suite.run_bench([*runs, str(broken)], _config(), again)
    assert open(os.path.join(again, "results.json")).read() == \
        open(os.path.join(out, "results.json")).read()


def test_a_rerun_into_the_same_out_reuses_only_the_cells_of_the_same_inputs(runs, tmp_path,
                                                                            monkeypatch):
    """An interrupted bench resumes: a finished cell (column x adapter) is reused, not
    recomputed, only while its checkpoint, data and adapter config are the ones asked for."""
    def config(n_resamples: int = 10):
        return bench_config(f"quick,max_eval=48,n_resamples={n_resamples},reference=0,"
                            "splits=test,adapters=zero_shot+retrieval")

    out = str(tmp_path / "bench")
    kept = {a: os.path.join(out, "run0", a, f) for a, f in (
        ("zero_shot", "zero_shot_scores_test.npz"), ("retrieval", "retrieval_ranks_test.npz"))}
    written = lambda: {a: os.stat(p).st_mtime_ns for a, p in kept.items()}  # noqa: E731
    first = suite.run_bench(runs[:1], config(), out)
    before = written()
    monkeypatch.chdir(tmp_path)  # the same OUT named relative to the working directory
    again = suite.run_bench(runs[:1], config(), "bench")  # nothing changed: nothing recomputed
    assert again == first and written() == before
    other = suite.run_bench(runs[:1], config(n_resamples=5), out)  # zero-shot's config changed
    assert written()["retrieval"] == before["retrieval"]
    assert written()["zero_shot"] != before["zero_shot"]
    ci = "test/auroc/mean/ci_low"
    assert other["results"]["run0"]["zero_shot"][ci] != first["results"]["run0"]["zero_shot"][ci]
    assert other["results"]["run0"]["retrieval"] == first["results"]["run0"]["retrieval"]
    # Another checkpoint under the same column name (another seed's weights): recomputed.
    swapped = suite.run_bench(runs[1:], config(), out, names=["run0"])
    assert swapped["results"]["run0"]["zero_shot"] != first["results"]["run0"]["zero_shot"]
    assert all(written()[a] != before[a] for a in kept)
    # A run of another config that stopped in the adapter leaves no finished cell behind: its
    # files may be half rewritten, so the config before is computed again, not reused.
    broken = config()
    broken.zero_shot.findings = ("Not a finding",)
    assert "zero_shot" in suite.run_bench(runs[:1], broken, out)["errors"]["run0"]
    assert not os.path.exists(os.path.join(out, "run0", "zero_shot"))  # nor its scores
    assert os.path.exists(os.path.join(out, "run0", "retrieval", suite.CELL))


def test_a_rerun_into_the_same_out_keeps_only_its_own_columns_and_adapters(runs, tmp_path):
    """A column or adapter dropped from a rerun into OUT leaves no files: the paired tests
    read exactly this run's scores (no retrieval ranks of an earlier config); what else OUT
    holds is left alone."""
    def config(adapters: str):
        return bench_config(f"quick,max_eval=48,n_resamples=0,reference=0,splits=test,"
                            f"adapters={adapters}")

    out = tmp_path / "bench"
    suite.run_bench(runs, config("zero_shot+retrieval"), str(out))
    assert "i2t" in compare.load_scores(str(out), "run0")
    (out / "notes").mkdir()
    (out / "notes" / "retrieval").mkdir()  # not a cell: its column was never the bench's
    (out / "notes" / "retrieval" / "mine.txt").write_text("mine")
    (out / "zero_shot_auroc_test_shift.png").write_bytes(b"")  # a split of an earlier run
    summary = suite.run_bench(runs[:1], config("zero_shot"), str(out))
    assert summary["columns"] == ["run0"]
    assert "i2t" not in compare.load_scores(str(out), "run0")
    assert sorted(os.listdir(out / "run0")) == ["zero_shot"]
    assert not (out / "run1").exists()
    assert (out / "notes" / "retrieval" / "mine.txt").read_text() == "mine"
    assert not (out / "zero_shot_auroc_test_shift.png").exists()
    assert (out / "zero_shot_auroc_test.png").exists()


def test_learning_curves_score_each_arm_at_its_size_reuse_points_and_refuse_other_data(
        micro, runs, tmp_path):
    """Each arm's curve is read at its own image size on the same test images (it was read at
    the first arm's size), matches the bench at that milestone, keeps its points for a resumed
    quickstart (recomputed when an input changes), and an arm of another dataset is refused."""
    from chexficient.quickstart import learning_curves

    config = base_config("tiny,batch_size=32,res=32")  # half the runs' image size
    config.data.update(name=micro.name, data_dir=micro.data_dir, vocab_size=micro.vocab_size)
    config.update(total_steps=1, progress=False)
    config.checkpoint.milestones = 1.0
    config.eval.every_steps = 0
    small = str(tmp_path / "small")
    train(config, small)
    bench = bench_config("quick,max_eval=48,n_resamples=0,reference=0,splits=test,"
                         "adapters=zero_shot")
    cache = tmp_path / "curves.json"
    curves = learning_curves({"full": runs[0], "small": small}, bench, cache=str(cache))
    assert [p["compute_fraction"] for p in curves["full"]] == pytest.approx([0.5, 1.0])
    scored = suite.run_bench([f"{small}/milestones@1"], bench, str(tmp_path / "b"))
    assert curves["small"][0]["zero-shot AUROC"] == pytest.approx(
        scored["results"]["small-milestones@1"]["zero_shot"]["test/auroc/mean"])
    # A resumed run reuses the kept points (a marked one comes back as kept) ...
    kept = json.loads(cache.read_text())
    assert len(kept) == 3
    first = next(k for k, point in kept.items() if point == curves["full"][0])
    kept[first]["zero-shot AUROC"] = -1.0
    cache.write_text(json.dumps(kept))
    assert learning_curves({"full": runs[0], "small": small}, bench,
                           cache=str(cache))["full"][0]["zero-shot AUROC"] == -1.0
    # ... but not for other test images: all recomputed.
    other = bench_config("quick,max_eval=40,n_resamples=0,reference=0,splits=test,"
                         "adapters=zero_shot")
    again = learning_curves({"full": runs[0]}, other, cache=str(cache))
    assert again["full"][0]["zero-shot AUROC"] != -1.0 and len(json.loads(cache.read_text())) == 2
    # An arm pretrained on another dataset would be scored on other images: refused by name.
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(small, elsewhere)
    saved = json.loads((elsewhere / "config.json").read_text())
    saved["data"]["name"] = "synthetic_cxr/tiny"
    (elsewhere / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ValueError, match="arm 'other' was pretrained on 'synthetic_cxr/tiny'"):
        learning_curves({"full": runs[0], "other": str(elsewhere)}, other, cache=str(cache))


def test_an_exported_model_is_benched_as_its_run(runs, tmp_path):
    """`chexficient export-model`'s folder is what a model is shared as: the bench reads it
    (it answered 'no checkpoint found') and scores it exactly as the run it came from."""
    from chexficient.export_model import export_model

    export_model(runs[0], str(tmp_path / "exported"))
    config = bench_config("quick,max_eval=48,n_resamples=5,reference=0,splits=test,"
                          "adapters=zero_shot+retrieval")
    summary = suite.run_bench([str(tmp_path / "exported"), runs[0]], config, str(tmp_path / "b"))
    assert summary["errors"] == {}
    assert summary["results"]["exported"] == summary["results"]["run0"]


def test_a_runs_milestones_folder_is_one_column_per_milestone(runs, tmp_path):
    config = bench_config("quick,max_eval=48,n_resamples=5,reference=0,splits=test,"
                          "adapters=zero_shot")
    summary = suite.run_bench([os.path.join(runs[0], "milestones"), runs[0]], config,
                              str(tmp_path / "b"))
    assert summary["columns"] == ["run0-milestones@1", "run0-milestones@2", "run0"]
    assert summary["errors"] == {}
    results = summary["results"]
    assert results["run0-milestones@2"] == results["run0"]  # the last step's weights
    assert results["run0-milestones@1"] != results["run0"]
    # Which step (and compute) each column was read at, in results.json and results.md.
    assert summary["read_at"] == {"run0-milestones@1": dict(step=1, compute_fraction=0.5),
                                  "run0-milestones@2": dict(step=2, compute_fraction=1.0),
                                  "run0": dict(step=2)}
    table = open(tmp_path / "b" / "results.md").read()
    assert "(step 1, 0.500 of full-data compute)" in table and "run0 (step 2)" in table


def test_an_empty_checkpoint_entry_is_refused_before_anything_runs(tmp_path):
    # `--checkpoints=RUN,` parses to ['RUN', '']: '' became a failing column named '.'.
    with pytest.raises(ValueError, match=r"empty entry, \['runs/a', ''\]: a doubled or trailing"):
        suite.run_bench(["runs/a", ""], _config(), str(tmp_path / "b"))
    assert not os.path.exists(tmp_path / "b")


def test_unknown_adapter_lists_valid_ones():
    config = _config()
    config.adapters = ("zero_shot", "vqa")
    with pytest.raises(ValueError, match=r"unknown adapter 'vqa'; valid: .*linear_probe"):
        suite.run_bench(["unused"], config, "unused")


def test_adapters_are_listed_in_a_process_whose_command_defined_the_same_flags():
    """The quickstart command defines `--out`, as the bench command does: listing the adapters
    (the bench's pruning does) must not import the bench command's flags a second time."""
    import subprocess
    import sys
    code = ("import chexficient.quickstart_command; from downstream import suite; "
            "print(','.join(suite.adapter_names()))")
    done = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert set(done.stdout.strip().split(",")) == {
        "zero_shot", "retrieval", "linear_probe", "segmentation", "report_generation"}


def test_column_names_are_short_and_unique():
    assert suite.column_names(["/a/run", "/b/run/", "/c/exp/checkpoints"]) == ["run#1", "run#2", "exp"]
    assert suite.column_names(["runs/full/milestones@4", "runs/cx/milestones@4", "runs/full@8",
                               "runs/full/checkpoints@8"]) == [
        "full-milestones@4", "cx-milestones@4", "full@8#3", "full@8#4"]


def test_checkpoint_keeps_its_tokenizer_when_the_dataset_loses_it(micro, runs, tmp_path):
    import shutil

    from chexficient.checkpoint import RUN_TOKENIZER
    from chexficient.data import registry
    from downstream.encoders import Encoders

    kept = os.path.join(runs[0], RUN_TOKENIZER)
    dataset_tokenizer = registry.tokenizer_path(micro.builder, micro.vocab_size)
    assert open(kept, "rb").read() == open(dataset_tokenizer, "rb").read()
    texts = ["Moderate left effusion.", "No pneumothorax."]
    before = Encoders.from_checkpoint(runs[0]).embed_texts(texts)

    moved = tmp_path / "run"  # the run alone, its dataset's tokenizer nowhere to be found
    shutil.copytree(runs[0], moved)
    config = json.load(open(moved / "config.json"))
    config["data"]["data_dir"] = str(tmp_path / "no_data_here")
    (moved / "config.json").write_text(json.dumps(config))
    after = Encoders.from_checkpoint(str(moved)).embed_texts(texts)
    assert (before == after).all()

    (moved / RUN_TOKENIZER).unlink()  # a run from before tokenizers were kept: the dataset's
    with pytest.raises(Exception, match="no_data_here"):
        Encoders.from_checkpoint(str(moved))


@pytest.fixture(scope="module")
def label_only_dir(tmp_path_factory) -> str:
    """A data dir holding a CheXpert and an RSNA build (labels, no reports; RSNA with masks)."""
    from tests import label_only_data as lo

    data_dir = str(tmp_path_factory.mktemp("label_only"))
    lo.build(lo.CHEXPERT, lo.write_chexpert(str(tmp_path_factory.mktemp("chexpert"))), data_dir)
    lo.build(lo.RSNA, lo.write_rsna(str(tmp_path_factory.mktemp("rsna"))), data_dir)
    return data_dir


@pytest.mark.parametrize("dataset,adapters", [
    ("chexpert/frontal", ("zero_shot", "linear_probe")),
    ("rsna_pneumonia/frontal", ("zero_shot", "linear_probe", "segmentation"))])
def test_a_label_only_dataset_is_benched_on_its_test_split(runs, label_only_dir, tmp_path,
                                                            dataset, adapters):
    """No tokenizer of the dataset is needed or trained (the run's own encodes the prompts),
    and the default eval splits `test+test_shift` score a real dataset on `test`, the one it has."""
    from chexficient.data import registry
    from tests.label_only_data import tokenizer_files

    config = bench_config("quick,max_train=48,max_eval=48,n_resamples=10,draws=1,reference=0,"
                          "probe_fractions=1,seg_fractions=1")
    assert config.data.eval_splits == ("test", "test_shift")  # the synthetic world's default
    config.adapters = adapters
    config.data.update(name=dataset, data_dir=label_only_dir)
    config.segmentation.update(steps=2, overlays=0)
    summary = suite.run_bench(runs[:1], config, str(tmp_path / "bench"))

    assert summary["errors"] == {}
    results = summary["results"]["run0"]
    assert set(results) == set(adapters)
    assert 0 <= results["zero_shot"]["test/auroc/mean"] <= 1
    assert 0 <= results["linear_probe"]["test/100%/auroc/mean"] <= 1
    if "segmentation" in adapters:
        assert 0 <= results["segmentation"]["test/100%/dice/Lung Opacity"] <= 1  # its channel
    assert not [k for r in results.values() for k in r if k.startswith("test_shift")]
    assert tokenizer_files(registry.prepared_builder(dataset, label_only_dir)) == []


def test_an_eval_split_the_dataset_lacks_is_left_out_only_if_optional(label_only_dir):
    from downstream.data import BenchData, MissingFieldsError
    from tests.label_only_data import CHEXPERT

    config = bench_config("quick").data
    config.update(name=CHEXPERT, data_dir=label_only_dir)

    def data(*splits: str) -> BenchData:
        return BenchData(config, image_size=32, eval_splits=splits)

    assert data("test", "test_shift").eval_splits == ("test",)
    assert data("validation", "test").eval_splits == ("validation", "test")
    only_shift = data("test_shift")
    with pytest.raises(MissingFieldsError, match=r"needs splits \['test_shift'\]"):
        only_shift.require("zero_shot", ("labels",), only_shift.eval_splits)
    other = data("test", "holdout")  # not optional: still an error naming it
    with pytest.raises(MissingFieldsError, match=r"needs splits \['holdout'\]"):
        other.require("zero_shot", ("labels",), other.eval_splits)
