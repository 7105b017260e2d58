"""Shared fixtures: the `synthetic_cxr/micro` world built once per test session, and a writer
of small TFDS datasets from serialized records (for subsets and deliberately bad records).
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Callable, Sequence

import ml_collections
import pytest
import tensorflow_datasets as tfds

from chexficient import compilation_cache

# One persistent compilation cache for the session's processes (both xdist workers and the
# commands tests start): the many small runs of the same configs compile each step once.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "chexficient-tests-jax-cache"))
compilation_cache.enable()

MICRO = "synthetic_cxr/micro"
MICRO_VOCAB = 4000  # the default: the micro corpus scales it down, as a small real one would


@dataclasses.dataclass(frozen=True)
class BuiltDataset:
    """A prepared dataset: its name, data dir, TFDS builder and tokenizer."""

    name: str
    data_dir: str
    builder: tfds.core.DatasetBuilder
    tokenizer: object
    vocab_size: int

    def data_config(self, **overrides) -> ml_collections.ConfigDict:
        """A `config.data` for the input pipeline on this dataset (augmentation on)."""
        values = dict(name=self.name, data_dir=self.data_dir, image_size=0, text_len=32,
                      vocab_size=self.vocab_size, on_error="raise", subset="", worker_count=0,
                      augment=dict(enabled=True, crop_scale=(0.85, 1.0), rotate_deg=5.0,
                                   brightness=0.1, contrast=0.1, noise_std=0.02))
        values.update(overrides)
        return ml_collections.ConfigDict(values)


@pytest.fixture(scope="session")
def micro(tmp_path_factory) -> BuiltDataset:
    """synthetic_cxr/micro and its tokenizer, built into a session temp dir (once per worker).

    Tests must treat it as read-only: copy it (or write a new dataset) to corrupt anything.
    """
    from chexficient.data import registry

    data_dir = str(tmp_path_factory.mktemp("chexficient_data"))
    builder, tokenizer = registry.prepare(MICRO, data_dir, vocab_size=MICRO_VOCAB)
    return BuiltDataset(MICRO, data_dir, builder, tokenizer, MICRO_VOCAB)


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> str:
    """A data dir holding synthetic_cxr/tiny and its tokenizer, for the slow end-to-end tests."""
    from chexficient.data import registry

    data_dir = str(tmp_path_factory.mktemp("tiny_data"))
    registry.prepare("synthetic_cxr/tiny", data_dir)
    return data_dir


@pytest.fixture
def write_tfds_dataset() -> Callable[..., str]:
    """Returns write(out_dir, features, split, serialized_records) -> out_dir.

    Writes one ArrayRecord shard plus TFDS metadata: a dataset that `tfds.builder_from_directory`
    (and so the pipeline's `subset` path) reads like any other.
    """
    from array_record.python.array_record_module import ArrayRecordWriter

    def write(out_dir: str, features: tfds.features.FeaturesDict, split: str,
              records: Sequence[bytes], name: str = "written") -> str:
        os.makedirs(out_dir, exist_ok=True)
        shard = os.path.join(out_dir, f"{name}-{split}.array_record-00000-of-00001")
        writer = ArrayRecordWriter(shard, "group_size:1")
        for record in records:
            writer.write(record)
        writer.close()
        info = tfds.core.SplitInfo(name=split, shard_lengths=[len(records)],
                                   num_bytes=os.path.getsize(shard))
        tfds.folder_dataset.write_metadata(data_dir=out_dir, features=features,
                                           split_infos=[info], version="1.0.0", check_data=False)
        return out_dir

    return write


def micro_config(micro, schedule: str = "full", **overrides):
    """A small model on the micro world; a few seconds per epoch on a CPU."""
    from pretrain.config import base_config

    config = base_config("tiny,batch_size=32,epochs=2,res=64,width=64,twidth=64,embed=64,text_len=32")
    config.data.update(name=micro.name, data_dir=micro.data_dir, vocab_size=micro.vocab_size)
    config.update(dict(log_every_steps=2, progress=False))
    config.eval.update(every_steps=0, batch_size=32, max_batches=2)
    config.checkpoint.every_steps = 4
    if schedule == "chexficient":
        config.curator.name = config.schedule.name = "chexficient"
        config.curator.prototypes.warmup_batches = 2
        config.curator.chexficient.max_per_cluster = 2
    for key, value in overrides.items():
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return config


def data_states(workdir: str, step: int) -> list[dict]:
    """The data-iterator states a run's checkpoint holds, one per process."""
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(f"{workdir}/checkpoints", item_names=("data",))
    data = manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))["data"]
    manager.close()
    return data["states"]


@pytest.fixture(scope="session")
def curated_run(micro, tmp_path_factory):
    """One uninterrupted CheXficient-schedule run, shared by the tests that only read it."""
    from pretrain.train import train

    workdir = str(tmp_path_factory.mktemp("curated"))
    return workdir, train(micro_config(micro, "chexficient"), workdir)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow end-to-end tests first: with `-n 2` each worker starts on a long test and the
    short ones fill in around them (xdist's worksteal evens out the rest)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
