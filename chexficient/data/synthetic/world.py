"""The synthetic world: every record of every split, from a seed, streamed in index order.

Record i of a split is a pure function of (seed, split, i): its patient, findings, pose,
noise and report come from random streams keyed by those numbers, so records can be made in
any order or in parallel and the same seed gives byte-identical records. The train split
is an imperfect pretraining pool (near-duplicate studies, mismatched reports, degraded
images, all recorded as audit truth); validation is clean; test and test_shift are clean
and stratified so that every finding has positives, test_shift at a held-out site.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
from collections.abc import Iterator, Mapping

import numpy as np

from chexficient.data.synthetic import acquisition, pathology, phantom, render
from chexficient.data.synthetic.details import Details, sample_details
from chexficient.data.synthetic.population import OBSERVATIONS, Population
from chexficient.data.synthetic.reports import write_report
from chexficient.findings import FINDINGS, UNCERTAIN, apply_no_finding_rule, binarize

SPLITS = ("train", "validation", "test", "test_shift")
SOURCE = "synthetic_cxr"
_SPLIT_CODE = {name: i for i, name in enumerate(SPLITS)}
_PATIENT, _STUDY, _PLACEMENT = range(3)  # independent random streams


@dataclasses.dataclass(frozen=True)
class WorldConfig:
    """What world to make: sizes, image size, the pool's imperfections, the label model."""

    seed: int = 0
    image_size: int = 128
    sizes: Mapping[str, int] = dataclasses.field(default_factory=lambda: {
        "train": 2048, "validation": 256, "test": 512, "test_shift": 256})
    duplicate_fraction: float = 0.5
    mismatch_fraction: float = 0.05
    degraded_fraction: float = 0.05
    population: Population = dataclasses.field(default_factory=Population)
    batch: int = 8
    """Records rendered together (fixed, so that every record sees the same computation)."""

    def __post_init__(self):
        if not 64 <= self.image_size <= 512:
            raise ValueError(f"image_size must lie in 64..512, got {self.image_size}")
        for name in ("duplicate_fraction", "mismatch_fraction", "degraded_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        unknown = set(self.sizes) - set(SPLITS)
        if unknown:
            raise ValueError(f"unknown splits {sorted(unknown)}; valid: {', '.join(SPLITS)}")


@dataclasses.dataclass(frozen=True)
class Patient:
    """A patient's anatomy, the findings in the image, and their report labels and details."""

    index: int
    anatomy: dict[str, float]
    present: np.ndarray  # bool [13] in OBSERVATIONS order: the image truth
    labels: np.ndarray   # int8 [14]: what a report of this patient says
    details: Details
    site: str
    habit: dict[str, float]  # usual pose and exposure at the site


@dataclasses.dataclass(frozen=True)
class Study:
    """Everything about record `index` of `split` except its pixels."""

    split: str
    index: int
    patient: Patient
    duplicate_of: int | None
    report_patient: Patient  # the patient whose findings the report describes
    quality: str
    imaging: dict[str, float]
    report: str

    @property
    def mismatched(self) -> bool:
        return self.report_patient.index != self.patient.index

    @property
    def image_labels(self) -> np.ndarray:
        """The image's true findings as int8[14] 0/1 (No Finding by the CheXpert rule)."""
        labels = np.zeros(len(FINDINGS), np.int8)
        labels[[FINDINGS.index(n) for n in OBSERVATIONS]] = self.patient.present
        return apply_no_finding_rule(labels)


def record_id(split: str, index: int) -> str:
    return f"{split}-{index:07d}"


class World:
    """Generates the records of a WorldConfig; `records(split)` streams them."""

    def __init__(self, config: WorldConfig):
        self.config = config

    def size(self, split: str) -> int:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        return int(self.config.sizes.get(split, 0))

    def study(self, split: str, index: int) -> Study:
        """The full specification of record `index` of `split` (no rendering)."""
        n = self.size(split)
        if not 0 <= index < n:
            raise IndexError(f"record {index} out of range for split {split!r} of {n} records")
        pool = split == "train"
        root = self._original(split, index) if pool else index
        patient = self._patient(split, root)
        rng = self._rng(split, index, _STUDY)
        quality = "good"
        if pool and rng.random() < self.config.degraded_fraction:
            quality = acquisition.QUALITIES[int(rng.integers(len(acquisition.QUALITIES)))]
        report_patient = patient
        if pool and rng.random() < self.config.mismatch_fraction:
            report_patient = self._other_patient(split, patient, rng)
        site = acquisition.SITES[patient.site]
        return Study(
            split=split, index=index, patient=patient,
            duplicate_of=root if root != index else None, report_patient=report_patient,
            quality=quality,
            imaging=acquisition.imaging(site, patient.anatomy["scale"], patient.habit, quality, rng),
            report=write_report(report_patient.labels, rng, site.report_style, report_patient.details))

    def records(self, split: str, start: int = 0, stop: int | None = None,
                workers: int = 2) -> Iterator[dict]:
        """Records start..stop-1 of `split` in order, rendered `batch` at a time on `workers`
        threads; at most 2 x workers batches are in memory at once."""
        stop = self.size(split) if stop is None else min(stop, self.size(split))
        b = self.config.batch
        chunks = range(start // b * b, stop, b)
        with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
            pending: collections.deque = collections.deque()
            for first in chunks:
                pending.append(pool.submit(self._render_chunk, split, first))
                if len(pending) >= 2 * max(1, workers):
                    yield from self._take(pending.popleft().result(), start, stop)
            while pending:
                yield from self._take(pending.popleft().result(), start, stop)

    @staticmethod
    def _take(records: list[tuple[int, dict]], start: int, stop: int) -> Iterator[dict]:
        return (r for i, r in records if start <= i < stop)

    def render_input(self, split: str, first: int) -> tuple[list[Study], dict[str, np.ndarray]]:
        """The studies of records first..first+batch-1 of `split` (the last one repeated to a
        full batch) and their stacked phantoms, imaging parameters and noise seeds."""
        last = min(first + self.config.batch, self.size(split))
        studies = [self.study(split, i) for i in range(first, last)]
        studies += [studies[-1]] * (self.config.batch - len(studies))
        phantoms = [self._phantom(s.patient, split) for s in studies]
        return studies, render.stack(
            phantoms, [s.imaging for s in studies],
            [hash_uint32(self.config.seed, _SPLIT_CODE[split], s.index) for s in studies])

    def _render_chunk(self, split: str, first: int) -> list[tuple[int, dict]]:
        """Renders records first..first+batch-1 (the batch is padded to a fixed size)."""
        studies, batch = self.render_input(split, first)
        images, masks = render.render(batch, self.config.image_size)
        count = min(self.config.batch, self.size(split) - first)
        return [(s.index, self._record(s, images[k], masks[k])) for k, s in enumerate(studies[:count])]

    def _record(self, study: Study, image: np.ndarray, mask: np.ndarray) -> dict:
        return {
            "id": record_id(study.split, study.index),
            "image": image,
            "report": study.report,
            "labels": study.report_patient.labels,
            "view": "lateral" if study.quality == "lateral" else "frontal",
            "source": SOURCE,
            "mask": mask,
            "patient_id": f"{study.split}-p{study.patient.index:07d}",
            "duplicate_of": "" if study.duplicate_of is None else record_id(study.split, study.duplicate_of),
            "mismatched": study.mismatched,
            "quality": study.quality,
        }

    def _phantom(self, patient: Patient, split: str) -> dict[str, np.ndarray]:
        uncertain = {n for n, v in zip(FINDINGS, patient.labels) if v == UNCERTAIN}
        p = pathology.build_phantom(patient.anatomy, patient.details, uncertain,
                                    self._rng(split, patient.index, _PLACEMENT))
        return p.arrays()

    def _patient(self, split: str, index: int) -> Patient:
        rng = self._rng(split, index, _PATIENT)
        pop = self.config.population
        anatomy = phantom.sample_anatomy(rng)
        if split in ("test", "test_shift"):
            present = pop.focused(rng, FINDINGS[index % len(FINDINGS)])
            labels = pop.labels(present, rng, hedge=False)
        else:
            present = pop.present(rng)
            labels = pop.labels(present, rng)
        site = (acquisition.SHIFT_SITE if split == "test_shift"
                else acquisition.POOL_SITES[int(rng.integers(len(acquisition.POOL_SITES)))])
        return Patient(index, anatomy, present, labels, sample_details(labels, rng), site,
                       acquisition.habit(rng))

    def _original(self, split: str, index: int) -> int:
        """The first study of a patient with repeated studies (index itself if original)."""
        frac = self.config.duplicate_fraction
        while index > 0 and unit(self.config.seed, _SPLIT_CODE[split], index, 0) < frac:
            back = 1 + int(unit(self.config.seed, _SPLIT_CODE[split], index, 1) * min(index, 64))
            index -= min(back, index)
        return index

    def _other_patient(self, split: str, patient: Patient, rng: np.random.Generator) -> Patient:
        """Another patient of the split whose findings differ from `patient`'s image."""
        truth = np.asarray(patient.present, np.int8)
        other = patient
        for _ in range(32):
            j = self._original(split, int(rng.integers(self.size(split))))
            other = self._patient(split, j)
            said = binarize(other.labels)[[FINDINGS.index(n) for n in OBSERVATIONS]]
            if j != patient.index and np.any(said != truth):
                break
        return other

    def _rng(self, split: str, index: int, stream: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, _SPLIT_CODE[split], index, stream])


def _hash(*keys: int) -> int:
    """splitmix64 chained over integer keys: a well-mixed 64-bit hash."""
    h = 0
    for k in keys:
        h = (h ^ (k & 0xFFFFFFFFFFFFFFFF)) + 0x9E3779B97F4A7C15 & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h


def hash_uint32(*keys: int) -> int:
    """A 32-bit hash of integer keys (noise seeds)."""
    return _hash(*keys) & 0xFFFFFFFF


def unit(*keys: int) -> float:
    """A uniform number in [0, 1) hashed from integer keys (cheap, order-free decisions)."""
    return (_hash(*keys) >> 11) / float(1 << 53)
