"""Oracle-LM benchmark: the paper's Table 2 claims decided in a world with a known target LM.

The target pi* is a real tiny GPT-NeoX whose responses (fixed length L over an alphabet of K word
tokens) can be enumerated, so every metric is an exact finite sum:

* pi0 = mu (the "SFT model"): a randomly initialised tiny GPT-NeoX whose output head is scaled so
  its next-token laws are far from uniform; pi* is the same network with a perturbed output head
  (so pi* is in the policy class: realizable). Both are defined on the enumerated set (next-token
  laws renormalised over the alphabet, ``finitepref.llm.oracle``; the mass a trained model puts
  outside it is reported as ``leaked_mass``).
* Preferences: x uniform over the prompts, a, b ~ mu(x), a > b with probability
  sigma(gamma ln pi*(a|x)/pi*(b|x)) (eq. 2/3), sampled exactly, written in the trainer's TL;DR schema.
* Reward models (an axis): *standard* (a scalar head on pi0's network, eq. 9), *realizable*
  (gamma log pi_phi, pi_phi of pi*'s architecture fitted by eq. 9) and *oracle* (gamma ln pi*); the
  first two fit n minus a held-out part of the same n pairs and stop early on it. Their exact
  population log-loss is reported beside the world's Bayes-optimal log-loss, with their correlation
  with gamma ln pi* (``reward_models.csv``).
* Every algorithm runs through ``finitepref.llm.train.train(cfg)``; what differs between algorithms
  is read from its registry record (``finitepref.llm.registry``). Constant learning rate; checkpoints
  every ``eval_every`` steps are evaluated exactly (convergence curves).
* Pilot on held-out seeds (``pilot.py``): per algorithm a learning rate interior to its (extended)
  grid and a budget: the first step where the change over the last 20% of steps is at most
  ``converge_fraction`` of the pilot's across-seed spread. The main seeds check the same criterion
  after the fact; failing cells are listed and excluded from the verdicts.
* Paired replicates: within a seed all algorithms share the preference data and the reward models;
  claims are decided by paired differences over seeds with 95% t-intervals (``verdicts.csv``).
* Evaluation enumerates all K^L responses per prompt: KL(pi*||pi), KL(pi||pi*), KL(pi||pi0),
  entropy, the exact oracle win-rate E_{a~pi, b~pi0} P*(a > b | x), the exact RM score, and a
  judge-style sampled win-rate with a Clopper-Pearson CI.

Run ``python -m simulations.oracle_lm [--quick]``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from simulations import _runner  # noqa: E402

from . import (
    report,  # noqa: E402
    rewards,  # noqa: E402
)
from .config import ALGORITHMS, REWARD_MODELS, STORED_BUDGET, STORED_LR, Config, label  # noqa: E402
from .evaluation import evaluate_policy, load_and_enumerate, reference_rows, rm_scores  # noqa: E402
from .pilot import run_pilot  # noqa: E402
from .training import cells, make_replicate, run_replicate, run_stage, trainer_config  # noqa: E402
from .world import World, build_world, response_text, sample_pairs, write_preferences, write_prompts  # noqa: E402

__all__ = ["ALGORITHMS", "REWARD_MODELS", "STORED_LR", "STORED_BUDGET", "Config", "World", "build_world",
           "response_text", "sample_pairs", "write_preferences", "write_prompts", "trainer_config", "run_stage",
           "run_replicate", "run_pilot", "run_all", "evaluate_policy", "load_and_enumerate", "reference_rows",
           "rm_scores", "rewards", "label", "run", "main"]

NAME = "oracle_lm"


def run_all(cfg: Config, root: Path) -> dict:
    """Build the world, run the pilot (or take the stored choices), train and evaluate every replicate.

    Returns the world, the per-run table, the reward models' table, the pilot's curves and choices,
    the learning rates and budgets used, and the timing.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    world = build_world(cfg, root)
    lrs = {a: float(cfg.lrs.get(a, STORED_LR[a])) for a in cfg.algorithms}
    budgets = {a: int(cfg.budgets.get(a, STORED_BUDGET[a])) for a in cfg.algorithms}
    curves, choice = None, None
    if cfg.pilot:
        bar = tqdm(desc="oracle_lm pilot (lr, algorithm)", dynamic_ncols=True)
        lrs, budgets, curves, choice = run_pilot(world, cfg, root, bar)
        bar.close()
    t_pilot = time.perf_counter() - t_start
    seqs = np.random.SeedSequence(cfg.seed).spawn(len(cfg.n_grid) * cfg.seeds)
    rows, rm_rows = [], []
    bar = tqdm(total=len(cfg.n_grid) * cfg.seeds * len(cells(cfg)), desc="oracle_lm", dynamic_ncols=True)
    for i, n in enumerate(cfg.n_grid):
        for s in range(cfg.seeds):
            rep = make_replicate(world, int(n), seqs[i * cfg.seeds + s], root, s)
            r, m = run_replicate(world, budgets, lrs, rep, bar)
            rows += r
            rm_rows += m
            if not cfg.keep_runs:
                shutil.rmtree(rep.work, ignore_errors=True)
    bar.close()
    timing = {"pilot": t_pilot, "main": time.perf_counter() - t_start - t_pilot, "total": time.perf_counter() - t_start}
    return {"world": world, "table": pd.DataFrame(rows), "rm": pd.DataFrame(rm_rows), "curves": curves,
            "choice": choice, "lrs": lrs, "budgets": budgets, "timing": timing}


def run(cfg: Config) -> _runner.Outcome:
    """Train and evaluate every replicate in a scratch folder (kept as ``out/runs`` with ``--keep-runs``).

    Uses ``threads`` torch threads and restores the former number afterwards.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # hundreds of loads and resumes: their bars and reports would bury the progress bar
    hf_logging.disable_progress_bar()
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.runs-") if cfg.keep_runs
                else tempfile.mkdtemp(prefix="oracle_lm_"))
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        result = run_all(cfg, root)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    finally:
        torch.set_num_threads(threads)
    if not cfg.keep_runs:
        shutil.rmtree(root, ignore_errors=True)
    return report.outcome(cfg, result, runs=root if cfg.keep_runs else None)


main = _runner.entry(Config, __doc__, run=run, plot=report.plot, verdicts=report.verdicts)
