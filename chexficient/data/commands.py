"""`chexficient data build|show|stats NAME`: build a dataset and its tokenizer, look, describe.

  build NAME               build the TFDS dataset (e.g. synthetic_cxr/tiny) and train its
                           report tokenizer on the train reports; a no-op when both exist
                           (--force builds again); real datasets read your copy from
                           --manual_dir
  show NAME --out g.png    a grid of --n records of --split: images, report snippets, masks
  stats NAME [--out s.json] per-finding label rates, duplicates, mismatches, degraded images,
                           report lengths, and the dataset's own labels that map to no
                           finding (unmapped) or that its table does not know (unknown),
                           with their counts, of --split
"""

from __future__ import annotations

import collections
import json
import os
import sys
from typing import Any, Callable

import numpy as np
from absl import flags
from tqdm import tqdm

from chexficient.data import registry
from chexficient.data.builders import BUILD_SOURCE, _common
from chexficient.io import write_atomic
from chexficient.data.records import RecordError, RecordReader
from chexficient.data.tokenizer import Tokenizer
from chexficient.data.visualize import save_grid
from chexficient.findings import FINDINGS, NEGATIVE, POSITIVE, UNCERTAIN, UNMENTIONED

_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, f"Where datasets live: this flag, else ${registry.DATA_DIR_ENV}, else "
    f"{registry.DEFAULT_DATA_DIR}.")
_MANUAL_DIR = flags.DEFINE_string(
    "manual_dir", None, "build: the folder holding your own copy of a real dataset (see "
    "docs/datasets.md for each dataset's expected layout).")
_FORCE = flags.DEFINE_bool(
    "force", False, "build: build again even when the dataset is there (after fixing or "
    "replacing your copy); the old build stays readable until the new one is complete.")
_SPLIT = flags.DEFINE_string("split", "train", "show / stats: the split to read.")
_N = flags.DEFINE_integer("n", 16, "show: how many records (the first N of the split).")
_OUT = flags.DEFINE_string("out", None, "show: the PNG to write (default NAME_SPLIT.png, '/' as "
                           "'_'); stats: also write the numbers as JSON here.")
_VOCAB_SIZE = flags.DEFINE_integer("vocab_size", 4000, "build / stats: tokenizer vocabulary "
                                   "size (scaled down, with a warning, for small corpora).")

STATS_FIELDS = ("id", "report", "labels", "view", "duplicate_of", "mismatched", "quality",
                "extra_labels")
"""What `stats` reads (those the dataset has): never the images."""


def build(name: str) -> None:
    """Builds NAME and its tokenizer (idempotent) and prints where they are."""
    builder, tokenizer = registry.prepare(name, _DATA_DIR.value, vocab_size=_VOCAB_SIZE.value,
                                          manual_dir=_MANUAL_DIR.value, force=_FORCE.value)
    for split, info in sorted(builder.info.splits.items()):
        print(f"{name} {split}: {info.num_examples} records"
              f"{_common.build_notes(builder.data_dir, split)}")
    unsplit = _common.unsplit_note(builder.data_dir)
    if unsplit:
        print(f"{name}: {unsplit}")
    print(f"files: {builder.data_dir}")
    if tokenizer is None:
        print("tokenizer: none (the dataset has no report text)")
    else:
        print(f"tokenizer: {registry.tokenizer_path(builder, _VOCAB_SIZE.value)} "
              f"({tokenizer.vocab_size} pieces)")


def show(name: str) -> None:
    """Writes a grid of the first --n records of --split to --out."""
    builder = registry.prepared_builder(name, _DATA_DIR.value)
    reader = RecordReader(builder.data_dir, _SPLIT.value, keys=tuple(builder.info.features))
    n = min(_N.value, len(reader))
    records = [reader(i) for i in range(n)]
    out = _OUT.value or f"{name.replace('/', '_')}_{_SPLIT.value}.png"
    save_grid(records, out, n)
    print(f"wrote {out} ({n} records of {name} {_SPLIT.value})")


