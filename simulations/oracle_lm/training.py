"""Training in the oracle-LM benchmark: trainer configs built in code, one replicate, the learning-rate sweep.

Every algorithm runs through ``finitepref.llm.train.train(cfg)`` (the reward model of eq. 9 first for
the online ones), with the same number of gradient steps and the same batch size.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from finitepref.llm import oracle

from .config import ONLINE, STORED_LR, TRAINER_NAME, Config
from .evaluation import evaluate_policy, load_and_enumerate, rm_scores
from .world import World, build_world, write_preferences, write_prompts


def trainer_config(world: World, algo: str, run_dir: Path, data: Path, n_rows: int, lr: float, seed: int,
                   rm_dir: Path | None, prompts_file: Path):
    """A :class:`finitepref.llm.config.Config` for one stage, built in code."""
    from finitepref.llm.config import Config as TConfig
    from finitepref.llm.config import from_dict

    cfg = world.cfg
    name = TRAINER_NAME.get(algo, algo)
    B = cfg.batch_size
    offline = algo not in ONLINE
    steps = cfg.rm_steps if name == "reward" else cfg.steps
    beta = {"pmle_nokl": 0.0, "dpo": cfg.dpo_beta}.get(algo, cfg.beta)
    raw = {
        "model": {"name": str(world.pi0_dir)},
        "reward": {"model": str(rm_dir) if rm_dir else None, "missing_eos_penalty": None, "normalize": True},
        "data": {"source": str(data), "schema": "tldr_preference" if offline else "tldr_sft",
                 "max_prompt_length": 8, "max_response_length": cfg.length,
                 "reference_prompts": str(prompts_file)},
        "generation": {"max_new_tokens": cfg.length, "min_new_tokens": cfg.length, "temperature": 1.0,
                       "disable_eos": True},
        "algorithm": {"name": name, "beta": beta if name != "reward" else 0.05, "gamma": cfg.gamma,
                      "eta": 1.0 / cfg.gamma, "num_ppo_epochs": 1, "num_mini_batches": 1},
        "train": {"seed": seed, "lr": lr, "schedule": "linear", "batch_size": B, "micro_batch_size": B,
                  "max_grad_norm": 1.0},
        "log": {"csv": False, "tensorboard": False, "progress": False},
        "output_dir": str(run_dir),
    }
    if offline:
        raw["train"]["epochs"] = steps * B / n_rows  # exactly `steps` updates over n rows
    else:
        raw["train"]["total_episodes"] = steps * B  # one update per rollout batch of B prompts
    out = from_dict(raw)
    assert isinstance(out, TConfig)
    return out


def run_stage(tcfg) -> Path:
    """Train one stage with ``finitepref.llm.train.train``; returns the saved model's folder."""
    from finitepref.llm.train import train

    res = train(tcfg)
    return Path(res["output_dir"]) / "model"


def train_reward(world: World, work: Path, prefs: Path, n: int, seed: int,
                 prompts_file: Path) -> tuple[Path, np.ndarray, float, float]:
    """The reward model of eq. (9): its folder, its scores (X, A), KL(pi*||pi~) of its LM (eq. 8), its time."""
    c = world.cfg
    t0 = time.perf_counter()
    rm_dir = run_stage(trainer_config(world, "reward", work / "reward", prefs, n, c.rm_lr, seed, None, prompts_file))
    rm_time = time.perf_counter() - t0
    rm = rm_scores(world, rm_dir)
    # the LM implied by the reward model, pi~ ∝ exp(R/gamma) (eq. 8), against pi*
    implied = rm / c.gamma
    implied = implied - np.logaddexp.reduce(implied, axis=1, keepdims=True)
    return rm_dir, rm, float(world.prompt_probs @ oracle.kl_rows(world.logp_star, implied)), rm_time


