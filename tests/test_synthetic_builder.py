"""The `synthetic_cxr` TFDS builder: builds micro, reads back through tfds.data_source."""

from __future__ import annotations

import glob
import os
import sys

import numpy as np
import tensorflow_datasets as tfds

from chexficient.data import registry
from chexficient.data.builders.synthetic_cxr import SyntheticCxr
from chexficient.data.synthetic.world import World
from chexficient.findings import NUM_FINDINGS

TEXT = ("id", "report", "view", "source", "patient_id", "duplicate_of", "quality")


def test_micro_builds_and_reads_back_the_world(micro):
    builder = micro.builder
    config = builder.builder_config
    assert config.name == "micro"
    assert {s: builder.info.splits[s].num_examples for s in builder.info.splits} == {
        "train": config.train, "validation": config.validation, "test": config.test,
        "test_shift": config.test_shift}
    assert glob.glob(os.path.join(builder.data_dir, "chexficient_synthetic_cxr-train.array_record-*"))
    world = World(config.world())
    for split in ("train", "test_shift"):
        source = tfds.data_source(builder.name + "/micro", split=split, data_dir=micro.data_dir)
        expected = list(world.records(split, 0, 9))
        for i in (0, 3, 8):
            got = source[i]
            for key in TEXT:
                assert isinstance(got[key], bytes)
                assert got[key].decode() == expected[i][key]
            assert got["image"].dtype == np.uint8 and got["image"].shape == (config.image_size,) * 2
            assert got["mask"].shape == (config.image_size, config.image_size, 4)
            assert got["labels"].dtype == np.int8 and got["labels"].shape == (NUM_FINDINGS,)
            for key in ("image", "mask", "labels"):
                assert got[key].tobytes() == expected[i][key].tobytes(), (split, i, key)
            assert bool(got["mismatched"]) == expected[i]["mismatched"]
    assert "tensorflow" not in sys.modules  # decoded by TFDS's numpy path


def test_configs_and_registry():
    sizes = {c.name: c.train for c in SyntheticCxr.BUILDER_CONFIGS}
    assert sizes["micro"] == 256 and 1500 < sizes["tiny"] < 3000
    assert 15000 < sizes["small"] < 30000 and 150000 < sizes["large"] < 300000
    clean = next(c for c in SyntheticCxr.BUILDER_CONFIGS if c.name == "tiny_clean").world()
    assert clean.duplicate_fraction == clean.mismatch_fraction == clean.degraded_fraction == 0.0
    assert all(c.image_size == 128 for c in SyntheticCxr.BUILDER_CONFIGS)
    assert "synthetic_cxr/tiny" in registry.dataset_names()