def stats(name: str) -> None:
    """Prints the split's statistics as a table (and writes them as JSON with --out)."""
    builder = registry.prepared_builder(name, _DATA_DIR.value)
    result = split_stats(builder, _SPLIT.value, _VOCAB_SIZE.value)
    print(format_stats(name, result))
    if _OUT.value:
        write_atomic(_OUT.value, (json.dumps(result, indent=2) + "\n").encode())
        print(f"wrote {_OUT.value}")


def split_stats(builder, split: str, vocab_size: int) -> dict[str, Any]:
    """Counts over one split, reading everything but the images; bad records are counted."""
    keys = tuple(k for k in STATS_FIELDS if k in builder.info.features)
    reader = RecordReader(builder.data_dir, split, keys=keys)
    labels, reports, invalid = [], [], []
    audit: dict[str, list] = {k: [] for k in ("view", "duplicate_of", "mismatched", "quality",
                                              "extra_labels") if k in keys}
    for position in tqdm(range(len(reader)), desc=f"stats {split}", unit="rec", leave=False,
                         disable=None):  # a passing bar: terminals only
        try:
            record = reader(position)
        except RecordError as error:
            invalid.append({"id": error.record_id, "position": position, "problem": error.problem})
            continue
        labels.append(record["labels"])
        reports.append(record["report"])
        for key, values in audit.items():
            values.append(record[key])
    labels = np.stack(labels) if labels else np.zeros((0, len(FINDINGS)), np.int8)
    result: dict[str, Any] = {"split": split, "records": len(reader), "valid": len(reports),
                              "invalid": invalid, "findings": _label_rates(labels),
                              "reports": _report_lengths(reports, builder, vocab_size)}
    if "view" in audit:
        result["views"] = dict(sorted(collections.Counter(audit["view"]).items()))
    if "duplicate_of" in audit:
        result["duplicates"] = sum(bool(d) for d in audit["duplicate_of"])
    if "mismatched" in audit:
        result["mismatched"] = int(np.sum(audit["mismatched"]))
    if "quality" in audit:
        result["degraded"] = dict(sorted(collections.Counter(
            q for q in audit["quality"] if q != "good").items()))
    if "extra_labels" in audit:
        result.update(_extra_label_counts(audit["extra_labels"]))
    result.update(_build_counts(builder.data_dir, split))
    return result


def _build_counts(builder_dir: str, split: str) -> dict[str, Any]:
    """What the build left out of `split` (skipped, filtered out by reason) and of every
    split, for a real dataset built with these records; {} otherwise."""
    summary = _common.read_json(_common.build_summary_path(builder_dir, split))
    source = _common.read_json(os.path.join(builder_dir, BUILD_SOURCE)) or {}
    out: dict[str, Any] = {}
    if summary is not None:
        out["build"] = {"skipped": summary["skipped"], "filtered": summary["filtered"],
                        "skip_list": (_common.build_skips_path(builder_dir, split)
                                      if summary["skipped"] else None)}
    if source.get("in_no_split"):
        out["build"] = {**out.get("build", {}), "in_no_split": source["in_no_split"]}
    return out


def _extra_label_counts(extras: list[str]) -> dict[str, dict[str, int]]:
    """Records per dataset label in extra_labels' "unmapped" and "unknown" lists, most first."""
    counts = {"unmapped": collections.Counter(), "unknown": collections.Counter()}
    for text in extras:
        extra = json.loads(text) if text else {}
        for key, counter in counts.items():
            counter.update(dict.fromkeys(extra.get(key, ()), 1))
    return {f"{key}_labels": dict(counter.most_common()) for key, counter in counts.items()}


