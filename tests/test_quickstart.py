"""The README's main job at its CI size: every arm trains, is benchmarked and lands in the table."""

import json
import math
import os
import shutil

import pytest

from chexficient.quickstart import (EQUAL, FLOOR, ROWS, TABLE, collapsed_note, holm_note,
                                    mean_curves, run_quickstart)
from chexficient import quickstart
from downstream.compare import METRICS


@pytest.mark.slow
def test_quickstart_table_has_every_row_and_metric(micro, tmp_path):
    out = str(tmp_path / "quickstart")
    table = run_quickstart(out, experiment="ci", data_dir=micro.data_dir)
    assert list(table) == list(ROWS)
    for row, values in table.items():
        for column, _, _ in TABLE:
            if (row, column) == ("supervised", "retrieval R@5"):  # no trained text tower
                assert math.isnan(values[column])
            else:
                assert math.isfinite(values[column]), (row, column)
    for arm in ("chexficient", "random", "learnability", "combined"):
        assert table[arm]["compute fraction"] < table["full"]["compute fraction"], arm
    # The random arm trains on as many records as CheXficient kept.
    assert table["random"]["data fraction"] == pytest.approx(table["chexficient"]["data fraction"],
                                                             abs=1 / 256)
    saved = json.load(open(os.path.join(out, "quickstart.json")))
    # Full data read at its milestone (every 25% of its compute in `ci`, at whole steps)
    # nearest the CheXficient arm's compute ...
    kept = [p["compute_fraction"] for p in saved["curves"]["full"]]
    target = table["chexficient"]["compute fraction"]
    assert table[EQUAL]["compute fraction"] == min(kept, key=lambda f: abs(f - target))
    assert abs(table[EQUAL]["compute fraction"] - target) <= 0.125
    # ... the supervised reference at the full arm's, and the floor at none.
    assert table["supervised"]["compute fraction"] == pytest.approx(1.0, abs=0.05)
    assert table[FLOOR]["compute fraction"] == 0
    assert set(saved["table"]) == set(ROWS)
    for other in ("random", EQUAL):
        assert set(saved["paired_tests"][other]) == set(METRICS)
        assert all(0 <= t["p"] <= t["p_holm"] <= 1 for t in saved["paired_tests"][other].values())
    curves = saved["curves"]
    # A milestone every 25% of full-data compute: 8 steps of 12.5% cross one every 2 steps.
    assert [p["compute_fraction"] for p in curves["full"]] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(0 < p["compute_fraction"] <= 1.0001 for arm in curves.values() for p in arm)
    assert os.path.exists(os.path.join(out, "auroc_vs_compute.png"))
    markdown = open(os.path.join(out, "quickstart.md")).read()
    assert "paired bootstrap" in markdown
    # Each contrastive arm's summary says whether it ended collapsed; the table carries it and
    # the markdown names exactly those arms.
    for arm in ("full", "chexficient", "random", "learnability", "combined"):
        summary = json.load(open(os.path.join(out, "arms", arm, "summary.json")))
        assert table[arm]["collapsed"] == float(summary["collapsed"]), arm
    assert collapsed_note(table, 1) in markdown
    # Rerun over the finished DIR (15 s): every run, bench cell and curve point reused (the
    # curves' 8 s take 4, loading each milestone for its digest), the same results; a point
    # marked in curves.json comes back marked, so it was read, not recomputed.
    kept = json.load(open(os.path.join(out, "curves.json")))
    marked = next(k for k, p in kept.items() if p == saved["curves"]["full"][0])
    kept[marked]["zero-shot AUROC"] = -1.0
    json.dump(kept, open(os.path.join(out, "curves.json"), "w"))
    run_quickstart(out, experiment="ci", data_dir=micro.data_dir)
    again = json.load(open(os.path.join(out, "quickstart.json")))
    assert again["curves"]["full"][0]["zero-shot AUROC"] == -1.0
    again["curves"]["full"][0]["zero-shot AUROC"] = saved["curves"]["full"][0]["zero-shot AUROC"]
    assert {k: again[k] for k in ("table", "curves", "paired_tests")} == \
        {k: saved[k] for k in ("table", "curves", "paired_tests")}


def test_holm_note_says_the_marks_are_per_test_and_names_what_survives_the_family():
    from downstream.compare import adjust_family

    # The clean control's tests (docs/experiments.md): three of eight have p < 0.05.
    p = {"random": [0.452, 0.046, 0.214, 0.360], EQUAL: [0.998, 0.004, 0.318, 0.0]}
    tests = {other: {metric: dict(p=v) for metric, v in zip(METRICS, values)}
             for other, values in p.items()}
    adjust_family(tests)
    assert tests["random"]["CheXpert-5 AUROC"]["p_holm"] == pytest.approx(0.046 * 6)
    assert tests[EQUAL]["CheXpert-5 AUROC"]["p_holm"] == pytest.approx(0.004 * 7)
    assert holm_note(tests) == (
        "\nThe marks and p are per test, not corrected for the 8 tests; with Holm's adjustment "
        "over them (`p_holm` in quickstart.json), p < 0.05 holds for CheXpert-5 AUROC against "
        "full data at equal compute, retrieval R@5 against full data at equal compute.\n")


