"""``--dry-run``'s memory estimate against the measured peak (issue 15, item 5).

A randomly initialised Pythia-160M-shaped GPT-NeoX (published configuration) trains one step on the
CPU in a subprocess per case; the increase of its peak resident set (VmHWM) over the resident set
before training must be within 25% of the estimate (``host_peak_gib``: on a CPU the device is the
host). Cases: float32 and bfloat16, with and without LoRA (DPO), and an online algorithm (distill:
rollout and scoring).
"""

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("measure_memory.py")
SMALL = ["data.max_prompt_length=16", "data.max_response_length=8", "generation.max_new_tokens=8",
         "generation.min_new_tokens=8", "train.batch_size=2", "train.micro_batch_size=2", "train.max_steps=1"]
CASES = {
    "fp32": ("tiny/dpo", []),
    "bf16": ("tiny/dpo", ["model.dtype=bfloat16"]),
    "fp32-lora": ("tiny/dpo", ["lora.enabled=true", "lora.r=8"]),
    "bf16-lora": ("tiny/dpo", ["model.dtype=bfloat16", "lora.enabled=true", "lora.r=8"]),
    "bf16-distill": ("tiny/distill", ["model.dtype=bfloat16", "reward.dtype=bfloat16", "algorithm.num_mini_batches=1"]),
}


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", MALLOC_MMAP_THRESHOLD_="65536")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    return env


def _measure(model: Path, out: Path, config: str, sets: list[str]) -> dict:
    args = [a for s in [*SMALL, *sets] for a in ("--set", s)]
    r = subprocess.run([sys.executable, str(SCRIPT), str(model), str(out), config, *args], env=_env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_dry_run_estimate_matches_measured_peak(tmp_path):
    model = tmp_path / "pythia-160m"
    r = subprocess.run([sys.executable, str(SCRIPT), "make", str(model)], env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    with ThreadPoolExecutor(2) as pool:  # two subprocesses at a time (each measures its own peak)
        futures = {name: pool.submit(_measure, model, tmp_path / name, config, sets)
                   for name, (config, sets) in CASES.items()}
        results = {name: f.result() for name, f in futures.items()}
    ratios = {name: r["estimate_gib"] / r["measured_gib"] for name, r in results.items()}
    print(json.dumps({n: {**results[n], "ratio": ratios[n]} for n in results}, indent=1))
    assert all(0.75 <= ratio <= 1.25 for ratio in ratios.values()), ratios
