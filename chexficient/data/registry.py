"""Dataset names -> TFDS builders, where their files live, and the tokenizer stored beside them.

A name is `dataset/config` (e.g. `synthetic_cxr/tiny`). Dataset `x` is the DatasetBuilder of
module `chexficient.data.builders.x`, imported only when asked for: a new dataset is one new
module there, with no edit here. TFDS knows it as `chexficient_x` (TFDS's own catalog has a
`chexpert`): `tfds.builder("chexficient_x/config", data_dir=...)` and `tfds.data_source(...)`
open what `chexficient data build x/config` wrote, and so does that name here.
"""

from __future__ import annotations

import glob
import importlib
import inspect
import json
import os
import pkgutil
import shutil
from typing import Iterator

import tensorflow_datasets as tfds
from absl import logging

from chexficient.data import builders
from chexficient.data.builders import BUILD_SOURCE, TFDS_PREFIX
from chexficient.data.records import RecordReader, SkipLog, default_skip_log
from chexficient.data.tokenizer import Tokenizer

DATA_DIR_ENV = "CHEXFICIENT_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/chexficient/data"
FILE_FORMAT = "array_record"


class UnknownDatasetError(ValueError):
    """A dataset or config name that no builder provides; the message lists the valid ones."""


def resolve_data_dir(data_dir: str | None = None) -> str:
    """`data_dir` if given, else $CHEXFICIENT_DATA_DIR, else ~/.cache/chexficient/data."""
    return os.path.expanduser(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def builder_names() -> list[str]:
    """Names of the builder modules in chexficient/data/builders; broken ones are logged."""
    names = []
    for module in pkgutil.iter_modules(builders.__path__):
        if module.name.startswith("_"):
            continue
        try:
            if _find_builder_class(module.name) is not None:
                names.append(module.name)
        except ImportError as e:
            logging.warning("dataset builder %r cannot be imported: %s", module.name, e)
    return sorted(names)


def dataset_names() -> list[str]:
    """Every valid `builder/config` name."""
    names = []
    for builder_name in builder_names():
        configs = _find_builder_class(builder_name).builder_configs
        names += [f"{builder_name}/{c}" for c in configs] if configs else [builder_name]
    return names


def builder_class(builder_name: str) -> type[tfds.core.DatasetBuilder]:
    """The DatasetBuilder class of dataset `builder_name` (or of its TFDS name); unknown names
    list the valid ones."""
    cls = _find_builder_class(builder_name.removeprefix(TFDS_PREFIX))
    if cls is None:
        raise UnknownDatasetError(f"unknown dataset {builder_name!r}; valid: "
                                  f"{', '.join(dataset_names()) or '(none installed)'}")
    return cls


def get_builder(name: str, data_dir: str | None = None, **kwargs) -> tfds.core.DatasetBuilder:
    """The builder for `builder/config` under the resolved data dir (not prepared here)."""
    builder_name, _, config = name.partition("/")
    builder_name = builder_name.removeprefix(TFDS_PREFIX)
    cls = builder_class(builder_name)
    if config and config not in cls.builder_configs:
        valid = [f"{builder_name}/{c}" for c in cls.builder_configs]
        raise UnknownDatasetError(f"unknown config {config!r} of dataset {builder_name!r}; "
                                  f"valid: {', '.join(valid) or builder_name}")
    kwargs.setdefault("file_format", FILE_FORMAT)
    return cls(config=config or None, data_dir=resolve_data_dir(data_dir), **kwargs)


def stored_image_size(name: str, data_dir: str | None = None) -> int:
    """The side S of the S x S images dataset `name` stores (from its config; needs no data)."""
    return int(get_builder(name, data_dir).info.features["image"].shape[0])


def prepared_builder(name: str, data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """The builder of a dataset already built; says how to build it when it is not."""
    builder = get_builder(name, data_dir)
    if not builder.is_prepared():
        command = f"chexficient data build {name} --data_dir {resolve_data_dir(data_dir)}"
        if needs_manual_dir(builder):
            command += (" --manual_dir YOUR_COPY` (YOUR_COPY: the folder holding your copy of "
                        "the dataset, laid out as docs/datasets.md draws it)")
        else:
            command += "`"
        raise FileNotFoundError(
            f"dataset {name!r} is not built in {builder.data_dir}; build it with `{command}")
    return builder


def needs_manual_dir(builder: tfds.core.DatasetBuilder) -> bool:
    """Whether the builder reads the user's own copy (a real dataset) from --manual_dir."""
    return bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))


def data_source(name: str, split: str, data_dir: str | None = None):
    """Random-access sequence of decoded records of a built dataset (`tfds.data_source`)."""
    return prepared_builder(name, data_dir).as_data_source(split)


def tokenizer_path(builder: tfds.core.DatasetBuilder, vocab_size: int) -> str:
    """Where the tokenizer asked for with `vocab_size` lives: beside the dataset's files."""
    return os.path.join(builder.data_dir, f"tokenizer_{vocab_size}.model")


def load_tokenizer(builder: tfds.core.DatasetBuilder, vocab_size: int) -> Tokenizer:
    """The dataset's tokenizer, trained on its train reports the first time it is asked for."""
    path = tokenizer_path(builder, vocab_size)
    if os.path.exists(path):
        return Tokenizer(path)
    logging.info("training a %d-piece tokenizer on %s train reports", vocab_size, builder.name)
    return Tokenizer.train(train_reports(builder), path.removesuffix(".model"), vocab_size)


