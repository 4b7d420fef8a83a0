"""Issue 17, item 5: the shipped FSDP config on two CPU processes (gloo) matches one process, for an
offline (dpo) and an online algorithm (distill: generation unshards the policy), through a save and
``--resume`` of the sharded run, and ``evaluate`` reads its saved model."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from finitepref.llm.config import CONFIG_DIR
from finitepref.llm.train import train

REPO = Path(__file__).resolve().parents[2]
FSDP = Path(CONFIG_DIR) / "accelerate" / "fsdp.yaml"


def _env():
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(args: list[str], cwd: Path, config: Path = FSDP) -> subprocess.CompletedProcess:
    # a shipped file (4 GPUs, bf16) with the process count and precision overridden for 2 CPU processes
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", str(_free_port()), "-m", "finitepref.llm", "train", *args]
    r = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300, cwd=cwd)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    return r


@pytest.mark.slow
# dpo clips at 0.01 so that clipping acts on every update (it must see FSDP's sharded gradients)
@pytest.mark.parametrize("algo,extra", [("dpo", ["train.max_grad_norm=0.01"]),
                                        ("distill", ["algorithm.num_mini_batches=1"])])
def test_fsdp_two_processes_match_one_through_resume(algo, extra, tmp_path, make_cfg, capsys):
    one = train(make_cfg(f"tiny/{algo}", tmp_path / "one", *extra))
    common = ["--config", f"tiny/{algo}", "--set", "log.tensorboard=false", "--set", "log.progress=false",
              "--set", "train.save_every=2", "--output-dir", str(tmp_path / "two")]
    for item in extra:
        common += ["--set", item]
    _launch([*common, "--max-steps", "2"], tmp_path)  # stopped after 2 updates: a sharded checkpoint
    r = _launch([*common, "--resume"], tmp_path)
    assert "resuming from" in r.stdout and "step 2" in r.stdout
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["steps"] == one["steps"] == 4
    a, b = (load_file(str(tmp_path / d / "model" / "model.safetensors")) for d in ("one", "two"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    from finitepref.llm.__main__ import main

    assert main(["evaluate", "--policy", str(tmp_path / "two"), "--reference", "tiny:gpt-neox", "--num-samples", "4",
                 "--judge", "reward-model"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 4


@pytest.mark.slow
def test_deepspeed_zero2_on_two_cpu_processes_matches_one(tmp_path, make_cfg):
    """DeepSpeed's CPU accelerator (``pip install deepspeed``; skipped when it is not installed)."""
    pytest.importorskip("deepspeed")
    one = train(make_cfg("tiny/dpo", tmp_path / "one"))
    _launch(["--config", "tiny/dpo", "--set", "log.tensorboard=false", "--set", "log.progress=false", "--output-dir",
             str(tmp_path / "two")], tmp_path, FSDP.with_name("deepspeed_zero2.yaml"))
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["steps"] == one["steps"]
    a, b = (load_file(str(tmp_path / d / "model" / "model.safetensors")) for d in ("one", "two"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
