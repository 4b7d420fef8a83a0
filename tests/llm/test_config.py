"""Config files: every shipped paper config resolves and validates; --dry-run prints a memory
estimate without downloading; overrides and errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from finitepref.llm.__main__ import main
from finitepref.llm.config import CONFIG_DIR, ConfigError, field_docs, load_config
from finitepref.llm.memory import ARCHS, estimate, param_count
from finitepref.llm.registry import REGISTRY

PAPER = sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml")
               if p.parts[-3] in ("tldr", "ultrafeedback") and p.stem not in ("common", "base"))
TINY = sorted(f"tiny/{p.stem}" for p in (CONFIG_DIR / "tiny").glob("*.yaml") if p.stem != "base")


PAPER_ALGORITHMS = ("sft", "reward", "dpo", "pmle", "rebel", "distill", "rlhf", "reverse_kl")
"""The rows of Tables 5 and 6 (an algorithm outside the paper needs no TL;DR config)."""


def test_every_table_row_has_a_config():
    for size in ("1.4b", "2.8b"):
        for name in PAPER_ALGORITHMS:
            assert f"tldr/pythia-{size}/{name}" in PAPER
    assert {"ultrafeedback/llama-3-8b/rebel", "ultrafeedback/llama-3-8b/distill"} <= set(PAPER)


def test_every_registered_algorithm_has_a_tiny_config():
    assert {f"tiny/{name}" for name in REGISTRY} == set(TINY)
    for name in REGISTRY:
        assert load_config(f"tiny/{name}").algorithm.name == name


@pytest.mark.parametrize("name", PAPER)
def test_dry_run_paper_configs(name, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["train", "--config", name, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "memory estimate" in out and '"total_gib"' in out
    assert "per-GPU memory by sharding" in out and ('"verdict": "fits 4 x 40' in out or '"verdict": "exceeds' in out)
    cfg = load_config(name)
    est = estimate(cfg)
    assert est["total_gib"] is not None and est["total_gib"] > 1


def test_table5_and_6_values():
    c = load_config("tldr/pythia-1.4b/pmle")
    assert (c.train.batch_size, c.train.lr, c.algorithm.beta, c.algorithm.gamma) == (512, 1e-6, 1e-5, 1e-2)
    assert c.eval.temperature == 0.01 and c.generation.temperature == 1.0  # issue 12: 0.01 evaluates
    assert c.lora.r == 1024 and c.lora.alpha == 2048
    c = load_config("tldr/pythia-2.8b/rlhf")
    assert (c.algorithm.gae_lambda, c.algorithm.clip_ratio, c.algorithm.vf_coef, c.train.total_episodes) == (
        0.95, 0.2, 0.1, 1_000_000)
    c = load_config("ultrafeedback/llama-3-8b/rebel")
    assert (c.train.batch_size, c.train.lr, c.algorithm.beta, c.reward.missing_eos_penalty) == (32, 1e-7, 0.5, -4.0)
    assert c.generation.max_new_tokens == 1024 and c.generation.temperature == 0.5


def test_param_counts_match_published_sizes():
    assert param_count(ARCHS["EleutherAI/pythia-1.4b-deduped"]) == pytest.approx(1.4147e9, rel=2e-3)
    assert param_count(ARCHS["EleutherAI/pythia-2.8b-deduped"]) == pytest.approx(2.7752e9, rel=2e-3)
    assert param_count(ARCHS["meta-llama/Meta-Llama-3-8B-Instruct"]) == pytest.approx(8.0303e9, rel=2e-3)


def test_overrides_and_errors(tmp_path):
    c = load_config("tiny/dpo", ["train.lr=1e-6", "algorithm.beta=0.2", "lora.target_modules=[query_key_value]"])
    assert c.train.lr == 1e-6 and c.algorithm.beta == 0.2 and c.lora.target_modules == ["query_key_value"]
    with pytest.raises(ConfigError, match="unknown field train.lrr"):
        load_config("tiny/dpo", ["train.lrr=1"])
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config("tiny/dpo", ["train.batch_size=abc"])
    with pytest.raises(ConfigError, match="multiple"):
        load_config("tiny/dpo", ["train.micro_batch_size=3"])
    with pytest.raises(ConfigError, match="no config file"):
        load_config("tiny/nope")
    p = tmp_path / "mine.yaml"
    p.write_text("base: tiny/distill\ntrain: {lr: 0.5}\n")
    c = load_config(str(p))
    assert c.algorithm.name == "distill" and c.train.lr == 0.5
    docs = field_docs()
    assert "train.lr" in docs and "algorithm.gamma" in docs and len(docs) > 60


def test_dry_run_cli_subprocess_offline():
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    r = subprocess.run([sys.executable, "-m", "finitepref.llm", "train", "--config", "tldr/pythia-2.8b/reverse_kl",
                        "--dry-run", "--set", "algorithm.gamma=0.001"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "gamma: 0.001" in r.stdout and "memory estimate" in r.stdout
