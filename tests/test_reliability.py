"""Bad input, catalogued: each row of docs/reliability.md names a test; those missing elsewhere
live here (damaged images, odd tables and reports, foreign or half-written checkpoints, a full
disk while checkpointing), plus a check that every test the page names exists."""

from __future__ import annotations

import ast
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pydicom
import pytest
from PIL import Image

from chexficient.checkpoint import CheckpointError, Checkpointer, fingerprint
from chexficient.data.builders import _common
from pretrain.config import base_config
from pretrain.train import check_finite
from real_fixtures import gradient, write_csv, write_dicom, write_png

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGE = os.path.join(REPO, "docs", "reliability.md")


def _entry(record_id: str, path: str) -> _common.Entry:
    return _common.Entry(id=record_id, path=path, report="Clear lungs.",
                         labels=np.zeros(14, np.int8), view="frontal")


def _load(entry: _common.Entry) -> dict:
    return entry.record(_common.load_image(entry.path, 16), "test")


def _bad_images(folder: str) -> dict[str, str]:
    """One file per kind of damaged image, by record id."""
    good = write_png(f"{folder}/good.png", gradient(40, 32))
    data = open(good, "rb").read()
    open(f"{folder}/truncated.png", "wb").write(data[:len(data) // 2])
    open(f"{folder}/zero.png", "wb").close()
    nopix = write_dicom(f"{folder}/nopix.dcm", gradient(8, 8))
    ds = pydicom.dcmread(nopix)
    del ds.PixelData
    ds.save_as(nopix)
    return {"truncated": f"{folder}/truncated.png", "zero_byte": f"{folder}/zero.png",
            "no_pixel_data": nopix, "missing": f"{folder}/gone.png"}


def test_damaged_images_and_repeated_ids_are_skipped_counted_and_listed(tmp_path):
    bad = _bad_images(str(tmp_path))
    good = str(tmp_path / "good.png")
    entries = [_entry("ok", good), *(_entry(i, p) for i, p in bad.items()), _entry("ok", good)]
    tally = _common.SplitTally(str(tmp_path), "test", "train")
    kept = [record_id for record_id, _ in _common.generate(entries, tally, _load)]
    assert kept == ["ok"] and tally.kept == 1
    rows = [line.split("\t") for line in open(tally.path).read().splitlines()[1:]]
    assert sorted((i, f) for i, f, _ in rows) == sorted([*bad.items(), ("ok", good)])
    why = {i: w for i, _, w in rows}
    assert "truncated" in why["truncated"] and "cannot identify" in why["zero_byte"]
    assert "Pixel Data" in why["no_pixel_data"] and "not found" in why["missing"]
    assert why["ok"] == f"duplicate id, first read from {good}"


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "P"])
def test_sixteen_bit_cmyk_and_palette_images_become_grayscale_uint8(tmp_path, mode):
    pixels = gradient(20, 20)
    if mode == "I;16":
        path = write_png(str(tmp_path / "x.png"), pixels.astype(np.uint16) * 200)
    elif mode == "CMYK":  # ink K = 255 - gray: the gray image, printed
        path = str(tmp_path / "x.jpg")
        cmyk = np.zeros((20, 20, 4), np.uint8)
        cmyk[..., 3] = 255 - pixels
        Image.fromarray(cmyk, "CMYK").save(path, quality=100)
    else:  # a palette of grays, indexed by the gray value
        path = str(tmp_path / "x.png")
        image = Image.fromarray(pixels, "L").convert("P", palette=Image.ADAPTIVE, colors=256)
        image.save(path)
        assert Image.open(path).mode == "P"
    image = _common.load_image(path, 20)
    assert image.dtype == np.uint8 and image.shape == (20, 20)
    stretched = _common.to_uint8(pixels.astype(np.float64))
    expected = stretched if mode == "I;16" else pixels
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= (8 if mode != "I;16" else 1)


def test_non_utf8_table_names_the_file(tmp_path):
    path = str(tmp_path / "reports.csv")
    open(path, "wb").write(b"id,report\nr1,caf\xe9 au lait\n")
    with pytest.raises(ValueError, match=f"{path}: not UTF-8 text"):
        _common.read_csv(path)
    open(path, "wb").write(b"\xffid,report\n")
    with pytest.raises(ValueError, match=f"{path}: not UTF-8 text"):
        _common.csv_header(path)


def test_enormous_report_cell_is_read_whole_and_parsed(tmp_path):
    sentence = "Small left pleural effusion. "
    text = "FINDINGS: " + sentence * 100_000 + "\nIMPRESSION: No pneumothorax."
    path = write_csv(str(tmp_path / "big.csv"), ["id", "report"], [["r1", text]])
    (row,) = _common.read_csv(path)
    assert len(row["report"]) == len(text)
    parts = _common.parse_report(row["report"])
    assert parts.impression == "No pneumothorax." and parts.findings.count("effusion") == 100_000


