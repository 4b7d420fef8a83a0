"""Training in the oracle-LM benchmark: trainer configs from the registry, reward models, curves, the pilot.

Every stage runs through ``finitepref.llm.train.train(cfg)``. Policies train with a constant learning
rate and save a checkpoint every ``eval_every`` steps; the checkpoints' weights are evaluated exactly
(the convergence curves). Reward models (standard and pi_phi) train in segments of ``rm_eval_every``
steps (resuming) and stop early on the held-out pairs.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from . import rewards
from .config import NO_RM, Config, needs_reward_model, record, settings
from .evaluation import evaluate_policy, load_and_enumerate, load_checkpoint_and_enumerate, rm_scores
from .stats import METRICS, threshold
from .world import World, sample_pairs, write_preferences, write_prompts


def trainer_config(world: World, algo: str, run_dir: Path, data: Path, n_rows: int, lr: float, seed: int,
                   steps: int, rm: rewards.RewardSpec | None, prompts_file: Path, save_every: int = 0):
    """A :class:`finitepref.llm.config.Config` for one stage (``algo``: a benchmark name or ``reward``)."""
    from finitepref.llm.config import from_dict
    from finitepref.llm.registry import REGISTRY, Loop

    cfg = world.cfg
    entry = REGISTRY[algo] if algo in REGISTRY else record(algo)
    B = cfg.batch_size
    common = {"beta": cfg.beta, "gamma": cfg.gamma, "eta": 1.0 / cfg.gamma, "num_ppo_epochs": 1,
              "num_mini_batches": 1}
    raw = {
        "model": {"name": str(world.pi0_dir)},
        "reward": (rm.section() if rm is not None and entry.needs_reward_model
                   else {"model": None, "missing_eos_penalty": None}),
        "data": {"source": str(data), "schema": "tldr_sft" if entry.loop is not Loop.OFFLINE else "tldr_preference",
                 "max_prompt_length": 8, "max_response_length": cfg.length, "reference_prompts": str(prompts_file)},
        "generation": {"max_new_tokens": cfg.length, "min_new_tokens": cfg.length, "temperature": 1.0,
                       "disable_eos": True},
        "algorithm": {"name": entry.name, **settings(algo, common, {"dpo": {"beta": cfg.dpo_beta}})},
        "train": {"seed": seed, "lr": lr, "schedule": "constant", "batch_size": B, "micro_batch_size": B,
                  "max_grad_norm": 1.0, "save_every": save_every, "keep_last": 10**6},
        "log": {"csv": False, "tensorboard": False, "progress": False},
        "output_dir": str(run_dir),
    }
    if entry.loop is Loop.OFFLINE:
        raw["train"]["epochs"] = steps * B / n_rows  # exactly `steps` updates over n_rows rows
    else:
        raw["train"]["total_episodes"] = steps * B  # one update per rollout batch of B prompts
    return from_dict(raw)


def run_stage(tcfg) -> Path:
    """Train one stage with ``finitepref.llm.train.train``; returns the saved model's folder."""
    from finitepref.llm.train import train

    return Path(train(tcfg)["output_dir"]) / "model"


@dataclass
class Replicate:
    """One seed's data at one n: every algorithm and reward model of the seed reads these files."""

    n: int
    label: int
    work: Path
    prefs: Path
    prefs_fit: Path
    heldout: tuple
    prompts_file: Path
    tseed: int
    judge: np.random.Generator


def make_replicate(world: World, n: int, seed_seq: np.random.SeedSequence, root: Path, label: int) -> Replicate:
    """Sample n pairs (all n for the direct methods; the reward models fit n - held-out and stop early on the rest)."""
    c = world.cfg
    data_ss, train_ss, judge_ss = seed_seq.spawn(3)
    rng = np.random.default_rng(data_ss)
    work = root / f"n{n}_s{label}"
    work.mkdir(parents=True, exist_ok=True)
    pairs = sample_pairs(world, rng, n)
    h = max(1, int(round(c.rm_holdout * n)))
    prefs, fit = work / "prefs.jsonl", work / "prefs_fit.jsonl"
    write_preferences(world, pairs, prefs)
    write_preferences(world, tuple(p[:n - h] for p in pairs), fit)
    prompts_file = work / "prompts.jsonl"
    write_prompts(world, rng, max(4 * c.batch_size, 64), prompts_file)
    return Replicate(n, label, work, prefs, fit, tuple(p[n - h:] for p in pairs), prompts_file,
                     int(train_ss.generate_state(1)[0] % 2**31), np.random.default_rng(judge_ss))