def test_a_p_of_zero_is_printed_as_below_one_over_the_resamples():
    # small:clean's retrieval test (docs/experiments.md): no resample of 1000 crossed zero.
    test = dict(diff=-0.069, ci_low=-0.090, ci_high=-0.051, p=0.0, n_resamples=1000)
    table = quickstart.tests_markdown({EQUAL: {"retrieval R@5": test}})
    assert table.splitlines()[-1] == ("| full data at equal compute | retrieval R@5 | -0.069 | "
                                      "[-0.090, -0.051] | <0.001 |")


def test_mean_curves_match_seeds_by_milestone_not_by_position():
    # Milestones every 5%: seed 1's first step crossed 5% and 10% at once (it kept only 10%),
    # and seed 0 ran on to 20%. Averaged by position, 5% met 10% and 10% met 15%.
    point = lambda f, v: {"compute_fraction": f, "CheXpert-5 AUROC": v}  # noqa: E731
    seeds = [{"arm": [point(0.051, 0.60), point(0.102, 0.62), point(0.153, 0.64), point(0.2, 0.7)]},
             {"arm": [point(0.104, 0.66), point(0.151, 0.68)]}]
    mean = mean_curves(seeds, 0.05)["arm"]
    assert [p["compute_fraction"] for p in mean] == pytest.approx([0.103, 0.152])
    assert [p["CheXpert-5 AUROC"] for p in mean] == pytest.approx([0.64, 0.66])
    assert mean_curves(seeds[:1], 0.05) == seeds[0]  # one seed: its own points, all of them


def test_collapsed_note_names_the_collapsed_rows_and_their_seeds():
    table = {"full": {"collapsed": 0.0}, "chexficient": {"collapsed": 2 / 3},
             "supervised": {"collapsed": 0.0}}
    assert collapsed_note(table, 3).endswith(": chexficient (2 of 3 seeds).\n")
    assert collapsed_note({"full": {"collapsed": 0.0}}, 1) == ""


def test_a_finished_run_is_reused_only_for_the_same_config(micro, curated_run, tmp_path):
    from chexficient.quickstart import train_once
    from tests.conftest import micro_config

    reference, summary = curated_run
    workdir = str(tmp_path / "arm")
    shutil.copytree(reference, workdir)
    assert train_once(micro_config(micro, "chexficient"), workdir) == summary
    with pytest.raises(ValueError, match=r"optim.lr: the run has 0.001, this experiment has 0.002"
                                         r"(.|\n)*another --out"):
        train_once(micro_config(micro, "chexficient", **{"optim.lr": 2e-3}), workdir)


def test_experiment_arguments_select_pool_and_scale():
    from chexficient.quickstart import load_config

    cpu, clean = load_config("experiments/small"), load_config("experiments/small", "clean")
    accel = load_config("experiments/small", "clean,accel")
    assert cpu.dataset == "synthetic_cxr/small" and cpu.preset.startswith("tiny")
    assert clean.dataset == accel.dataset == "synthetic_cxr/small_clean"
    assert clean.preset == cpu.preset and accel.preset.startswith("small")
    assert cpu.seeds == (0, 1, 2)
    assert load_config("experiments/small", "clean,seeds=1").seeds == (0,)
    with pytest.raises(ValueError, match="'bogus'"):
        load_config("experiments/small", "bogus")
    with pytest.raises(ValueError, match="quickstart experiment takes no arguments"):
        load_config("experiments/quickstart", "bogus")
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        run_quickstart("unused", experiment="nope:clean")


@pytest.mark.parametrize("experiment", ["ci", "quickstart", "small", "small:clean,accel", "large"])
def test_every_curated_arm_of_every_experiment_selects_with_its_rule(experiment, monkeypatch):
    """Each curated arm's plan on its dataset's pool passes the schedule's checks without a
    warning: no prototype warm-up that takes most of a curate phase (a random pick under the
    rule's name)."""
    from absl import logging

    from chexficient.data.builders.synthetic_cxr import SyntheticCxr
    from chexficient.quickstart import arm_config, experiment_arms, load_experiment
    from pretrain import schedule

    pools = {f"synthetic_cxr/{c.name}": c.train for c in SyntheticCxr.BUILDER_CONFIGS}
    warnings = []
    monkeypatch.setattr(logging, "warning", lambda msg, *args: warnings.append(msg % args))
    spec = load_experiment(experiment)
    for arm in experiment_arms(spec):
        config = arm_config(arm, spec, data_dir="unused", seed=0, reference="unused")
        if config.schedule.name not in ("chexficient", "continuous"):
            continue
        schedule.make(config, pool_size=pools[spec.dataset], batch_size=config.batch_size,
                      embed_dim=config.model.embed_dim)  # raises where the rule never selects
    assert not warnings
