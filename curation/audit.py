"""What the curator did, shown to a person: curation_report.json + .md + plots.

Inputs are plain arrays over the pool (one row per record, in ledger order): the ledger
(`first_kept`: step a record was first kept, -1 never), and where available labels,
the synthetic world's audit truth, reports, cluster assignments and images. The report
gives the total kept fraction, per-finding retention (a finding lost, or kept at under
half its pool share, is flagged, rare ones loudest), per-source retention when the pool
is a mixture of datasets (flagged the same way), how near-duplicates, mismatched
pairs and degraded images fared, and for each prototype its most characteristic report
terms (class-based TF-IDF) and a strip of member images.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.feature_extraction.text import TfidfVectorizer

from chexficient.findings import FINDINGS, POSITIVE, RARE_FINDINGS
from chexficient.io import write_atomic

UNDER_KEPT = 0.5
"""A finding kept at under this fraction of its pool share is flagged."""

PLOTS_DIR = "curation_plots"


def finding_retention(kept: np.ndarray, labels: np.ndarray, under_kept: float = UNDER_KEPT) -> list[dict]:
    """Per finding: pool and kept counts and shares, retention, enrichment, and a flag
    ('lost': none kept; 'under-kept': kept share < under_kept x pool share)."""
    positive = np.asarray(labels) == POSITIVE
    n_pool, n_kept = len(kept), max(int(kept.sum()), 1)
    rows = []
    for j, name in enumerate(FINDINGS):
        pool_count = int(positive[:, j].sum())
        kept_count = int((positive[:, j] & kept).sum())
        pool_share, kept_share = pool_count / max(n_pool, 1), kept_count / n_kept
        enrichment = kept_share / pool_share if pool_count else None
        flag = ""
        if pool_count and kept_count == 0:
            flag = "lost"
        elif pool_count and enrichment < under_kept:
            flag = "under-kept"
        rows.append(dict(finding=name, rare=name in RARE_FINDINGS, pool_count=pool_count,
                         kept_count=kept_count, pool_share=pool_share, kept_share=kept_share,
                         retention=kept_count / pool_count if pool_count else None,
                         enrichment=enrichment, flag=flag))
    return rows


def truth_retention(kept: np.ndarray, duplicate_of: Sequence[str], mismatched: np.ndarray,
                    quality: Sequence[str]) -> dict[str, dict]:
    """Kept vs dropped for near-duplicates, mismatched pairs, each degradation and clean pairs.

    'relative' is the category's kept fraction over the overall one: below 1, the
    curator drops it more than average (what it should do with noise).
    """
    duplicate = np.array([bool(d) for d in duplicate_of])
    mismatched = np.asarray(mismatched, bool)
    quality = np.asarray(quality, dtype=object)
    degraded = quality != "good"
    masks = {"near_duplicate": duplicate, "mismatched": mismatched, "degraded": degraded,
             "clean": ~(duplicate | mismatched | degraded)}
    masks.update({f"degraded:{q}": quality == q for q in sorted(set(quality[degraded]))})
    overall = kept.mean() if len(kept) else 0.0
    out = {}
    for name, mask in masks.items():
        n, k = int(mask.sum()), int((mask & kept).sum())
        fraction = k / n if n else None
        out[name] = dict(pool=n, kept=k, dropped=n - k, kept_fraction=fraction,
                         relative=fraction / overall if n and overall else None)
    return out


def source_retention(kept: np.ndarray, sources: Sequence[str], under_kept: float = UNDER_KEPT
                     ) -> list[dict]:
    """Per source of a mixture (first-seen order): pool and kept counts, kept fraction, shares
    and 'relative' (kept fraction over the overall one); flag as for findings ('lost',
    'under-kept')."""
    sources = np.asarray(sources, dtype=object)
    n_pool, n_kept = len(kept), max(int(kept.sum()), 1)
    overall = kept.mean() if len(kept) else 0.0
    rows = []
    for name in dict.fromkeys(sources.tolist()):
        members = sources == name
        n, k = int(members.sum()), int((members & kept).sum())
        pool_share, kept_share = n / n_pool, k / n_kept
        flag = "lost" if k == 0 else ("under-kept" if kept_share < under_kept * pool_share else "")
        rows.append(dict(source=str(name), pool=n, kept=k, kept_fraction=k / n,
                         pool_share=pool_share, kept_share=kept_share,
                         relative=(k / n) / overall if overall else None, flag=flag))
    return rows


def characteristic_terms(reports: Sequence[str], clusters: np.ndarray, num_clusters: int,
                         n_terms: int = 8) -> list[list[str]]:
    """Top TF-IDF terms of each cluster, treating its members' reports as one document."""
    documents = [" ".join(r for r, c in zip(reports, clusters) if c == k) for k in range(num_clusters)]
    vectorizer = TfidfVectorizer(stop_words="english", ngram_range=(1, 2), sublinear_tf=True,
                                 token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
    try:
        weights = vectorizer.fit_transform(documents).toarray()
    except ValueError:  # no words at all (every report empty)
        return [[] for _ in range(num_clusters)]
    vocabulary = vectorizer.get_feature_names_out()
    return [[str(vocabulary[i]) for i in np.argsort(-row, kind="stable")[:n_terms] if row[i] > 0]
            for row in weights]


def describe_prototypes(kept: np.ndarray, clusters: np.ndarray, reports: Sequence[str] | None = None,
                        labels: np.ndarray | None = None, n_terms: int = 8) -> list[dict]:
    """Size, kept share, characteristic terms and commonest findings of each prototype."""
    clusters = np.asarray(clusters)
    num = int(clusters.max()) + 1 if clusters.size and clusters.max() >= 0 else 0
    terms = characteristic_terms(reports, clusters, num, n_terms) if reports is not None else None
    out = []
    for k in range(num):
        members = clusters == k
        entry = dict(prototype=k, members=int(members.sum()), kept=int((members & kept).sum()),
                     kept_fraction=float((members & kept).sum() / max(members.sum(), 1)))
        if terms is not None:
            entry["terms"] = terms[k]
        if labels is not None and members.any():
            share = (np.asarray(labels)[members] == POSITIVE).mean(axis=0)
            top = np.argsort(-share, kind="stable")[:3]
            entry["findings"] = {FINDINGS[j]: round(float(share[j]), 3) for j in top if share[j] > 0}
        out.append(entry)
    return out


def check_first_kept(first_kept: np.ndarray) -> np.ndarray:
    """The ledger's first-kept steps as an array; raises for a bool mask, whose True/False
    would read as steps 1/0: every record kept."""
    first_kept = np.asarray(first_kept)
    if first_kept.dtype == bool:
        raise ValueError("first_kept must be the ledger's steps (-1 = never kept), got a bool "
                         "mask; from a kept mask pass np.where(mask, 0, -1)")
    return first_kept


def build_report(first_kept: np.ndarray, *, labels: np.ndarray | None = None,
                 duplicate_of: Sequence[str] | None = None, mismatched: np.ndarray | None = None,
                 quality: Sequence[str] | None = None, reports: Sequence[str] | None = None,
                 clusters: np.ndarray | None = None, compute_fraction: float | None = None,
                 sources: Sequence[str] | None = None) -> dict:
    """The report as a JSON-ready dict; sections appear only when their inputs are given
    (`sources`: each record's dataset, for a mixture)."""
    first_kept = check_first_kept(first_kept)
    n = len(first_kept)
    for name, value in dict(labels=labels, duplicate_of=duplicate_of, mismatched=mismatched,
                            quality=quality, reports=reports, clusters=clusters,
                            sources=sources).items():
        if value is not None and len(value) != n:
            raise ValueError(f"{name} has {len(value)} rows but the ledger has {n} records")
    kept = first_kept >= 0
    report: dict[str, Any] = dict(records=n, kept=int(kept.sum()),
                                  kept_fraction=float(kept.mean()) if n else 0.0,
                                  compute_fraction=compute_fraction, flags=[])
    steps = np.sort(first_kept[kept])
    report["last_new_record_step"] = int(steps[-1]) if steps.size else None
    if labels is not None:
        report["findings"] = finding_retention(kept, labels)
        report["flags"] = [
            f"{'RARE ' if r['rare'] else ''}finding {r['finding']!r} {r['flag']}: "
            f"{r['kept_count']} of {r['pool_count']} kept (kept share {r['kept_share']:.3f} vs "
            f"pool share {r['pool_share']:.3f})"
            for r in sorted(report["findings"], key=lambda r: not r["rare"]) if r["flag"]]
    if sources is not None:
        report["sources"] = source_retention(kept, sources)
        report["flags"] += [
            f"source {r['source']!r} {r['flag']}: {r['kept']} of {r['pool']} kept (kept share "
            f"{r['kept_share']:.3f} vs pool share {r['pool_share']:.3f})"
            for r in report["sources"] if r["flag"]]
    if duplicate_of is not None and mismatched is not None and quality is not None:
        report["audit_truth"] = truth_retention(kept, duplicate_of, mismatched, quality)
    if clusters is not None:
        report["prototypes"] = describe_prototypes(kept, clusters, reports, labels)
    return report


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def render_markdown(report: dict) -> str:
    """The report for a person: summary, flags first, then the tables and plots."""
    lines = ["# Curation report", "",
             f"- records in pool: {report['records']}",
             f"- kept (ever): {report['kept']} ({report['kept_fraction']:.1%})",
             f"- compute fraction: {_fmt(report['compute_fraction'])}",
             f"- last step that kept a new record: {_fmt(report['last_new_record_step'])}", ""]
    if report["flags"]:
        lines += ["## Warnings: findings (or sources) the curator lost or under-kept", ""]
        lines += [f"- **{flag}**" for flag in report["flags"]] + [""]
    if "sources" in report:
        lines += ["## Per-source retention", "",
                  "| source | pool | kept | kept fraction | pool share | kept share | vs overall "
                  "| flag |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['source']} | {r['pool']} | {r['kept']} | {r['kept_fraction']:.3f} | "
                  f"{r['pool_share']:.3f} | {r['kept_share']:.3f} | {_fmt(r['relative'])} | "
                  f"{r['flag']} |" for r in report["sources"]]
        lines += [""]
    if "findings" in report:
        lines += ["## Per-finding retention", "",
                  "| finding | rare | pool | kept | pool share | kept share | retention | flag |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['finding']} | {'yes' if r['rare'] else ''} | {r['pool_count']} | "
                  f"{r['kept_count']} | {r['pool_share']:.3f} | {r['kept_share']:.3f} | "
                  f"{_fmt(r['retention'])} | {r['flag']} |" for r in report["findings"]]
        lines += ["", f"![retention]({PLOTS_DIR}/retention.png)", ""]
    if "audit_truth" in report:
        lines += ["## Noise and redundancy (synthetic audit truth)", "",
                  "| category | pool | kept | dropped | kept fraction | vs overall |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {name} | {r['pool']} | {r['kept']} | {r['dropped']} | {_fmt(r['kept_fraction'])} | "
                  f"{_fmt(r['relative'])} |" for name, r in report["audit_truth"].items()]
        lines += [""]
    for p in report.get("prototypes", []):
        lines += [f"## Prototype {p['prototype']}: {p['members']} members, {p['kept']} kept "
                  f"({p['kept_fraction']:.1%})", ""]
        if p.get("terms"):
            lines += ["Characteristic terms: " + ", ".join(p["terms"]), ""]
        if p.get("findings"):
            common = ", ".join(f"{k} {v:.0%}" for k, v in p["findings"].items())
            lines += [f"Commonest findings: {common}", ""]
        if p.get("strip"):
            lines += [f"![prototype {p['prototype']}]({p['strip']})", ""]
    lines += [f"![kept over steps]({PLOTS_DIR}/kept_over_steps.png)", ""]
    return "\n".join(lines)


def _save(fig: Figure, path: str) -> None:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    write_atomic(path, buffer.getvalue())


def plot_retention(findings: list[dict], path: str) -> None:
    """Pool share vs kept share per finding; flagged findings in red."""
    fig = Figure(figsize=(10, 4))
    ax = fig.subplots()
    x = np.arange(len(findings))
    ax.bar(x - 0.2, [r["pool_share"] for r in findings], 0.4, label="pool share", color="0.6")
    ax.bar(x + 0.2, [r["kept_share"] for r in findings], 0.4, label="kept share",
           color=["tab:red" if r["flag"] else "tab:blue" for r in findings])
    ax.set_xticks(x, [r["finding"] + (f" ({r['flag']})" if r["flag"] else "") for r in findings],
                  rotation=45, ha="right")
    for tick, r in zip(ax.get_xticklabels(), findings):
        tick.set_color("tab:red" if r["flag"] else "black")
    ax.set_ylabel("share of records positive")
    ax.legend()
    _save(fig, path)


def plot_kept_over_steps(first_kept: np.ndarray, path: str) -> None:
    """Cumulative fraction of the pool kept so far, by training step."""
    steps = np.sort(first_kept[first_kept >= 0])
    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    ax.step(steps, np.arange(1, steps.size + 1) / max(len(first_kept), 1), where="post")
    ax.set_xlabel("step")
    ax.set_ylabel("fraction of pool kept")
    _save(fig, path)


def plot_prototype_strip(images: Sequence[np.ndarray], members: np.ndarray, kept: np.ndarray,
                         title: str, path: str) -> None:
    """A row of member images (central to peripheral), each captioned kept/dropped."""
    fig = Figure(figsize=(1.6 * max(len(members), 1), 2.0))
    axes = np.atleast_1d(fig.subplots(1, max(len(members), 1)))
    for ax, row in zip(axes, members):
        ax.imshow(np.asarray(images[row]).squeeze(), cmap="gray")
        ax.set_title("kept" if kept[row] else "dropped", fontsize=8,
                     color="tab:green" if kept[row] else "tab:red")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    _save(fig, path)


def strip_members(clusters: np.ndarray, k: int, distances: np.ndarray | None, n: int) -> np.ndarray:
    """Up to n members of cluster k, evenly spread from nearest to farthest from the prototype."""
    members = np.flatnonzero(clusters == k)
    if distances is not None:
        members = members[np.argsort(distances[members], kind="stable")]
    if members.size <= n:
        return members
    return members[np.round(np.linspace(0, members.size - 1, n)).astype(int)]


def write_report(workdir: str, first_kept: np.ndarray, *, images: Sequence[np.ndarray] | None = None,
                 distances: np.ndarray | None = None, strip_size: int = 8, **inputs: Any) -> dict:
    """Builds the report (`inputs` as for build_report) and writes curation_report.json,
    curation_report.md and PNGs under curation_plots/, each atomically. Returns the report."""
    first_kept = check_first_kept(first_kept)
    report = build_report(first_kept, **inputs)
    plots = os.path.join(workdir, PLOTS_DIR)
    os.makedirs(plots, exist_ok=True)
    plot_kept_over_steps(first_kept, os.path.join(plots, "kept_over_steps.png"))
    if "findings" in report:
        plot_retention(report["findings"], os.path.join(plots, "retention.png"))
    if images is not None and "prototypes" in report:
        clusters = np.asarray(inputs["clusters"])
        for p in report["prototypes"]:
            members = strip_members(clusters, p["prototype"], distances, strip_size)
            name = f"prototype_{p['prototype']}.png"
            plot_prototype_strip(images, members, first_kept >= 0,
                                 f"prototype {p['prototype']}: " + ", ".join(p.get("terms", [])[:4]),
                                 os.path.join(plots, name))
            p["strip"] = f"{PLOTS_DIR}/{name}"
    write_atomic(os.path.join(workdir, "curation_report.json"),
                  json.dumps(report, indent=2).encode())
    write_atomic(os.path.join(workdir, "curation_report.md"), render_markdown(report).encode())
    return report
