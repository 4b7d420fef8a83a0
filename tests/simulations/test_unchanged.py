"""Every simulation's ``--quick`` CSV is bit for bit what the code produced before the architecture change.

The references (``data/reference/``, ``data/reference_sha256.json``) were made by
``data/make_reference.py`` from commit 8ff5bad (see its docstring). The runs are the session's
``--quick`` runs (``conftest.quick_run``) that the substance tests read too: nothing runs twice.
Timing columns are not compared (``oracle_lm.csv``'s ``train_s``), and ``simulations.benchmark``
(timings only) has no reference. A change that alters an output on purpose re-makes the references
and says why.

Byte equality holds on one machine (CSVs are written with ``%.10g``); a different BLAS or CPU may
move a last digit, which the failure message shows column by column.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATA = Path(__file__).resolve().parent / "data"
_spec = importlib.util.spec_from_file_location("make_reference", DATA / "make_reference.py")
make_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_reference)
RECORD = json.loads((DATA / "reference_sha256.json").read_text())
CASES = [(script, name) for script, files in make_reference.SCRIPTS.items() for name in files]

pytestmark = pytest.mark.slow


def _differences(new: Path, old: Path) -> str:
    """Which columns differ, and by how much (for the failure message)."""
    a, b = pd.read_csv(new), pd.read_csv(old)
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return f"columns/rows differ: {list(a.columns)} x {len(a)} vs {list(b.columns)} x {len(b)}"
    out = []
    for col in a.columns:
        x, y = a[col], b[col]
        if x.equals(y):
            continue
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            rel = np.nanmax(np.abs(x - y) / np.maximum(np.abs(y), np.finfo(float).tiny))
            out.append(f"{col}: max relative difference {rel:.3g}")
        else:
            out.append(f"{col}: {int((x != y).sum())} values differ")
    return "; ".join(out)


def test_references_cover_every_script():
    assert set(RECORD["sha256"]) == {f"{s}/{n}" for s, n in CASES}
    for script, name in CASES:
        assert (DATA / "reference" / script / name).is_file()


@pytest.mark.parametrize(("script", "name"), CASES, ids=[f"{s}/{n}" for s, n in CASES])
def test_quick_csv_unchanged(quick_run, script, name):
    _, out = quick_run(script)
    new, old = out / name, DATA / "reference" / script / name
    digest = hashlib.sha256(make_reference.comparable_bytes(new)).hexdigest()
    assert digest == RECORD["sha256"][f"{script}/{name}"], f"{script}/{name} changed: {_differences(new, old)}"