def prepare(name: str, data_dir: str | None = None, *, vocab_size: int = 4000,
            manual_dir: str | None = None, force: bool = False
            ) -> tuple[tfds.core.DatasetBuilder, Tokenizer | None]:
    """Builds the dataset and its tokenizer unless already there (idempotent; with `force`,
    builds again and replaces the old copy once the new one is complete); a real dataset's
    builder reads the user's copy from `manual_dir`. Folders left by killed builds of this
    version are removed first. No tokenizer (None) for a dataset whose train split has no
    report text (CheXpert: labels only)."""
    builder = get_builder(name, data_dir)
    if builder.is_prepared() and not force:
        warn_if_other_copy(builder, manual_dir)
        return builder, _tokenizer(builder, name, vocab_size)
    remove_stale_builds(builder)
    if not builder.is_prepared():
        _build(builder, manual_dir)
        return builder, _tokenizer(builder, name, vocab_size)
    staging = os.path.join(os.path.dirname(builder.data_dir),
                           f"{STALE_PREFIX}rebuild{os.getpid()}_{builder.version}")
    try:
        staged = get_builder(name, staging)
        _build(staged, manual_dir)
        _tokenizer(staged, name, vocab_size)
        replace_dir(staged.data_dir, builder.data_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    builder = get_builder(name, data_dir)
    return builder, _tokenizer(builder, name, vocab_size)


STALE_PREFIX = "incomplete."
"""How TFDS (and a forced rebuild) names the folder a build writes into before it is done."""


def _build(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> None:
    """Writes the dataset's files (TFDS's download_and_prepare)."""
    config = tfds.download.DownloadConfig(
        manual_dir=os.path.expanduser(manual_dir) if manual_dir else None)
    builder.download_and_prepare(file_format=FILE_FORMAT, download_config=config)


def _tokenizer(builder: tfds.core.DatasetBuilder, name: str, vocab_size: int
               ) -> Tokenizer | None:
    """The dataset's tokenizer, trained when absent; None when it has no report text."""
    if not os.path.exists(tokenizer_path(builder, vocab_size)) and not has_report_text(builder):
        logging.warning("dataset %s has no report text: no tokenizer (labels and images only)",
                        name)
        return None
    return load_tokenizer(builder, vocab_size)


def remove_stale_builds(builder: tfds.core.DatasetBuilder) -> None:
    """Removes the folders that killed builds of this dataset version left beside it
    (`incomplete.*_<version>`; they never load, and can be gigabytes), each with a warning.
    Two builds of one dataset must not run at once."""
    parent = os.path.dirname(builder.data_dir)
    for path in sorted(glob.glob(os.path.join(glob.escape(parent),
                                              f"{STALE_PREFIX}*_{builder.version}"))):
        logging.warning("removing %s, left by a build that did not finish", path)
        shutil.rmtree(path, ignore_errors=True)


def replace_dir(new: str, old: str) -> None:
    """Moves folder `new` to `old`'s place, then deletes the old folder: readers see the old
    copy until the new one is in place (two renames, no copying)."""
    trash = os.path.join(os.path.dirname(old),
                         f"{STALE_PREFIX}replaced{os.getpid()}_{os.path.basename(old)}")
    os.rename(old, trash)
    try:
        os.rename(new, old)
    except OSError:
        os.rename(trash, old)
        raise
    shutil.rmtree(trash, ignore_errors=True)


def built_from(builder: tfds.core.DatasetBuilder) -> str | None:
    """The manual dir a real dataset was built from (None for a synthetic one, or a build
    from before this was recorded)."""
    path = os.path.join(builder.data_dir, BUILD_SOURCE)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("manual_dir")


def warn_if_other_copy(builder: tfds.core.DatasetBuilder, manual_dir: str | None) -> None:
    """Warns when `manual_dir` is not the folder the existing build was made from: that
    build is kept, and only --force builds from the new folder."""
    recorded = built_from(builder)
    if manual_dir and recorded and (os.path.realpath(os.path.expanduser(manual_dir))
                                    != os.path.realpath(recorded)):
        logging.warning("%s is already built, from --manual_dir=%s, not %s: kept as it is; "
                        "pass --force to build it again from the new folder", builder.name,
                        recorded, manual_dir)


def has_report_text(builder: tfds.core.DatasetBuilder) -> bool:
    """Whether any train report has text (a label-only dataset's answer reads them all)."""
    return any(report.strip() for report in train_reports(builder))


def train_reports(builder: tfds.core.DatasetBuilder) -> Iterator[str]:
    """The train split's reports, decoding nothing else; bad records are skipped and listed."""
    reader = RecordReader(builder.data_dir, "train", keys=("id", "report"), on_error="skip",
                          skip_log=SkipLog(default_skip_log(builder.data_dir, "train")))
    records = (reader(position) for position in range(len(reader)))
    return (r["report"] for r in records if r is not None)


def _find_builder_class(builder_name: str) -> type[tfds.core.DatasetBuilder] | None:
    if not builder_name.isidentifier():
        return None
    try:
        module = importlib.import_module(f"{builders.__name__}.{builder_name}")
    except ModuleNotFoundError as e:
        if e.name != f"{builders.__name__}.{builder_name}":
            raise  # the module exists but one of its imports is missing: say so
        return None
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if (issubclass(obj, tfds.core.DatasetBuilder)
                and getattr(obj, "name", None) == TFDS_PREFIX + builder_name):
            return obj
    return None