def _early_stopped(world: World, rep: Replicate, stage: str, kind: str, table_of) -> tuple[Path, np.ndarray, dict]:
    """Train ``stage`` on the fitting pairs in segments, keep the model with the lowest held-out log-loss."""
    c = world.cfg
    run_dir, best_dir = rep.work / f"rm_{kind}", rep.work / f"rm_{kind}_best"
    best, since, best_step = np.inf, 0, 0
    n_fit = rep.n - len(rep.heldout[0])
    for step in range(c.rm_eval_every, c.rm_max_steps + 1, c.rm_eval_every):
        tcfg = trainer_config(world, stage, run_dir, rep.prefs_fit, n_fit, c.rm_lr, rep.tseed, c.rm_max_steps, None,
                              rep.prompts_file)
        tcfg = replace(tcfg, train=replace(tcfg.train, max_steps=step, resume=step > c.rm_eval_every))
        model_dir = run_stage(tcfg)
        table = table_of(model_dir)
        loss = rewards.heldout_logloss(table, rep.heldout)
        if loss < best - 1e-9:
            best, since, best_step = loss, 0, step
            shutil.rmtree(best_dir, ignore_errors=True)
            shutil.copytree(model_dir, best_dir)
        else:
            since += 1
            if since >= c.rm_patience:
                break
    shutil.rmtree(run_dir, ignore_errors=True)
    return best_dir, table_of(best_dir), {"rm_steps": best_step}


def build_reward_models(world: World, rep: Replicate, kinds) -> dict:
    """``kind -> (RewardSpec, reward table (X, A) as the trainer scores it, fidelity dict)``."""
    out = {}
    for kind in kinds:
        t0 = time.perf_counter()
        if kind == rewards.STANDARD:
            path, table, info = _early_stopped(world, rep, "reward", kind, lambda d: rm_scores(world, d))
            spec = rewards.RewardSpec(path, remote=False)
        else:
            if kind == rewards.REALIZABLE:
                lm_dir, _, info = _early_stopped(world, rep, "pmle_nokl", kind,
                                                 lambda d: world.cfg.gamma * load_and_enumerate(world, d)[0])
            else:
                lm_dir, info = world.star_dir, {"rm_steps": 0}
            spec = rewards.save_logprob_reward(world, lm_dir, rep.work / f"reward_{kind}")
            table = rm_scores(world, spec.path, remote=True)
        info.update(rewards.fidelity(world, table, rep.heldout), rm_s=time.perf_counter() - t0)
        out[kind] = (spec, table, info)
    return out


def window(cfg: Config, steps: int) -> int:
    """Length of the last ~20% of a budget, in whole evaluation intervals (at least one)."""
    return cfg.eval_every * max(1, int(round(0.2 * steps / cfg.eval_every)))


def train_curve(world: World, rep: Replicate, algo: str, lr: float, steps: int, at: list[int], rm) -> list[dict]:
    """Train ``algo`` for ``steps`` (checkpoints every gcd(at) steps) and evaluate it exactly at the steps ``at``.

    The last entry (``steps``) carries the sampled judge win-rate too.
    """
    c = world.cfg
    spec, table = (rm[0], rm[1]) if rm is not None else (None, None)
    online = record(algo).loop.name != "OFFLINE"
    data = rep.prompts_file if online else rep.prefs
    run_dir = rep.work / f"{algo}_{rm[0].path.name if rm else NO_RM}_lr{lr:g}"
    every = math.gcd(*at)  # checkpoints only where they are evaluated (and at their common divisor)
    run_stage(trainer_config(world, algo, run_dir, data, rep.n, lr, rep.tseed, steps, spec, rep.prompts_file,
                             save_every=every))
    out = []
    for k in at:
        logp, leak = load_checkpoint_and_enumerate(world, run_dir / "checkpoints" / f"step-{k}")
        judge = rep.judge if k == steps else None
        out.append({"step": k, **evaluate_policy(world, logp, leak, judge, table)})
    if not c.keep_runs:
        shutil.rmtree(run_dir, ignore_errors=True)
    return out


