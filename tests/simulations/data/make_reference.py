"""Make the before/after references of ``tests/simulations/test_unchanged.py``.

The references are the ``--quick`` CSVs of every simulation script as the code stood before the
architecture change (issue 10), made on one machine:

    git worktree add /tmp/orig 8ff5bad
    python tests/simulations/data/make_reference.py --source /tmp/orig

Each script runs in its own process, from ``--source`` and with ``PYTHONPATH=--source``; its CSVs are
copied to ``reference/<script>/`` beside this file and their SHA-256 written to ``reference_sha256.json``
(with the commit they come from). Timings are not results: oracle_lm keeps them in ``timing.csv`` (not compared); a column listed in
``TIMING_COLUMNS`` is dropped before hashing and comparing, and ``simulations.benchmark`` (timings only) has no reference.

A later change that alters outputs on purpose (a new estimator in a CSV, a new tie rule) re-runs this
script on its own tree for the scripts concerned (``--source . --only kl_vs_n --why "..."``; the
record keeps, per re-made script, the commit and the reason under ``remade``) and says why in its commit.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "kl_vs_n": ("kl_vs_n.csv",), "bound_check": ("bound_check.csv",), "scaling": ("scaling.csv",),
    "finite_vs_net": ("finite_vs_net.csv",), "coverage_gap": ("coverage_gap.csv",),
    "degeneracy": ("degeneracy.csv", "prior_smoothing.csv"), "asymptotics": ("asymptotics.csv",),
    "oracle_lm": ("oracle_lm.csv", "table2.csv"),
}
"""Script -> the CSVs it writes in ``--quick`` mode."""
TIMING_COLUMNS: dict[str, tuple[str, ...]] = {}
"""Columns that hold wall-clock times (not compared); oracle_lm keeps its timings in ``timing.csv``, outside the compared files."""


def comparable_bytes(path: Path) -> bytes:
    """The bytes of a results CSV that must not change: the file, less its timing columns (rewritten as %.10g)."""
    drop = TIMING_COLUMNS.get(path.name)
    if not drop:
        return path.read_bytes()
    table = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=list(drop))
    return table.to_csv(index=False).encode()


def sha256(path: Path) -> str:
    """SHA-256 of :func:`comparable_bytes`."""
    return hashlib.sha256(comparable_bytes(path)).hexdigest()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, required=True, help="checkout whose scripts make the references")
    parser.add_argument("--only", nargs="+", choices=sorted(SCRIPTS), help="re-make only these scripts' references")
    parser.add_argument("--why", default="", help="with --only: why they change (recorded in reference_sha256.json)")
    args = parser.parse_args(argv)
    source = args.source.resolve()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True).stdout.strip()
    record_path = HERE / "reference_sha256.json"
    previous = json.loads(record_path.read_text()) if args.only else {}
    hashes: dict[str, str] = dict(previous.get("sha256", {}))
    env = {**os.environ, "PYTHONPATH": str(source)}
    with tempfile.TemporaryDirectory() as tmp:
        for script, files in SCRIPTS.items():
            if args.only and script not in args.only:
                continue
            out = Path(tmp) / script
            subprocess.run([sys.executable, "-m", f"simulations.{script}", "--quick", "--out", str(out)], cwd=source,
                           env=env, check=True, capture_output=True)
            target = HERE / "reference" / script
            target.mkdir(parents=True, exist_ok=True)
            for name in files:
                (target / name).write_bytes((out / name).read_bytes())
                hashes[f"{script}/{name}"] = sha256(out / name)
            print(f"{script}: {', '.join(files)}")
    record = {"commit": commit, "command": "python -m simulations.<script> --quick", "sha256": hashes}
    if args.only:
        record = {**previous, "sha256": hashes,
                  "remade": {**previous.get("remade", {}), **{s: {"commit": commit, "why": args.why} for s in args.only}}}
    record_path.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
