"""Oracle-LM benchmark: the paper's Table 2 with a known target LM, exact KL and exact win-rate.

The target pi* is a real tiny GPT-NeoX whose responses (fixed length L over an alphabet of K word
tokens) can be enumerated, so every metric is an exact finite sum:

* pi0 = mu (the "SFT model"): a randomly initialised tiny GPT-NeoX whose output head is scaled so
  its next-token laws are far from uniform; pi* is the same network with a perturbed output head
  (so pi* is in the policy class: realizable).
* Both are defined on the enumerated set: each next-token law renormalised over the alphabet
  (``finitepref.llm.oracle``; generation suppresses pad/EOS/unk through the saved
  ``generation_config.suppress_tokens``, which samples exactly that law). The mass a trained model
  puts outside the alphabet is reported as ``leaked_mass``.
* Preferences: x uniform over the prompts, a, b ~ mu(x), a > b with probability
  sigma(gamma ln pi*(a|x)/pi*(b|x)) (eq. 2/3), sampled exactly from the enumerated laws and written
  as JSONL in the trainer's TL;DR preference schema (the tiny tokenizer's words as text).
* Every algorithm runs through ``finitepref.llm.train.train(cfg)`` (reward model eq. 9 first for
  the online ones), with the same number of gradient steps (``steps``) and the same batch size:
  offline stages (PMLE, DPO) take ``steps`` updates over the n pairs (epochs = steps*batch/n);
  online stages roll out ``batch_size`` prompts per update (one PPO/REBEL epoch, one mini-batch),
  with two samples per prompt (distillation, REBEL; PMLE's KL term also draws two) or one (PPO).
  Sampling temperature is 1, so the sampler is the policy itself.
* Learning rates: one per algorithm, from a sweep (``--sweep``) on held-out seeds, criterion the
  mean exact KL(pi*||pi-hat); the choice is stored in ``STORED_LR`` and used without ``--sweep``.
* Evaluation enumerates all K^L responses per prompt: forward KL(pi*||pi), reverse KL(pi||pi*),
  KL(pi||pi0), entropy, the exact oracle win-rate E_{a~pi, b~pi0} P*(a > b | x), the exact RM score
  E_{a~pi} R-hat(x, a), and a judge-style sampled win-rate with a Clopper-Pearson CI.

Run ``python -m simulations.oracle_lm [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from simulations import _runner  # noqa: E402

from . import report  # noqa: E402
from .config import ALGORITHMS, ONLINE, STORED_LR, TRAINER_NAME, Config  # noqa: E402
from .evaluation import evaluate_policy, load_and_enumerate, reference_rows, rm_scores  # noqa: E402
from .training import lr_sweep, run_all, run_replicate, run_stage, trainer_config  # noqa: E402
from .world import World, build_world, response_text, write_preferences, write_prompts  # noqa: E402

__all__ = ["ALGORITHMS", "ONLINE", "STORED_LR", "TRAINER_NAME", "Config", "World", "build_world", "response_text",
           "write_preferences", "write_prompts", "trainer_config", "run_stage", "run_replicate", "lr_sweep", "run_all",
           "evaluate_policy", "load_and_enumerate", "reference_rows", "rm_scores", "run", "main"]

NAME = "oracle_lm"


def run(cfg: Config) -> _runner.Outcome:
    """Train and evaluate every replicate in a scratch folder (kept as ``out/runs`` with ``--keep-runs``).

    Uses ``threads`` torch threads and restores the former number afterwards.
    """
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.runs-") if cfg.keep_runs
                else tempfile.mkdtemp(prefix="oracle_lm_"))
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        world, table, lrs, sweep_df, timing = run_all(cfg, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    if not cfg.keep_runs:
        shutil.rmtree(root, ignore_errors=True)
    return report.outcome(cfg, world, table, lrs, sweep_df, timing, runs=root if cfg.keep_runs else None)


main = _runner.entry(Config, __doc__, run=run, plot=report.plot, verdicts=report.verdicts)
