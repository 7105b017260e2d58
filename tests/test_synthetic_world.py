"""The synthetic world: determinism, population, masks vs images, pool audit truth, shift."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from chexficient.data.synthetic.population import OBSERVATIONS
from chexficient.data.synthetic.world import World, WorldConfig
from chexficient.findings import FINDINGS, POSITIVE, PREVALENCE, binarize

SMALL = dict(train=96, validation=16, test=56, test_shift=56)


@pytest.fixture(scope="module")
def world64() -> World:
    return World(WorldConfig(seed=11, image_size=64, sizes=SMALL))


@pytest.fixture(scope="module")
def train64(world64) -> list[dict]:
    return list(world64.records("train"))


@pytest.fixture(scope="module")
def test128() -> tuple[World, list[dict]]:
    world = World(WorldConfig(seed=5, image_size=128, sizes={"test": 56}))
    return world, list(world.records("test"))


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.asarray(a[k]).tobytes() == np.asarray(b[k]).tobytes() if isinstance(a[k], np.ndarray) else a[k] == b[k]
        for k in a)


def test_same_seed_gives_byte_identical_records_in_any_order(world64, train64):
    again = World(WorldConfig(seed=11, image_size=64, sizes=SMALL))
    window = list(again.records("train", start=13, stop=22, workers=1))
    assert [r["id"] for r in window] == [r["id"] for r in train64[13:22]]
    assert all(_same(a, b) for a, b in zip(window, train64[13:22]))
    other = next(World(WorldConfig(seed=12, image_size=64, sizes=SMALL)).records("train", 0, 1))
    assert other["image"].tobytes() != train64[0]["image"].tobytes()


def digest(records: list[dict]) -> str:
    """SHA-256 over every field of every record (names, dtypes, shapes and bytes), in order."""
    h = hashlib.sha256()
    for record in records:
        for key in sorted(record):
            value = record[key]
            h.update(key.encode())
            if isinstance(value, np.ndarray):
                h.update(f"{value.dtype}{value.shape}".encode() + value.tobytes())
            else:
                h.update(repr(value).encode())
    return h.hexdigest()


def test_records_are_byte_identical_to_world_2_0_0(train64, test128):
    """Pins the bytes this world version makes (x86-64 with AVX2/FMA, glibc 2.36): a speed-up
    of the renderer must leave them unchanged; a deliberate change of the world bumps the
    synthetic_cxr version and these digests."""
    assert digest(train64) == "0ae6f796f041f8166a1d83d00f80cd191560a8f3410cb182c54ee5b1c0bfc8ce"
    assert digest(test128[1]) == "ef810e0a284649a42cd400bdc2f87a2a756261b8f62c1dd3537fc5dde0303599"


def test_records_follow_the_contract(train64):
    for r in train64:
        assert r["image"].shape == (64, 64) and r["image"].dtype == np.uint8
        assert r["mask"].shape == (64, 64, 4) and r["mask"].dtype == np.uint8 and r["mask"].max() <= 1
        assert r["labels"].shape == (14,) and r["labels"].dtype == np.int8
        assert r["view"] in ("frontal", "lateral") and r["source"] == "synthetic_cxr"
        assert r["quality"] == "good" or r["view"] == "lateral" or r["quality"] != "lateral"
    assert len({r["id"] for r in train64}) == len(train64)


def test_pool_prevalence_and_imperfections_match_the_config():
    world = World(WorldConfig(seed=2, sizes={"train": 6000}))
    studies = [world.study("train", i) for i in range(6000)]
    labels = np.array([s.report_patient.labels for s in studies])
    for name in OBSERVATIONS:
        observed = np.mean(labels[:, FINDINGS.index(name)] == POSITIVE)
        assert abs(observed - PREVALENCE[name]) < max(0.035, 0.3 * PREVALENCE[name]), name
    assert 0.04 < np.mean(labels[:, 0] == POSITIVE) < 0.25  # No Finding: CheXpert has ~10%
    assert abs(np.mean([s.duplicate_of is not None for s in studies]) - 0.5) < 0.04
    assert abs(np.mean([s.mismatched for s in studies]) - 0.05) < 0.015
    assert abs(np.mean([s.quality != "good" for s in studies]) - 0.05) < 0.015
    clean = World(WorldConfig(seed=2, sizes={"train": 500}, duplicate_fraction=0.0, mismatch_fraction=0.0,
                              degraded_fraction=0.0))
    assert all(s.duplicate_of is None and not s.mismatched and s.quality == "good"
               for s in (clean.study("train", i) for i in range(500)))


def test_reports_state_the_image_unless_mismatched(world64):
    for i in range(SMALL["train"]):
        study = world64.study("train", i)
        said = binarize(study.report_patient.labels)
        assert np.array_equal(said, study.image_labels) != study.mismatched, i


def test_mismatched_reports_describe_another_patient():
    world = World(WorldConfig(seed=4, sizes={"train": 800}))
    mismatched = [s for s in (world.study("train", i) for i in range(800)) if s.mismatched]
    assert len(mismatched) > 20
    for s in mismatched:
        assert s.report_patient.index != s.patient.index
        assert np.any(binarize(s.report_patient.labels) != s.image_labels)


def test_near_duplicates_are_near_identical(world64, train64):
    by_id = {r["id"]: r for r in train64}
    pairs = [(r, by_id[r["duplicate_of"]]) for r in train64
             if r["duplicate_of"] and r["quality"] == "good" and by_id[r["duplicate_of"]]["quality"] == "good"]
    assert len(pairs) >= 20
    corr = lambda a, b: np.corrcoef(a["image"].ravel(), b["image"].ravel())[0, 1]  # noqa: E731
    dup = [corr(a, b) for a, b in pairs]
    others = [corr(train64[i], train64[j]) for i, j in zip(range(0, 40), range(40, 80))
              if train64[i]["patient_id"] != train64[j]["patient_id"]]
    assert np.median(dup) > 0.97 and np.median(dup) > np.median(others) + 0.05
    for a, b in pairs:
        assert a["patient_id"] == b["patient_id"] and (a["mismatched"] or b["mismatched"]
                                                       or np.array_equal(a["labels"], b["labels"]))


def test_test_split_has_positives_of_every_finding(world64):
    labels = np.array([world64.study("test", i).report_patient.labels for i in range(SMALL["test"])])
    assert (labels == POSITIVE).sum(0).min() >= 3
    assert not np.any(labels == -1)  # clean: no hedged labels


def test_lung_masks_cover_dark_fields_and_heart_width_gives_the_ratio(test128):
    world, records = test128
    ratios, cardiomegaly = [], []
    for r in records:
        image, mask = r["image"].astype(float), r["mask"].astype(bool)
        lungs = mask[..., 0] | mask[..., 1]
        mediastinum = mask[..., 2] & ~lungs
        assert image[lungs].mean() < image[mediastinum].mean() - 40, r["id"]
        cols = lambda m: np.flatnonzero(m.any(0))  # noqa: E731
        heart, thorax = cols(mask[..., 2]), cols(lungs)
        ratios.append((heart[-1] - heart[0] + 1) / (thorax[-1] - thorax[0] + 1))
        cardiomegaly.append(world.study("test", int(r["id"].split("-")[1])).image_labels[FINDINGS.index("Cardiomegaly")])
    ratios, cardiomegaly = np.array(ratios), np.array(cardiomegaly, bool)
    assert cardiomegaly.sum() >= 3
    assert np.all((ratios > 0.5) == cardiomegaly), list(zip(ratios.round(3), cardiomegaly))


def test_pathology_mask_marks_effusion_and_pneumothorax(test128):
    world, records = test128
    for r in records:
        truth = world.study("test", int(r["id"].split("-")[1])).image_labels
        if truth[FINDINGS.index("Pleural Effusion")] or truth[FINDINGS.index("Pneumothorax")]:
            assert r["mask"][..., 3].sum() > 20, r["id"]
        if truth[0]:  # no finding: nothing marked
            assert r["mask"][..., 3].sum() == 0, r["id"]


def test_shift_site_differs_in_images_and_reports(world64):
    test = list(world64.records("test"))
    shift = list(world64.records("test_shift"))
    contrast = lambda rs: np.mean([r["image"].std() for r in rs])  # noqa: E731
    brightness = lambda rs: np.mean([r["image"].mean() for r in rs])  # noqa: E731
    edges = lambda rs: np.mean([np.abs(np.diff(r["image"].astype(float), axis=1)).mean() for r in rs])  # noqa: E731
    assert abs(contrast(test) - contrast(shift)) > 3 or abs(brightness(test) - brightness(shift)) > 10
    assert edges(shift) > 1.15 * edges(test)
    passive = lambda rs: np.mean([("demonstrated" in r["report"]) or ("is seen" in r["report"]) for r in rs])  # noqa: E731
    assert passive(shift) > passive(test) + 0.3


def test_bad_config_and_indices_are_named():
    with pytest.raises(ValueError, match="image_size"):
        WorldConfig(image_size=32)
    with pytest.raises(ValueError, match="unknown splits"):
        WorldConfig(sizes={"training": 3})
    with pytest.raises(IndexError, match="test_shift"):
        World(WorldConfig(sizes={"test_shift": 4})).study("test_shift", 4)