def test_empty_and_enormous_reports_encode_to_fixed_length(micro):
    text = "Moderate left pleural effusion. " * 50_000
    ids, mask = micro.tokenizer.encode(["", text], max_len=16)
    assert ids.shape == (2, 16) and mask[0].sum() == 2  # bos, eos
    assert mask[1].all() and ids[1, -1] == ids[0, 1]  # cut to max_len, eos kept


def test_a_short_row_names_file_and_line(tmp_path):
    path = str(tmp_path / "t.csv")
    open(path, "w").write("id,Path\na,x.png\nb\n")
    with pytest.raises(ValueError, match=f"{path} line 3: 1 cells, the header has 2"):
        _common.read_csv(path)


def test_mistyped_config_value_names_key_and_type():
    with pytest.raises(ValueError, match=r"config argument width='abc': expected int"):
        base_config("tiny,width=abc")


def test_infinite_loss_stops_the_run_naming_the_last_checkpoint(tmp_path):
    """Here none was saved yet, which the message says (it named 'step None' to resume from);
    test_train's NaN test has one to name."""
    ckpt = Checkpointer(str(tmp_path), every_steps=1, max_to_keep=2)
    assert check_finite({"loss": jnp.float32(1.5)}, 3, ckpt) == {"loss": 1.5}
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(FloatingPointError, match=f"loss became {bad} at step 4.*"
                                                      "No checkpoint was saved before it") as e:
            check_finite({"loss": jnp.float32(bad)}, 4, ckpt)
        assert "None" not in str(e.value)
    ckpt.close()


def _state():
    return ({"w": jnp.arange(6, dtype=jnp.float32)},
            {"step": jnp.asarray(7, jnp.int32), "ledger": jnp.full(5, -1, jnp.int32)})


def _save(directory: str, step: int = 7) -> None:
    model, train = _state()
    ckpt = Checkpointer(directory, every_steps=1, max_to_keep=3)
    ckpt.save(step, model, train, {"pos": step}, {"fingerprint": fingerprint(base_config("tiny"))},
              force=True)
    ckpt.close()


def test_foreign_checkpoint_is_an_error_naming_it(tmp_path):
    manager = ocp.CheckpointManager(str(tmp_path), item_names=("params",))
    manager.save(3, args=ocp.args.Composite(params=ocp.args.StandardSave({"x": jnp.ones(2)})))
    manager.close()
    model, train = _state()
    ckpt = Checkpointer(str(tmp_path), every_steps=1, max_to_keep=2)
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path}/3 is corrupt or incomplete"):
        ckpt.restore(model, train, base_config("tiny"))


def test_half_written_checkpoint_is_ignored_and_the_last_whole_one_restores(tmp_path):
    _save(str(tmp_path), 7)
    half = tmp_path / "9.orbax-checkpoint-tmp-1234" / "train"
    half.mkdir(parents=True)
    (half / "partial").write_bytes(b"\x00" * 10)
    model, train = _state()
    ckpt = Checkpointer(str(tmp_path), every_steps=1, max_to_keep=2)
    assert ckpt.latest_step() == 7
    m, t, data, _ = ckpt.restore(model, train, base_config("tiny"))
    assert data == {"pos": 7} and int(t["step"]) == 7
    ckpt.close()


FULL_DISK = textwrap.dedent("""
    import os, sys
    import jax.numpy as jnp
    from chexficient.checkpoint import Checkpointer, fingerprint
    from pretrain.config import base_config
    directory = sys.argv[1]
    meta = {"fingerprint": fingerprint(base_config("tiny"))}
    model = {"w": jnp.arange(4096, dtype=jnp.float32)}
    train = {"step": jnp.asarray(1, jnp.int32)}
    ckpt = Checkpointer(directory, every_steps=1, max_to_keep=5)
    ckpt.save(1, model, train, {"pos": 1}, meta, force=True)
    ckpt.wait()
    with open(os.path.join(directory, "filler"), "wb", buffering=0) as f:  # fill the disk
        try:
            while True:
                f.write(b"\\0" * 512)
        except OSError:
            pass
    try:
        ckpt.save(2, model, train, {"pos": 2}, meta, force=True)
        ckpt.close()
    except OSError as e:
        print("save failed:", type(e).__name__, e.errno)
    else:
        print("save succeeded")
    os.remove(os.path.join(directory, "filler"))
    fresh = Checkpointer(directory, every_steps=1, max_to_keep=5)
    _, t, data, _ = fresh.restore(model, train, base_config("tiny"))
    print("restored", fresh.latest_step(), data["pos"], sorted(os.listdir(directory)))
""")


