"""Checkpoints under faults (issue 11): atomic saves, resume from the newest complete checkpoint,
metrics.csv truncated on resume, finished runs protected. Faults are injected deterministically
through ``FINITEPREF_FAULT`` (finitepref.llm.faults), never by timed kills."""

import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from finitepref.llm.checkpoints import complete_checkpoints, latest_checkpoint
from finitepref.llm.config import ConfigError
from finitepref.llm.faults import InjectedFault
from finitepref.llm.train import train


def _weights(out):
    return load_file(str(out / "model" / "model.safetensors"))


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=0, atol=1e-6)


def test_fault_during_checkpoint_save_then_resume_matches_straight_run(tmp_path, make_cfg, monkeypatch, capsys):
    train(make_cfg("tiny/dpo", tmp_path / "straight"))
    run = tmp_path / "faulty"
    monkeypatch.setenv("FINITEPREF_FAULT", "checkpoint-save:2")
    with pytest.raises(InjectedFault):
        train(make_cfg("tiny/dpo", run, "train.save_every=1"))
    assert (run / "checkpoints" / "step-2.tmp").is_dir() and (run / "checkpoints" / "step-1").is_dir()
    monkeypatch.delenv("FINITEPREF_FAULT")
    summary = train(make_cfg("tiny/dpo", run, "train.save_every=1", "train.resume=true"))
    assert "resuming from" in capsys.readouterr().out and summary["steps"] == 4
    _assert_same_weights(tmp_path / "straight", run)
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["step"].tolist() == [1, 2, 3, 4]


def test_resume_skips_incomplete_and_stray_checkpoints(tmp_path, make_cfg, capsys):
    run = tmp_path / "run"
    train(make_cfg("tiny/dpo", run, "train.max_steps=2", "train.save_every=1"))
    root = run / "checkpoints"
    good = latest_checkpoint(run)
    assert good.name == "step-2"
    (root / "step-9").mkdir()                              # empty folder
    (root / "step-8.tmp").mkdir()                          # temporary folder
    (root / "step-final").mkdir()                          # stray name
    partial = root / "step-7"
    shutil.copytree(good, partial)
    next(p for p in partial.iterdir() if p.name != "complete.json").unlink()  # a file missing
    truncated = root / "step-6"
    shutil.copytree(good, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])                           # a file cut short
    assert latest_checkpoint(run) == good
    summary = train(make_cfg("tiny/dpo", run, "train.resume=true"))
    out = capsys.readouterr().out
    assert f"resuming from {good}" in out and "step-final" in out and summary["steps"] == 4


def test_resuming_a_finished_run_keeps_its_results(tmp_path, make_cfg, capsys):
    run = tmp_path / "run"
    train(make_cfg("tiny/sft", run, "train.save_every=2"))
    before = (run / "summary.json").read_text()
    summary = train(make_cfg("tiny/sft", run, "train.save_every=2", "train.resume=true"))
    assert "already finished" in capsys.readouterr().out and summary["steps"] == 4
    assert (run / "summary.json").read_text() == before


def test_keep_last_prunes_old_checkpoints(tmp_path, make_cfg):
    run = tmp_path / "run"
    train(make_cfg("tiny/sft", run, "train.save_every=1", "train.keep_last=2"))
    assert [step for step, _ in complete_checkpoints(run)] == [3, 4]
    assert (run / "model" / "model.safetensors").is_file()


def test_metrics_truncated_to_resumed_step(tmp_path, make_cfg):
    run = tmp_path / "run"
    train(make_cfg("tiny/sft", run, "train.max_steps=3", "train.save_every=2"))
    # the interrupted run logged steps 1-3 but its last complete checkpoint is step 3 (the final save);
    # drop it to simulate a kill after step 3 was logged but before it was saved
    shutil.rmtree(run / "checkpoints" / "step-3")
    train(make_cfg("tiny/sft", run, "train.resume=true"))
    assert pd.read_csv(run / "metrics.csv")["step"].tolist() == [1, 2, 3, 4]


def test_finished_run_is_protected_unless_overwrite(tmp_path, make_cfg):
    run = tmp_path / "run"
    train(make_cfg("tiny/sft", run))
    with pytest.raises(ConfigError, match="finished run"):
        train(make_cfg("tiny/sft", run))
    train(make_cfg("tiny/dpo", run, "train.overwrite=true"))
    metrics = pd.read_csv(run / "metrics.csv")
    assert len(metrics) == 4 and "margin" in metrics.columns and "nll_per_token" not in metrics.columns


def test_another_stage_into_an_unfinished_folder_starts_a_fresh_metrics_file(tmp_path, make_cfg):
    run = tmp_path / "run"
    train(make_cfg("tiny/sft", run, "train.max_steps=2"))
    with pytest.raises(ConfigError, match="checkpoints of an unfinished run"):
        train(make_cfg("tiny/dpo", run))
    train(make_cfg("tiny/dpo", run, "train.overwrite=true"))
    assert [step for step, _ in complete_checkpoints(run)] == []
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["step"].tolist() == [1, 2, 3, 4] and "margin" in metrics.columns
    assert "nll_per_token" not in metrics.columns
