"""CollapseWatch: the collapsed state judged from logged metrics, the same after a resume."""

import json
import math

from pretrain.collapse import CollapseWatch

# Logged every 10 steps by a quickstart CheXficient arm before the warm-up floor: curation on
# 19, 7 and 7 rows a step, then the subset phase at log(64) with vanishing gradients.
CURATED_RUN = [
    (10, dict(loss=2.948, grad_norm=0.2122, trained_rows=19.0)),
    (20, dict(loss=1.945, grad_norm=0.0800, trained_rows=7.0)),
    (30, dict(loss=1.947, grad_norm=0.0546, trained_rows=7.0)),
    (40, dict(loss=4.159, grad_norm=0.0184)),
    (50, dict(loss=4.158, grad_norm=0.0252)),
    (59, dict(loss=4.159, grad_norm=0.0180)),
]
# The full-data arm of the same quickstart: at log(64) but with large gradients, then learning.
LEARNING_RUN = [(10, dict(loss=4.161, grad_norm=0.3097)), (20, dict(loss=4.156, grad_norm=2.09)),
                (30, dict(loss=4.269, grad_norm=15.6)), (40, dict(loss=4.024, grad_norm=3.40))]


def judge(run, batch=64):
    watch = CollapseWatch(batch)
    return watch, [watch.update(step, m) for step, m in run]


def test_collapsed_after_three_logged_steps_at_log_rows_with_small_gradients():
    watch, lines = judge(CURATED_RUN)
    # Steps 20 and 30 sit at log(7), step 40 at log(64): the third in a row is the verdict.
    assert lines[:3] == [None] * 3 and lines[4:] == [None] * 2
    assert lines[3].startswith("step 40: collapsed since step 20")
    assert f"log(64) = {math.log(64):.3f}" in lines[3]
    assert watch.collapsed and watch.streak == 5


def test_a_run_with_large_gradients_at_chance_is_not_collapsed():
    watch, lines = judge(LEARNING_RUN)
    assert not watch.collapsed and lines == [None] * 4


def test_leaving_the_collapsed_state_is_said_once():
    watch, lines = judge(CURATED_RUN + [(70, dict(loss=3.9, grad_norm=2.0))])
    assert lines[-1] == "step 70: out of the collapsed state (loss 3.900)"
    assert not watch.collapsed and watch.since is None


def test_replay_of_a_resumed_runs_metrics_reaches_the_same_state(tmp_path):
    path = tmp_path / "metrics.jsonl"
    with open(path, "w") as f:
        for step, metrics in CURATED_RUN:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
            f.write(json.dumps({"step": step, "val/loss": 4.0}) + "\n")  # evaluation rows
        # A step logged after the checkpoint the run resumes from: not replayed.
        f.write(json.dumps({"step": 69, "loss": 3.0, "grad_norm": 5.0}) + "\n")
    through, _ = judge(CURATED_RUN)
    resumed = CollapseWatch(64)
    resumed.replay(str(path), until=59)
    assert (resumed.streak, resumed.since, resumed.collapsed) == (through.streak, through.since, True)
    fresh = CollapseWatch(64)
    fresh.replay(str(tmp_path / "missing.jsonl"), until=59)
    assert fresh.streak == 0
