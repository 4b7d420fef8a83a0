"""``python -m finitepref.llm.device_check --cpu``: every check of the GPU acceptance run, tiny shapes."""

import json

import pytest

from finitepref.llm import device_check
from finitepref.llm.registry import REGISTRY


@pytest.mark.slow
def test_device_check_cpu_mode(tmp_path, capsys):
    assert device_check.main(["--cpu", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "device_check.json").read_text())["rows"]
    assert [r["check"] for r in rows if r["check"] in REGISTRY] == list(REGISTRY)
    assert all(r["ok"] for r in rows)
    assert all(r["finite"] and r["estimate_gib"] is not None for r in rows if r["check"] in REGISTRY)
    assert "passed" in capsys.readouterr().out


def test_device_check_fails_on_a_broken_algorithm(tmp_path, monkeypatch):
    monkeypatch.setattr(device_check, "_finite", lambda metrics: False)  # as if a loss were NaN
    assert device_check.main(["--cpu", "--skip-toy", "--algorithms", "sft"]) == 1


def test_grid_sizes():
    import finitepref as fp

    dim, resolution, n = device_check._grid(10**4)
    assert fp.ToyProblem.loglinear_grid(dim=dim, resolution=resolution, seed=0).n_policies == n
    for size in (10**6, 10**7):
        assert abs(device_check._grid(size)[2] / size - 1) < 0.01
