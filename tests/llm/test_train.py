"""Every stage trains from its tiny config through the CLI's entry point; checkpoints resume exactly;
two CPU processes (gloo) match one process with the same global batch."""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from finitepref.llm.registry import REGISTRY
from finitepref.llm.train import train

REPO = Path(__file__).resolve().parents[2]


def _initial_state(algo: str) -> dict:
    from finitepref.llm.tiny import tiny_model

    head = "seq_cls" if REGISTRY[algo].trains_reward_model else "causal_lm"
    return {k: v.clone() for k, v in tiny_model("tiny:gpt-neox", head, seed=0).state_dict().items()}


def _weights(out: Path) -> dict:
    return load_file(str(out / "model" / "model.safetensors"))


def _env():
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return env


@pytest.mark.parametrize("algo", list(REGISTRY))
def test_each_algorithm_trains(algo, tmp_path, make_cfg):
    cfg = make_cfg(f"tiny/{algo}", tmp_path / algo)
    summary = train(cfg)
    assert summary["steps"] == 4
    metrics = pd.read_csv(tmp_path / algo / "metrics.csv")
    assert len(metrics) == 4 and {"loss", "tokens_per_s", "lr"} <= set(metrics.columns)
    assert metrics.drop(columns=["step"]).map(math.isfinite).all().all()
    if REGISTRY[algo].needs_reward_model:
        assert {"reward", "kl", "entropy"} <= set(metrics.columns)
    before, after = _initial_state(algo), _weights(tmp_path / algo)
    changed = [k for k in after if k in before and not torch.equal(before[k], after[k])]
    assert len(changed) > 3, "parameters did not move"
    assert (tmp_path / algo / "config.yaml").is_file()
    if REGISTRY[algo].trains_reward_model:
        norm = json.loads((tmp_path / algo / "model" / "reward_normalization.json").read_text())
        assert math.isfinite(norm["mean_reference_score"])


@pytest.mark.parametrize("algo", ["dpo", "distill", "reverse_kl"])
def test_lora_uses_disabled_adapters_as_reference(algo, tmp_path, make_cfg):
    from finitepref.llm.models import load_causal_lm

    cfg = make_cfg(f"tiny/{algo}", tmp_path / "lora", "lora.enabled=true", "lora.r=4", "lora.alpha=8",
                   "model.gradient_checkpointing=true")
    summary = train(cfg)
    assert summary["steps"] == 4
    assert (tmp_path / "lora" / "model" / "adapter_config.json").is_file()
    merged = load_causal_lm(str(tmp_path / "lora" / "model"))
    before = _initial_state("dpo")
    assert any(not torch.equal(before[k], v) for k, v in merged.state_dict().items() if k in before)
    m = pd.read_csv(tmp_path / "lora" / "metrics.csv")
    assert m.drop(columns=["step"]).map(math.isfinite).all().all()
    if algo == "dpo":
        assert m["loss"].iloc[0] == pytest.approx(math.log(2), abs=1e-6)  # pi == pi_0 at the start


@pytest.mark.parametrize("algo", ["dpo", "distill"])
def test_kill_and_resume_matches_straight_run(algo, tmp_path, make_cfg):
    straight = train(make_cfg(f"tiny/{algo}", tmp_path / "straight"))
    part = train(make_cfg(f"tiny/{algo}", tmp_path / "resumed", "train.max_steps=2"))
    assert part["steps"] == 2 and (tmp_path / "resumed" / "checkpoints" / "step-2").is_dir()
    resumed = train(make_cfg(f"tiny/{algo}", tmp_path / "resumed", "train.resume=true"))
    assert straight["steps"] == resumed["steps"] == 4
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "resumed")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6)
    assert len(pd.read_csv(tmp_path / "resumed" / "metrics.csv")) == 4


def test_cli_subprocess(tmp_path):
    out = tmp_path / "cli"
    r = subprocess.run([sys.executable, "-m", "finitepref.llm", "train", "--config", "tiny/distill", "--output-dir",
                        str(out), "--lr", "1e-3", "--algorithm.gamma", "0.2"],
                       env=_env(), capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(pd.read_csv(out / "metrics.csv")) == 4
    assert list((out / "tensorboard").glob("events.*"))
    import yaml

    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["algorithm"]["gamma"] == 0.2 and resolved["train"]["lr"] == 1e-3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# distill: online samples are seeded per example (issue 12, D9), so 2 processes sample what 1 does;
# one mini-batch per rollout, so both runs average the same rows per update.
@pytest.mark.parametrize("algo,extra", [("dpo", []), ("distill", ["algorithm.num_mini_batches=1"])])
def test_two_processes_match_one(algo, extra, tmp_path, make_cfg):
    common = ["--config", f"tiny/{algo}", "--set", "log.tensorboard=false", "--set", "train.save_every=2"]
    for item in extra:
        common += ["--set", item]
    one = train(make_cfg(f"tiny/{algo}", tmp_path / "one", *extra))
    # accelerate's --cpu launcher starts one process without mpirun; its torchrun launcher
    # (--multi_gpu) starts two, and the trainer picks CPU + gloo when no GPU is visible.
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "--main_process_port", str(_free_port()),
           "-m", "finitepref.llm", "train", *common, "--output-dir", str(tmp_path / "two")]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    assert one["steps"] == 4
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["num_processes"] == 2
    from finitepref.llm.checkpoints import complete_checkpoints

    assert [step for step, _ in complete_checkpoints(tmp_path / "two")] == [2, 4]  # saved atomically by 2 processes
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)


def test_stages_chain_through_output_directories(tmp_path, make_cfg):
    """SFT -> reward model on the SFT model -> distillation from the SFT model with that reward."""
    train(make_cfg("tiny/sft", tmp_path / "sft"))
    sft = str(tmp_path / "sft" / "model")
    train(make_cfg("tiny/reward", tmp_path / "rm", f"model.name={sft}"))
    rm = tmp_path / "rm" / "model"
    assert (rm / "reward_normalization.json").is_file()
    s = train(make_cfg("tiny/distill", tmp_path / "distill", f"model.name={sft}", f"reward.model={rm}"))
    assert s["steps"] == 4 and math.isfinite(s["metrics"]["loss"])
    from finitepref.llm.models import load_reward_model, load_tokenizer

    model = load_reward_model(make_cfg("tiny/distill", tmp_path / "x", f"reward.model={rm}").reward,
                              load_tokenizer(sft))
    assert model.bias == json.loads((rm / "reward_normalization.json").read_text())["mean_reference_score"]
