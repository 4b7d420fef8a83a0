"""Shared fixtures of the simulation tests: every script's ``--quick`` run, made once per session."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def quick_run(tmp_path_factory) -> Callable[[str], tuple[dict, Path]]:
    """``quick_run(script) -> (summary, out folder)`` of ``python -m simulations.<script> --quick``.

    Each script runs at most once per session, on first use; the substance tests and the
    before/after comparison (``test_unchanged.py``) read the same outputs.
    """
    root = tmp_path_factory.mktemp("quick")
    done: dict[str, tuple[dict, Path]] = {}

    def run(script: str) -> tuple[dict, Path]:
        if script not in done:
            module = importlib.import_module(f"simulations.{script}")
            out = root / script
            done[script] = (module.main(["--quick", "--out", str(out)]), out)
        return done[script]

    return run
