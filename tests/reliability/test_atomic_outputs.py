"""Atomic results folders: a run interrupted while writing leaves the previous complete run, or no folder.

Faults are injected deterministically at named points of the writer (``FINITEPREF_FAULT``, see
:mod:`simulations._runner`), never by timed kills: ``after-csv`` (the new CSV is written, nothing
else), ``before-publish`` (every new file is written), ``after-old-moved`` (the one window of the
replacement: the previous run has been moved aside, the new one not yet renamed into place). A
``<point>:exit`` fault ends the process there with ``os._exit`` as a kill would (no clean-up runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from simulations import _runner, coverage_gap

TINY = ["--quick", "--n-points", "2", "--trials", "20", "--bootstrap", "20"]
ROOT = Path(__file__).resolve().parents[2]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name != folder.name)


@pytest.fixture()
def previous_run(tmp_path) -> tuple[Path, dict[str, bytes]]:
    """A complete run (seed 0) in ``tmp_path/out``, and the bytes of each of its files."""
    out = tmp_path / "out"
    coverage_gap.main([*TINY, "--out", str(out)])
    return out, _snapshot(out)


@pytest.mark.parametrize("point", ["after-csv", "before-publish"])
def test_fault_while_writing_keeps_the_previous_run(previous_run, point, monkeypatch):
    out, before = previous_run
    monkeypatch.setenv(_runner.FAULT_ENV, point)
    with pytest.raises(_runner.InjectedFault, match=point):
        coverage_gap.main([*TINY, "--seed", "1", "--out", str(out)])
    assert _snapshot(out) == before  # every file of the previous run, and only those
    assert _siblings(out) == []  # the unfinished folder is removed


@pytest.mark.parametrize("point", ["after-csv", "before-publish"])
def test_fault_on_a_first_run_leaves_no_folder(tmp_path, point, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setenv(_runner.FAULT_ENV, point)
    with pytest.raises(_runner.InjectedFault):
        coverage_gap.main([*TINY, "--out", str(out)])
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_fault_in_the_replacement_window_keeps_the_previous_run_aside(previous_run, monkeypatch):
    """The documented window: the previous run is complete under ``.out.old-*``; ``out`` does not exist."""
    out, before = previous_run
    monkeypatch.setenv(_runner.FAULT_ENV, "after-old-moved")
    with pytest.raises(_runner.InjectedFault):
        coverage_gap.main([*TINY, "--seed", "1", "--out", str(out)])
    assert not out.exists()
    (old,) = [p for p in out.parent.iterdir() if p.name.startswith(".out.old-")]
    assert _snapshot(old) == before


def test_killed_after_the_csv_leaves_the_previous_run(previous_run):
    """A kill (``os._exit``, no clean-up) after the new CSV is written: ``out`` is still the previous run."""
    out, before = previous_run
    env = {**os.environ, _runner.FAULT_ENV: "after-csv:exit", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "simulations.coverage_gap", *TINY, "--seed", "1", "--out", str(out)],
                          env=env, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 86, proc.stderr[-2000:]
    assert _snapshot(out) == before
    (stale,) = _siblings(out)  # the unfinished folder stays beside it, never inside it
    assert stale.startswith(".out.tmp-") and "coverage_gap.csv" in os.listdir(out.parent / stale)


def test_a_complete_run_replaces_the_whole_folder(previous_run):
    """No file of an older run survives a newer one (no mix), and nothing is left beside the folder."""
    out, before = previous_run
    (out / "left_over.txt").write_text("from an older run")
    coverage_gap.main([*TINY, "--seed", "1", "--out", str(out)])
    after = _snapshot(out)
    assert set(after) == set(before) and after["coverage_gap.csv"] != before["coverage_gap.csv"]
    assert _siblings(out) == []


def test_write_outputs_writes_every_file_or_none(tmp_path, monkeypatch):
    table = pd.DataFrame({"n": [1, 2], "value": [0.5, 0.25]})
    paths = _runner.write_outputs(tmp_path / "r", "demo", None, table, {"ok": True},
                                  files={"extra.csv": table, "note.txt": "text"})
    assert sorted(p.name for p in paths.values()) == sorted(os.listdir(tmp_path / "r"))
    monkeypatch.setenv(_runner.FAULT_ENV, "before-publish")
    with pytest.raises(_runner.InjectedFault):
        _runner.write_outputs(tmp_path / "r", "demo", None, table.iloc[:1], {"ok": False})
    assert pd.read_csv(tmp_path / "r" / "demo.csv").equals(table)
    assert sorted(os.listdir(tmp_path)) == ["r"]
