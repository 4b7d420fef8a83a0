"""Execute every narrative notebook (``notebooks/[0-9]*.py``, Jupytext percent format) top to bottom.

Each notebook is converted in memory with Jupytext and run by ``nbclient`` in a kernel that uses the
interpreter running pytest, with ``FAST=1`` (small grids) and a headless matplotlib backend. A cell
error fails the test, with the notebook and cell in the message.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9]*.py"))
KERNEL = "python3"


def test_notebooks_are_found():
    """A missing or renamed folder must not pass silently."""
    assert len(NOTEBOOKS) >= 4, f"expected at least 4 notebooks in {NOTEBOOK_DIR}, found {NOTEBOOKS}"


@pytest.fixture(scope="session")
def kernel_name() -> str:
    """A ``python3`` kernel spec; installed into this interpreter's prefix when missing."""
    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        subprocess.run([sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL],
                       check=True, capture_output=True)
    return KERNEL


@pytest.fixture()
def notebook_env(monkeypatch):
    """Small grids, headless plots; the kernel inherits this environment."""
    monkeypatch.setenv("FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    # the kernel must run the interpreter that runs pytest (and sees the editable install)
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path: Path, kernel_name: str, notebook_env) -> None:
    nb = jupytext.read(path)
    nb.cells.append(nbformat.v4.new_code_cell("import sys; print(sys.prefix)"))
    client = nbclient.NotebookClient(nb, timeout=180, kernel_name=kernel_name,
                                     resources={"metadata": {"path": str(ROOT)}})
    try:
        client.execute()
    except nbclient.exceptions.CellExecutionError as err:
        pytest.fail(f"{path.name} failed:\n{err}")
    # the kernel ran in the environment of the interpreter that runs pytest
    kernel_prefix = "".join(o.get("text", "") for o in nb.cells[-1].outputs).strip()
    assert Path(kernel_prefix).resolve() == Path(sys.prefix).resolve()
    _check_verdict_cells(path, nb)


VERDICT_WORDS = ("held", "did not hold", "AGREES", "DISAGREES", "INCONCLUSIVE", "lowers", "does not significantly")


def _check_verdict_cells(path: Path, nb) -> None:
    """Every "**Verdict**" markdown cell is followed by a code cell that prints the verdict from live numbers:
    the markdown itself holds no digits (no hand-typed numbers that can go stale)."""
    cells = nb.cells
    found = 0
    for i, cell in enumerate(cells):
        if cell.cell_type != "markdown" or "**Verdict**" not in cell.source:
            continue
        found += 1
        assert not any(ch.isdigit() for ch in cell.source.replace("eq. (11)", "")), \
            f"{path.name}: the verdict prose holds hand-typed numbers: {cell.source!r}"
        code = next(c for c in cells[i + 1:] if c.cell_type == "code")
        printed = "".join(o.get("text", "") for o in code.outputs)
        assert any(word in printed for word in VERDICT_WORDS), f"{path.name}: the verdict cell printed {printed!r}"
    assert found >= 1 or path.stem == "05_oracle_lm", f"{path.name}: no **Verdict** cell"


def test_documented_command_executes_a_notebook(tmp_path, kernel_name, notebook_env):
    """notebooks/README.md's command: ``jupytext --to ipynb --execute`` (needs nbconvert, in the dev extra)."""
    pytest.importorskip("nbconvert")
    source = tmp_path / "01_tour.py"
    source.write_text((NOTEBOOK_DIR / "01_tour.py").read_text())
    subprocess.run([sys.executable, "-m", "jupytext", "--to", "ipynb", "--execute", str(source)], check=True,
                   capture_output=True, cwd=ROOT, timeout=600)
    executed = nbformat.read(tmp_path / "01_tour.ipynb", as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