def test_full_disk_while_checkpointing_keeps_the_last_whole_checkpoint(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("needs unprivileged user namespaces (unshare -rm) for a tiny tmpfs")
    env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
    script = (f"mount -t tmpfs -o size=256k none {mount} && "
              f"{sys.executable} -c '{FULL_DISK}' {mount}")
    run = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "save failed: OSError 28" in run.stdout, run.stdout
    assert "restored 1 1 ['1']" in run.stdout, run.stdout


def _named_tests() -> list[tuple[str, str]]:
    """(test file, test name) of every `tests/x.py::name` in the page's table."""
    return re.findall(r"`(tests/[\w/]+\.py)::(\w+)", open(PAGE).read())


def test_every_test_the_page_names_exists():
    named = _named_tests()
    assert len(named) >= 20
    for path, name in named:
        tree = ast.parse(open(os.path.join(REPO, path)).read())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"docs/reliability.md names {path}::{name}, which does not exist"


# ----------------------------------------------------------------------------- kill -9

RUN = """
import sys
sys.path.insert(0, {repo!r})
from tests.conftest import BuiltDataset, micro_config
from pretrain.train import train
micro = BuiltDataset({name!r}, {data_dir!r}, None, None, {vocab})
train(micro_config(micro, "chexficient", **{{"checkpoint.every_steps": 2}}), sys.argv[1])
"""
DETERMINISTIC = ("loss",)  # metrics.jsonl keys that must repeat; perf/* are wall-clock


def _metric_rows(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    # The run writes while this reads: what follows the last newline is a row still being written.
    lines = open(path).read().split("\n")[:-1]
    return [json.loads(line) for line in lines if line.strip()]


def _saving_step(workdir: str) -> int:
    """The step of a checkpoint being written now (its orbax tmp folder), else -1."""
    folder = os.path.join(workdir, "checkpoints")
    names = os.listdir(folder) if os.path.isdir(folder) else []
    steps = [int(n.split(".")[0]) for n in names if ".orbax-checkpoint-tmp" in n]
    return max(steps, default=-1)


def _kill_when(command: list[str], env: dict, fired) -> str:
    """Runs `command` and SIGKILLs it the moment `fired()` holds; returns what happened."""
    process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    while process.poll() is None:
        if fired():
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            return "killed"
        time.sleep(0.002)
    assert process.returncode == 0, process.stderr.read().decode()[-3000:]
    return "finished"


def _after(condition, delay: float):
    """A trigger that fires `delay` seconds after `condition` first holds."""
    start: list[float] = []

    def fired() -> bool:
        if not start and condition():
            start.append(time.time())
        return bool(start) and time.time() - start[0] >= delay
    return fired


def _final_state(workdir: str) -> list[np.ndarray]:
    """Every array of the last checkpoint: parameters, optimizer, curator state, ledger, rng."""
    manager = ocp.CheckpointManager(os.path.join(workdir, "checkpoints"),
                                    item_names=("model", "train"))
    restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
        model=ocp.args.StandardRestore(), train=ocp.args.StandardRestore()))
    manager.close()
    return [np.asarray(x) for x in jax.tree.leaves(dict(restored))]


@pytest.mark.slow
def test_sigkill_at_five_moments_then_resume_is_bitwise(micro, tmp_path):
    """SIGKILL during a checkpoint save, during the curator's scoring (curate) phase and at three
    seeded moments of the run; each time resumed. The end equals an uninterrupted run's."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jit_cache"),  # compile once, not 7 times
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")
    script = RUN.format(repo=REPO, name=micro.name, data_dir=micro.data_dir, vocab=micro.vocab_size)
    command = lambda workdir: [sys.executable, "-c", script, workdir]
    reference, workdir = str(tmp_path / "reference"), str(tmp_path / "killed")
    assert _kill_when(command(reference), env, lambda: False) == "finished"
    summary = json.load(open(f"{reference}/summary.json"))
    curate_end, total = summary["pool_size"] // 32, summary["step"]  # curation_epochs = 1
    rng = np.random.default_rng(19)
    later = sorted(rng.integers(3, total - 1, 3).tolist())  # a step at or before the resumed one
    # fires on the first row the resumed run logs
    moments = [("checkpoint save", None), ("curator scoring", int(rng.integers(3, curate_end))),
               *((f"step {s}", s) for s in later)]
    outcomes = []
    for name, step in moments:
        done = len(_metric_rows(workdir))
        if step is None:
            fired = lambda: _saving_step(workdir) >= 2
        else:
            reached = lambda step=step, done=done: any(
                r["step"] >= step for r in _metric_rows(workdir)[done:])
            fired = _after(reached, float(rng.uniform(0.0, 0.3)))
        outcomes.append((name, _kill_when(command(workdir), env, fired)))
    assert [o for _, o in outcomes] == ["killed"] * 5, outcomes
    assert _kill_when(command(workdir), env, lambda: False) == "finished"
    for a, b in zip(_final_state(reference), _final_state(workdir), strict=True):
        np.testing.assert_array_equal(a, b)
    ledgers = np.load(f"{reference}/ledger.npz"), np.load(f"{workdir}/ledger.npz")
    assert ledgers[0].files == ledgers[1].files
    for key in ledgers[0].files:
        np.testing.assert_array_equal(ledgers[0][key], ledgers[1][key])
    last = lambda rows: {r["step"]: {k: r[k] for k in DETERMINISTIC if k in r} for r in rows}
    assert last(_metric_rows(reference)) == last(_metric_rows(workdir))