def format_stats(name: str, s: dict[str, Any]) -> str:
    """The statistics as a plain-text table."""
    lines = [f"{name} {s['split']}: {s['records']} records, {s['valid']} valid, "
             f"{len(s['invalid'])} invalid", "",
             f"{'finding':<27}{'positive':>9}{'negative':>9}{'uncertain':>10}{'unmentioned':>12}"]
    for finding, rates in s["findings"].items():
        lines.append(f"{finding:<27}{rates['positive']:>9.3f}{rates['negative']:>9.3f}"
                     f"{rates['uncertain']:>10.3f}{rates['unmentioned']:>12.3f}")
    lines.append("")
    for key in ("views", "duplicates", "mismatched", "degraded"):
        if key in s:
            lines.append(f"{key + ':':<27}{s[key]}")
    if "build" in s:
        lines += _format_build(s["build"])
    r = s["reports"]
    lines.append(f"{'identical reports:':<27}{r['identical']} (records whose report text "
                 f"repeats an earlier one)")
    lines.append(f"{'empty reports:':<27}{r['empty']}")
    for unit in ("words", "tokens"):
        if unit in r:
            q = r[unit]
            lines.append(f"{'report ' + unit + ':':<27}mean {q['mean']:.1f}  median "
                         f"{q['median']:.0f}  p95 {q['p95']:.0f}  max {q['max']:.0f}")
    for key, what in (("unknown_labels", "not in the dataset's label table"),
                      ("unmapped_labels", "no counterpart among the 14 findings")):
        if s.get(key):
            shown = ", ".join(f"{label} ({n})" for label, n in list(s[key].items())[:30])
            more = f", ... {len(s[key]) - 30} more" if len(s[key]) > 30 else ""
            lines.append(f"{key.replace('_', ' ') + ':':<27}{len(s[key])} labels, {what}: "
                         f"{shown}{more}")
    for bad in s["invalid"][:5]:
        lines.append(f"invalid: {bad['id']} (position {bad['position']}): {bad['problem']}")
    return "\n".join(lines)


def _format_build(build: dict[str, Any]) -> list[str]:
    """The build-time counts as table lines."""
    lines = []
    if "skipped" in build:
        listed = f" (listed in {build['skip_list']})" if build["skip_list"] else ""
        lines.append(f"{'skipped at build time:':<27}{build['skipped']}{listed}")
        lines.append(f"{'filtered out at build:':<27}{build['filtered'] or 'none'}")
    if build.get("in_no_split"):
        lines.append(f"{'in no split (left out):':<27}{build['in_no_split']}")
    return lines


def _label_rates(labels: np.ndarray) -> dict[str, dict[str, float]]:
    codes = {"positive": POSITIVE, "negative": NEGATIVE, "uncertain": UNCERTAIN,
             "unmentioned": UNMENTIONED}
    n = max(len(labels), 1)
    return {finding: {k: float(np.sum(labels[:, j] == code) / n) for k, code in codes.items()}
            for j, finding in enumerate(FINDINGS)}


def _report_lengths(reports: list[str], builder, vocab_size: int) -> dict[str, Any]:
    """Words per report; tokens with bos and eos (what text_len must hold) when the dataset's
    tokenizer is already built."""
    out: dict[str, Any] = {"identical": len(reports) - len(set(reports)),
                           "empty": sum(not r.strip() for r in reports),
                           "words": _summary([len(r.split()) for r in reports])}
    path = registry.tokenizer_path(builder, vocab_size)
    if reports and os.path.exists(path):
        out["tokens"] = _summary((Tokenizer(path).token_lengths(reports) + 2).tolist())
    return out


def _summary(values: list[int]) -> dict[str, float]:
    if not values:
        return {"mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}
    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "median": float(np.median(v)),
            "p95": float(np.percentile(v, 95)), "max": float(v.max())}


ACTIONS: dict[str, Callable[[str], None]] = {"build": build, "show": show, "stats": stats}


def main(argv: list[str]) -> None:
    """Entry point for absl `app.run`: argv = [program, ACTION, NAME] after flag parsing."""
    args = argv[1:]
    if len(args) != 2 or args[0] not in ACTIONS:
        print(f"usage: chexficient data {{{'|'.join(ACTIONS)}}} NAME [flags]; datasets: "
              f"{', '.join(registry.dataset_names())}\n{__doc__}", file=sys.stderr)
        sys.exit(2)
    action, name = args
    try:
        ACTIONS[action](name)
    except (ValueError, FileNotFoundError) as error:  # unknown names, bad files and records
        print(f"chexficient data {action}: {error}", file=sys.stderr)
        sys.exit(1)
