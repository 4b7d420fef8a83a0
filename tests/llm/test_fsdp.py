"""Issue 17, item 5: the shipped FSDP config on two CPU processes (gloo) matches one process, for an
offline (dpo) and an online algorithm (distill: generation unshards the policy), through a save and
``--resume`` of the sharded run, and ``evaluate`` reads its saved model; and ``--dry-run``'s
per-phase memory under FSDP on two processes matches the measured one."""

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


def _launch(args: list[str], cwd: Path, config: Path = FSDP, target: tuple = ("-m", "finitepref.llm", "train"),
            env: dict | None = None) -> subprocess.CompletedProcess:
    # a shipped file (4 GPUs, bf16) with the process count and precision overridden for 2 CPU processes
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
           "--mixed_precision", "no", "--main_process_port", str(_free_port()), *target, *args]
    r = subprocess.run(cmd, env={**_env(), **(env or {})}, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-4000:])
    return r


def _weights(run: Path) -> dict:
    """The saved model's tensors. transformers 5 names GPT-NeoX's output layer ``lm_head`` and
    ``save_pretrained`` writes the checkpoint name ``embed_out`` for a model it recognises by class;
    FSDP2's wrapper class (``FSDPGPTNeoXForCausalLM``) hides an in-code model's class, so its file
    keeps ``lm_head`` (both names load)."""
    state = load_file(str(run / "model" / "model.safetensors"))
    return {("embed_out.weight" if k == "lm_head.weight" else k): v for k, v in state.items()}


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
    _launch([*common, "--max-steps", "2"], tmp_path)  # stopped after 2 updates
    assert (tmp_path / "two" / "checkpoints" / "step-2" / "pytorch_model_fsdp_0").is_dir()  # sharded, not DDP's
    r = _launch([*common, "--resume"], tmp_path)
    assert "resuming from" in r.stdout and "step 2" in r.stdout
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["steps"] == one["steps"] == 4
    a, b = (_weights(tmp_path / d) for d in ("one", "two"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-5)
    from finitepref.llm.__main__ import main

    assert main(["evaluate", "--policy", str(tmp_path / "two"), "--reference", "tiny:gpt-neox", "--num-samples", "4",
                 "--judge", "reward-model"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["n"] == 4


@pytest.mark.slow
def test_deepspeed_launch_on_cpu_is_refused_not_run_as_ddp(monkeypatch):
    """accelerate maps every CPU launch to DDP; the trainer refuses a DeepSpeed launch there instead."""
    from finitepref.llm.accelerators import make_accelerator
    from finitepref.llm.errors import ConfigError

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ConfigError, match="DeepSpeed config on a machine without a GPU"):
        make_accelerator()


MEASURE = Path(__file__).with_name("measure_memory.py")
PHASE_SETS = ["data.max_prompt_length=16", "data.max_response_length=8", "train.batch_size=4",
              "train.micro_batch_size=2", "train.max_steps=1"]


@pytest.mark.slow
def test_fsdp_memory_by_phase_matches_dry_run(tmp_path):
    """Issue 17, item 5: ``--dry-run``'s per-process memory under ``fsdp.yaml`` on 2 processes, phase
    by phase (:func:`~finitepref.llm.memory.cpu_run_phases`), within 25% of the largest rank's
    measured peak resident-set increase (``measure_memory.py phases``: VmHWM reset at each phase) of
    one update of a random Pythia-160M-shaped model (float32), its checkpoint and final model.

    ``accelerate launch`` maps CPU processes to DDP whatever the config file; the measuring script
    forces the launcher's FSDP plugin (:func:`measure_memory.fsdp_on_cpu`), and the test checks that
    each rank holds half of the policy. glibc's mmap threshold is fixed at 64 KiB so that freed
    tensors leave the resident set (with its default, growing threshold the heap keeps FSDP's
    per-block buffers and the peak reads about 0.5 GiB higher).
    """
    from finitepref.llm.config import load_config
    from finitepref.llm.memory import cpu_run_phases

    model, out = tmp_path / "pythia-160m", tmp_path / "run"
    r = subprocess.run([sys.executable, str(MEASURE), "make", str(model)], env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    sets = [a for s in PHASE_SETS for a in ("--set", s)]
    _launch([str(model), str(out), "tiny/dpo", *sets], tmp_path, target=(str(MEASURE), "phases"),
            env={"MALLOC_MMAP_THRESHOLD_": "65536"})
    ranks = [json.loads((out / f"memory-rank-{i}.json").read_text()) for i in range(2)]
    cfg = load_config("tiny/dpo", [f"model.name={model}", "model.tokenizer=tiny", *PHASE_SETS])
    estimate = cpu_run_phases(cfg, "fsdp.yaml", 2)
    policy_gib = 162_240_000 * 4 / 1024**3  # Pythia-160M, float32
    assert all(r["distributed_type"] == "DistributedType.FSDP" for r in ranks)
    assert all(r["policy_local_gib"] == pytest.approx(policy_gib / 2, rel=0.01) for r in ranks)
    measured = {phase: max(r["peak_gib"][phase] for r in ranks) for phase in ("load", "prepare", "train")}
    measured["save"] = max(r["peak_gib"][p] for r in ranks for p in ("save", "checkpoint", "gather"))
    measured["peak"] = max(r["max_gib"] for r in ranks)
    ratios = {phase: estimate[phase] / measured[phase] for phase in measured}
    print(json.dumps({"estimate": estimate, "measured": measured, "ratios": ratios}, indent=1))
    assert all(0.75 <= ratio <= 1.25 for ratio in ratios.values()), ratios
