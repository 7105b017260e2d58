"""`chexficient export --workdir=DIR --out=OUT [--force]`: the subset a curated run kept.

OUT gets manifest.csv.gz and manifest.parquet (id, source, position, score, cluster, step
first kept), a TFDS dataset of those records that `--config.data.subset=OUT` trains on, and
subset.json (counts, checksums, the run's config); see `curation.export`.
"""

from __future__ import annotations

from absl import flags

from curation.export import ExportError, export_subset

_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory of a curated run.")
_OUT = flags.DEFINE_string("out", None, "Directory to write the subset to.")
_FORCE = flags.DEFINE_bool("force", False, "Replace OUT if it exists.")
flags.mark_flags_as_required(["workdir", "out"])


def main(argv: list[str]) -> None:
    """Exports the subset of --workdir to --out and prints how many records of the pool it holds."""
    if len(argv) > 1:
        raise SystemExit(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        info = export_subset(_WORKDIR.value, _OUT.value, force=_FORCE.value)
    except ExportError as e:
        raise SystemExit(f"chexficient export: {e}") from None
    print(f"exported {info['count']} of {info['pool_size']} records "
          f"({100 * info['kept_fraction']:.1f}%) to {_OUT.value}")
