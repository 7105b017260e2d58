"""Writers of tiny fixture trees in the real datasets' exact layouts (images, DICOM, CSV, gzip)
and a helper that builds a real-dataset builder from one and reads its records back.
"""

from __future__ import annotations

import csv
import functools
import gzip
import io
import os
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def gradient(height: int, width: int, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    """A deterministic test picture: a left-to-right ramp plus a bright square, full range."""
    top = np.iinfo(dtype).max
    ramp = np.linspace(0, top // 2, width)[None, :].repeat(height, 0)
    ramp[height // 4: height // 2, width // 4: width // 2] = top
    rng = np.random.default_rng(seed)
    return np.clip(ramp + rng.integers(0, max(top // 64, 1), (height, width)), 0, top).astype(dtype)


@functools.lru_cache(maxsize=2)
def synthetic_radiographs(n: int = 48, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 128, 128], views [n]) of the synthetic world taken badly on purpose:
    about a fifth are laterals (the phantom seen from the side), the rest frontals that are
    rotated, noisy, over- or underexposed."""
    from chexficient.data.synthetic.world import World, WorldConfig

    world = World(WorldConfig(seed=seed, image_size=128, sizes={"train": n},
                              degraded_fraction=0.99, duplicate_fraction=0.0,
                              mismatch_fraction=0.0))
    records = list(world.records("train"))
    return np.stack([r["image"] for r in records]), np.array([r["view"] for r in records])


def _parent(path: str) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return path


def write_png(path: str, pixels: np.ndarray) -> str:
    """8-bit (uint8) or 16-bit (uint16, as PNG I;16) grayscale PNG."""
    Image.fromarray(pixels).save(_parent(path), format="PNG")
    return path


def write_jpeg(path: str, pixels: np.ndarray) -> str:
    """8-bit JPEG, grey (H x W) or RGB (H x W x 3)."""
    Image.fromarray(pixels.astype(np.uint8)).save(_parent(path), format="JPEG", quality=95)
    return path


def write_garbage(path: str) -> str:
    """A file that no image reader accepts, under an image's name."""
    with open(_parent(path), "wb") as f:
        f.write(b"not an image at all\x00\x01")
    return path


def write_dicom(path: str, pixels: np.ndarray, *, photometric: str = "MONOCHROME2",
                window: tuple[float, float] | None = None,
                rescale: tuple[float, float] | None = None, **elements: Any) -> str:
    """An uncompressed single-frame DICOM (Secondary Capture, proper file meta) of uint8 or
    uint16 `pixels`, with optional window (center, width) and rescale (slope, intercept)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(path, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.PatientID = elements.pop("PatientID", "anonymous")
    bits = 8 if pixels.dtype == np.uint8 else 16
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    ds.save_as(_parent(path), enforce_file_format=True)
    return path


def write_csv(path: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A CSV with exactly `header` (quirks included); gzipped when `path` ends in .gz."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    data = buffer.getvalue().encode()
    with open(_parent(path), "wb") as f:
        f.write(gzip.compress(data, mtime=0) if path.endswith(".gz") else data)
    return path


def write_text(path: str, text: str) -> str:
    with open(_parent(path), "w", encoding="utf-8") as f:
        f.write(text)
    return path


def build(builder_class: type[tfds.core.GeneratorBasedBuilder], config: tfds.core.BuilderConfig,
          manual_dir: str, data_dir: str) -> tuple[tfds.core.DatasetBuilder,
                                                   dict[str, list[dict[str, Any]]]]:
    """Builds `builder_class` with `config` from `manual_dir` into `data_dir` (ArrayRecord);
    returns the builder and every split's records, text fields decoded, keyed by split."""
    builder = builder_class(config=config, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    records = {}
    for split in builder.info.splits:
        source = builder.as_data_source(split)
        records[split] = [{k: v.decode() if isinstance(v, bytes) else v
                           for k, v in source[i].items()} for i in range(len(source))]
    return builder, records


def records_by_id(records: dict[str, list[dict]]) -> dict[str, dict]:
    """The records of every split of a `build` result, keyed by id."""
    return {r["id"]: r for split in records.values() for r in split}
