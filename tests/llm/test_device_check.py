"""``python -m finitepref.llm.device_check --cpu``: every check of the GPU acceptance run, tiny shapes."""

import json

import pytest

from finitepref.llm import device_check
from finitepref.llm.registry import REGISTRY


@pytest.mark.slow
def test_device_check_cpu_mode(tmp_path, capsys):
    assert device_check.main(["--cpu", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "device_check.json").read_text())
    rows = record["rows"]
    assert record["device"] == "cpu" and "transformers" in record["versions"] and "git_commit" in record
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


def test_deepspeed_launch_as_a_user_would(tmp_path, monkeypatch):
    """The GPU mode's DeepSpeed rows: the shipped launcher file, one process per GPU, the trainer's CLI with
    the same overrides as the in-process checks; a missing deepspeed is a failed row that says what to do."""
    import importlib.util
    import subprocess

    shape = device_check.CPU
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    row = device_check.deepspeed_check("deepspeed_zero2.yaml", shape, tmp_path / "m", tmp_path / "d", tmp_path)
    assert not row["ok"] and "pip install deepspeed" in row["note"]

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(device_check.torch.cuda, "device_count", lambda: 2)
    seen = {}

    def fake_run(cmd, **kwargs):
        seen["cmd"] = cmd
        out = tmp_path / "dpo-deepspeed_zero3"
        out.mkdir()
        (out / "summary.json").write_text(json.dumps({"steps": 2, "loss": 0.69, "tokens_per_s": 10.0}))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(device_check.subprocess, "run", fake_run)
    row = device_check.deepspeed_check("deepspeed_zero3.yaml", shape, tmp_path / "m", tmp_path / "d", tmp_path)
    assert row["ok"] and row["tokens_per_s"] == 10.0
    cmd = seen["cmd"]
    assert cmd[cmd.index("--config_file") + 1].endswith("accelerate/deepspeed_zero3.yaml")
    assert cmd[cmd.index("--num_processes") + 1] == "2"
    sets = [cmd[i + 1] for i, c in enumerate(cmd) if c == "--set"]
    assert sets == device_check.algorithm_sets("dpo", shape, tmp_path / "m", tmp_path / "d",
                                               tmp_path / "dpo-deepspeed_zero3")
