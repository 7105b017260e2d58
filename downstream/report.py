"""Benchmark results on disk: results.json (strict JSON), results.md (rows = task/metric,
columns = checkpoints) and results.csv (one row per value), written atomically (chexficient.io).

A metric with bootstrap bounds (`<key>/ci_low`, `<key>/ci_high`) shows as one cell,
`value [low, high]`, one averaged over label draws with their spread (`<key>/sd`) as
`value ± sd`; a missing or undefined value shows as `-`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

Results = dict[str, dict[str, dict[str, float]]]
"""column (checkpoint) -> adapter -> metric -> value."""
Notes = dict[str, dict[str, str]]
"""column -> adapter (or "checkpoint") -> a message."""
_BOUNDS = ("/ci_low", "/ci_high", "/sd")
"""Suffixes of the keys that qualify another key's value rather than being metrics."""
COUNTS = ("n", "draws")
"""Last parts of the keys that count things, with those starting `n_` (`n_images`,
`n_empty_reports_skipped`): shown as integers."""


def _finite_or_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else float(value)


def to_json(results: Results, errors: Notes, meta: dict[str, Any],
            not_applicable: Notes | None = None) -> str:
    """Strict JSON (NaN -> null), keys in run order, so equal runs give equal files."""
    clean = {col: {a: {k: _finite_or_none(v) for k, v in m.items()} for a, m in by.items()}
             for col, by in results.items()}
    return json.dumps({**meta, "results": clean, "errors": errors,
                       "not_applicable": not_applicable or {}}, indent=2, allow_nan=False) + "\n"


def to_csv(results: Results, columns: list[str], adapters: list[str]) -> str:
    """Long-format CSV, one row per column, adapter and metric: `value` with its bootstrap
    `ci_low`/`ci_high` or its spread over label draws `sd` (empty where absent or undefined),
    the values of results.json at full precision, for pandas or a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["column", "adapter", "metric", "value", "ci_low", "ci_high", "sd"])
    for col in columns:
        for adapter in adapters:
            metrics = results.get(col, {}).get(adapter, {})
            for key in metrics:
                if key.endswith(_BOUNDS):
                    continue
                cells = [_finite_or_none(metrics.get(k)) for k in
                         (key, *(f"{key}{b}" for b in _BOUNDS))]
                writer.writerow([col, adapter, key, *("" if v is None else repr(v) for v in cells)])
    return out.getvalue()


def _cell(metrics: dict[str, float] | None, key: str) -> str:
    value = None if metrics is None else _finite_or_none(metrics.get(key))
    if value is None:
        return "-"
    last = key.rsplit("/", 1)[-1]
    if last in COUNTS or last.startswith("n_"):  # a count; averaged over draws, maybe not whole
        return f"{value:.0f}" if value == round(value) else f"{value:.1f}"
    text = f"{value:.4g}" if abs(value) >= 10 else f"{value:.3f}"
    low, high = (_finite_or_none(metrics.get(f"{key}/{b}")) for b in ("ci_low", "ci_high"))
    if low is not None and high is not None:
        return f"{text} [{low:.3f}, {high:.3f}]"
    sd = _finite_or_none(metrics.get(f"{key}/sd"))
    return f"{text} ± {sd:.3f}" if sd is not None else text


def to_markdown(results: Results, errors: Notes, columns: list[str], adapters: list[str],
                title: str, sources: dict[str, str] | None = None,
                not_applicable: Notes | None = None) -> str:
    """One table per adapter; rows are the union of the columns' metrics, in first-seen order.

    `sources` (column -> where it came from) is listed under the title; adapters that do not
    apply to a column, and errors, after the tables.
    """
    lines = [f"# {title}", ""]
    if sources:
        lines += [f"- **{col}**: {sources[col]}" for col in columns if col in sources] + [""]
    for adapter in adapters:
        rows: dict[str, None] = {}
        for col in columns:
            rows.update(dict.fromkeys(results.get(col, {}).get(adapter, {})))
        keys = [k for k in rows if not k.endswith(_BOUNDS)]
        lines += [f"## {adapter}", ""]
        if not keys:
            lines += ["(no results: see below)", ""]
            continue
        lines += ["| metric | " + " | ".join(columns) + " |",
                  "|---|" + "---|" * len(columns)]
        for key in keys:
            cells = [_cell(results.get(col, {}).get(adapter), key) for col in columns]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines.append("")
    for heading, notes in (("Not applicable", not_applicable or {}), ("Errors", errors)):
        if any(notes.values()):
            lines += [f"## {heading}", ""]
            for col in columns:
                lines += [f"- **{col}** / {what}: {msg}".replace("\n", " ")
                          for what, msg in notes.get(col, {}).items()]
            lines.append("")
    return "\n".join(lines)