def cells(cfg: Config) -> list[tuple[str, str]]:
    """(algorithm, reward model) pairs: every reward model for the reward-based algorithms, ``none`` otherwise."""
    return [(a, r) for a in cfg.algorithms for r in (cfg.reward_models if needs_reward_model(a) else (NO_RM,))]


def run_replicate(world: World, budgets: dict, lrs: dict, rep: Replicate, bar=None) -> tuple[list[dict], list[dict]]:
    """Every (algorithm, reward model) of one replicate; rows (final, with the convergence change) and RM rows."""
    c = world.cfg
    kinds = sorted({r for _, r in cells(c)} - {NO_RM}, key=c.reward_models.index)
    rms = build_reward_models(world, rep, kinds)
    rows, rm_rows = [], [{"n": rep.n, "seed": rep.label, "reward_model": k, **v[2]} for k, v in rms.items()]
    for algo, kind in cells(c):
        if bar is not None:
            bar.set_postfix_str(f"{algo}/{kind} n={rep.n} seed={rep.label}")
        T, t0 = int(budgets[algo]), time.perf_counter()
        early, final = train_curve(world, rep, algo, lrs[algo], T, [T - window(c, T), T], rms.get(kind))
        rows.append({"algorithm": algo, "reward_model": kind, "n": rep.n, "seed": rep.label, "lr": lrs[algo],
                     "steps": T, **{k: v for k, v in final.items() if k != "step"},
                     **{f"{m}_early": early[m] for m in METRICS},
                     "train_s": time.perf_counter() - t0})
        if bar is not None:
            bar.update(1)
    return rows, rm_rows


def criterion(cfg: Config, curves: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per evaluated budget T (>= 5 evaluations): the change of the seed-mean ``metric`` over the last ~20%
    of T (max - min), the across-seed std at T, and ``met``: change <= :func:`stats.threshold` of it."""
    mean = curves.groupby("step")[metric].mean()
    spread = curves.groupby("step")[metric].std(ddof=1).fillna(0.0)
    rows = []
    for T in (int(s) for s in mean.index if s >= 5 * cfg.eval_every):
        tail = mean[(mean.index >= T - window(cfg, T)) & (mean.index <= T)]
        change = float(tail.max() - tail.min())
        rows.append({"T": T, "change": change, "spread": float(spread[T]),
                     "met": change <= threshold(cfg, float(spread[T]), metric)})
    return pd.DataFrame(rows).set_index("T")


def converged_at(cfg: Config, curves: pd.DataFrame, metric: str) -> tuple[int | None, float, float]:
    """The first budget T at which ``metric`` meets :func:`criterion`: (T or None, change, spread); change and
    spread at T, or at ``max_steps`` when never met."""
    t = criterion(cfg, curves, metric)
    T = t.index[t["met"]][0] if t["met"].any() else t.index[-1]
    return (int(T) if t["met"].any() else None), float(t.loc[T, "change"]), float(t.loc[T, "spread"])


def budget_from_curves(cfg: Config, curves: pd.DataFrame) -> tuple[int, bool, float, float]:
    """The pilot's budget: the first T at which both KL(pi*||pi) and the win-rate meet :func:`criterion`;
    (T, met, change, spread) of KL(pi*||pi). Unmet: the first T at which the win-rate alone met it, else
    ``max_steps``."""
    kl, win = (criterion(cfg, curves, m) for m in ("kl_star_pi", "win_rate_exact"))
    both = kl["met"] & win["met"]
    if both.any():
        T, met = both.idxmax(), True
    else:
        T, met = (win["met"].idxmax() if win["met"].any() else kl.index[-1]), False
    return int(T), met, float(kl.loc[T, "change"]), float(kl.loc[T, "spread"])
