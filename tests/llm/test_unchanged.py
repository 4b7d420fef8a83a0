"""Before/after comparison: every shipped tiny config still produces the weights and metrics
recorded from the code before the registry refactor (issue 10).

The reference (``data/unchanged_reference.json``) was made by ``make_reference.py`` against commit
8ff5bad; see that script's docstring for the command. On the machine that recorded it the results
are bit-identical (same SHA-256 of the weights). Across x86 CPUs, float32 kernels may round
differently (vector width, FMA), so the test compares float64 summaries of the weights and the
logged metrics with ``RTOL`` / ``ATOL``: a few hundred float32 ulps after two Adam updates, far
below any change of behaviour (a changed loss, row order or sampling moves them by > 1e-3).

A change that alters outputs on purpose regenerates the reference and says why in its commit.
"""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location("make_reference", Path(__file__).parent / "make_reference.py")
make_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_reference)
fingerprint, tiny_names = make_reference.fingerprint, make_reference.tiny_names

REFERENCE = json.loads((Path(__file__).parent / "data" / "unchanged_reference.json").read_text())
RTOL = 1e-4
"""Relative tolerance on weight summaries and metrics (float32 rounding across CPUs)."""
ATOL = 1e-5
"""Absolute tolerance, for values near zero (e.g. a margin or KL at the first steps)."""


def test_every_tiny_config_has_a_reference():
    missing = sorted(set(tiny_names()) - set(REFERENCE["configs"]))
    assert not missing, (f"tiny configs without a reference: {missing}; run tests/llm/make_reference.py "
                         "--only <names> and add the entries (with the reason in the commit)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the reference is a CPU run; the trainer uses a visible GPU")
@pytest.mark.parametrize("name", sorted(REFERENCE["configs"]))
def test_outputs_unchanged(name, tmp_path):
    expected = REFERENCE["configs"][name]
    got = fingerprint(name, tmp_path / name)
    assert got["steps"] == expected["steps"]
    for key in ("weights_sum", "weights_sum_sq", "weights_positional"):
        assert got[key] == pytest.approx(expected[key], rel=RTOL, abs=ATOL), key
    assert set(got["metrics"]) == set(expected["metrics"])
    for key, value in expected["metrics"].items():
        assert math.isclose(got["metrics"][key], value, rel_tol=RTOL, abs_tol=ATOL), (key, got["metrics"][key], value)