def run_replicate(world: World, algos, n: int, lrs: dict, seed_seq: np.random.SeedSequence, root: Path,
                  seed_label: int, bar=None) -> list[dict]:
    """Sample n pairs, train the reward model (if needed) and every algorithm, evaluate exactly."""
    c = world.cfg
    data_ss, train_ss, judge_ss = seed_seq.spawn(3)
    rng = np.random.default_rng(data_ss)
    tseed = int(train_ss.generate_state(1)[0] % 2**31)
    work = root / f"n{n}_s{seed_label}"
    work.mkdir(parents=True, exist_ok=True)
    prefs, prompts_file = work / "prefs.jsonl", work / "prompts.jsonl"
    write_preferences(world, rng, n, prefs)
    write_prompts(world, rng, max(4 * c.batch_size, 64), prompts_file)
    jrng = np.random.default_rng(judge_ss)
    rows = []
    rm_dir = rm = None
    rm_time = rm_kl = 0.0
    if ONLINE & set(algos):
        rm_dir, rm, rm_kl, rm_time = train_reward(world, work, prefs, n, tseed, prompts_file)
    for algo in algos:
        t0 = time.perf_counter()
        online = algo in ONLINE
        data = prompts_file if online else prefs
        tcfg = trainer_config(world, algo, work / algo, data, n, lrs[algo], tseed, rm_dir if online else None,
                              prompts_file)
        model_dir = run_stage(tcfg)
        logp, leak = load_and_enumerate(world, model_dir)
        ev = evaluate_policy(world, logp, leak, jrng, rm)
        rows.append({"algorithm": algo, "n": n, "seed": seed_label, "lr": lrs[algo], "steps": c.steps,
                     "batch_size": c.batch_size, **ev, "rm_kl_star_implied": rm_kl if rm is not None else np.nan,
                     "train_s": time.perf_counter() - t0 + (rm_time if online else 0.0)})
        if not c.keep_runs:
            shutil.rmtree(work / algo, ignore_errors=True)
        if bar is not None:
            bar.update(1)
    return rows


def lr_sweep(world: World, cfg: Config, root: Path) -> tuple[dict, pd.DataFrame]:
    """Every algorithm at every learning rate of ``sweep_lrs`` on held-out seeds; the choice minimises mean KL(pi*||pi)."""
    rows = []
    ss = np.random.SeedSequence(cfg.seed + cfg.sweep_seed_offset).spawn(cfg.sweep_seeds)
    for lr in cfg.sweep_lrs:
        lrs = {a: lr for a in cfg.algorithms}
        for s in range(cfg.sweep_seeds):
            for r in run_replicate(world, cfg.algorithms, cfg.sweep_n, lrs, ss[s], root / f"sweep_lr{lr:g}",
                                   cfg.sweep_seed_offset + s):
                rows.append(r)
    df = pd.DataFrame(rows)
    best = df.groupby(["algorithm", "lr"])["kl_star_pi"].mean().reset_index()
    choice = {a: float(g.sort_values("kl_star_pi").iloc[0]["lr"]) for a, g in best.groupby("algorithm")}
    return choice, df


def run_all(cfg: Config, root: Path) -> tuple[World, pd.DataFrame, dict, pd.DataFrame | None, dict]:
    """Build the world, sweep learning rates (``--sweep``), and train and evaluate every replicate.

    Returns the world, the per-run table, the learning rates used, the sweep's table and the timing.
    """
    t_start = time.perf_counter()
    world = build_world(cfg, root)
    lrs = {a: float(cfg.lrs.get(a, STORED_LR[a])) for a in cfg.algorithms}
    sweep_df = None
    t_sweep = 0.0
    if cfg.sweep:
        t0 = time.perf_counter()
        lrs, sweep_df = lr_sweep(world, cfg, root)
        t_sweep = time.perf_counter() - t0
        print("sweep choice:", lrs)
    ss = np.random.SeedSequence(cfg.seed).spawn(len(cfg.n_grid) * cfg.seeds)
    rows = []
    bar = tqdm(total=len(cfg.n_grid) * cfg.seeds * len(cfg.algorithms), desc="oracle_lm", dynamic_ncols=True)
    t0 = time.perf_counter()
    for i, n in enumerate(cfg.n_grid):
        for s in range(cfg.seeds):
            rows += run_replicate(world, cfg.algorithms, int(n), lrs, ss[i * cfg.seeds + s], root, s, bar)
    bar.close()
    timing = {"sweep": t_sweep, "main": time.perf_counter() - t0, "total": time.perf_counter() - t_start}
    return world, pd.DataFrame(rows), lrs, sweep_df, timing
