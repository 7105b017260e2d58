"""Export refusals that need no trained run (the export itself: tests/test_export.py)."""

from __future__ import annotations

import numpy as np
import pytest

from curation.export import ExportError, export_subset


def test_an_existing_out_names_the_fix_for_python_and_the_command(tmp_path):
    workdir, out = tmp_path / "run", tmp_path / "out"
    workdir.mkdir()
    out.mkdir()
    (workdir / "config.json").write_text("{}")
    np.savez(workdir / "ledger.npz", first_kept=np.array([0, -1]))
    with pytest.raises(ExportError, match=r"exists; replace it with --force \(force=True from Python\)"):
        export_subset(str(workdir), str(out))
